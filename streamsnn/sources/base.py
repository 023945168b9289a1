"""The interface every source keeps (each yields ``streamsnn.events.Packet``s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

from streamsnn.events import Packet, Sensor


class Source(Protocol):
    """A source of packets: iterable, closable, used as a context manager.

    ``kind`` is ``"events"`` or ``"frames"``; ``live`` says whether data arrives on the sensor's
    own clock (and may be dropped when the pipeline is behind) or is replayed from storage
    (blocks, loses nothing). ``labels`` says whether packets carry ground truth. ``stats``
    counts recovered bad input; ``realtime`` paces a replay at sensor time. ``segmented``:
    packets are whole samples rather than pieces of one continuous stream.
    """

    kind: str
    live: bool
    labels: bool
    sensor: Sensor
    realtime: bool
    segmented: bool
    stats: dict[str, int]

    def __iter__(self) -> Iterator[Packet]: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: Any) -> None: ...


class SourceBase:
    """Plumbing shared by the sources: context manager, counters and real-time pacing.

    ``stats`` holds the source's counters of recovered bad input (skipped samples, silences...);
    the runner copies them into the report. ``realtime`` sources release packets at their sensor
    time (``pace``).
    """

    realtime: bool = False

    @property
    def segmented(self) -> bool:
        """Whether packets are whole samples (replay) rather than pieces of one continuous stream."""
        return not self.live

    @property
    def stats(self) -> dict[str, int]:
        if "_stats" not in self.__dict__:
            self._stats: dict[str, int] = {}
        return self._stats

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``key`` of ``stats``."""
        self.stats[key] = self.stats.get(key, 0) + n

    def pace(self, t_us: int) -> None:
        """With ``realtime``, sleep until sensor time ``t_us`` (µs) has passed on the wall clock;
        the first call anchors sensor time to the wall clock."""
        if not self.realtime:
            return
        if "_clock" not in self.__dict__:
            self._clock = (time.monotonic(), t_us)
        wall0, t0 = self._clock
        delay = wall0 + (t_us - t0) * 1e-6 - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def close(self) -> None:
        pass

    def __enter__(self) -> SourceBase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def sample_range(n: int, offset: int = 0, limit: int | None = None) -> range:
    """Positions of a split of ``n`` samples that ``offset`` and ``limit`` select (a segmented
    source's ``source.offset``/``source.limit``: ``offset … offset + limit − 1``, cut at ``n``)."""
    end = n if limit is None else min(offset + limit, n)
    return range(min(offset, end), end)
