"""The interface every source keeps (each yields ``streamsnn.events.Packet``s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, Protocol

from pydantic import Field, PositiveInt, model_validator

from streamsnn.events import Packet, Sensor, load_sensor
from streamsnn.options import ConfigError, Options, Registry

Split = Literal["train", "val", "test"]


class Source(Protocol):
    """A source of packets: iterable, closable, used as a context manager.

    ``kind`` is ``"events"`` or ``"frames"``; ``live`` says whether data arrives on the sensor's
    own clock (and may be dropped when the pipeline is behind) or is replayed from storage
    (blocks, loses nothing). ``labels`` says whether packets carry ground truth. ``stats``
    counts recovered bad input; ``realtime`` paces a replay at sensor time. ``segmented``:
    packets are whole samples rather than pieces of one continuous stream. ``parallel_streams``:
    how many streams it gives at once (each needs an operator slot).
    """

    kind: str
    live: bool
    labels: bool
    sensor: Sensor
    realtime: bool
    segmented: bool
    parallel_streams: int
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
    time (``pace``). ``continuous`` (a capability of the class): it can give one continuous
    stream, so it may be a member of a ``streams`` source.
    """

    continuous: ClassVar[bool] = False
    realtime: bool = False
    parallel_streams = 1

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


SOURCES: Registry[Source] = Registry("source")


class SensorOptions(Options):
    """A live source's pixel array: ``sensor`` (a profile) or ``width`` and ``height``; a source
    without a default profile says so in ``_no_sensor``."""

    _no_sensor: ClassVar[str | None] = None  # the error when neither is given (None: a default exists)
    sensor: str | None = Field(
        None, description="sensor profile (see `streamsnn sensors`); or give width and height"
    )
    width: PositiveInt | None = Field(None, description="pixels per row, without a sensor profile")
    height: PositiveInt | None = Field(None, description="pixels per column, without a sensor profile")

    @model_validator(mode="after")
    def _sensor_or_size(self) -> SensorOptions:
        sized = (self.width is not None, self.height is not None)
        if self.sensor is not None and any(sized):
            raise ValueError("give either sensor or width and height, not both")
        if self.sensor is None and any(sized) and not all(sized):
            raise ValueError("give both width and height")
        if self._no_sensor and self.sensor is None and not any(sized):
            raise ValueError(self._no_sensor)
        return self

    def pixel_array(self, polarities: int, default: str | None = None) -> Sensor:
        """The sensor: the named profile (else ``default``), or width × height with ``polarities``."""
        name = self.sensor or (None if self.width is not None else default)
        if name is not None:
            try:
                return load_sensor(name)
            except KeyError as err:
                raise ConfigError(f"source.sensor: {err.args[0]}") from None
        if self.width is None or self.height is None:
            raise ConfigError(
                "source: give sensor (a profile, see `streamsnn sensors`) or both width and height"
            )
        return Sensor(
            f"{self.width}x{self.height}", self.width, self.height, polarities, "given by width and height"
        )
