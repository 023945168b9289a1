"""Several continuous sources as one: many cameras, UDP feeds or stream recordings stepped by
one operator, one slot per stream.

Each source is read by its own thread (a live source must never wait for another); packets meet
in one queue in arrival order. A stream is renamed ``<its name>#<i>``, ``i`` its source's position
in the configured list, so names stay unique however the list is split (``offset``/``limit``:
``executor: ray`` gives each worker one such group).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from streamsnn.events import Packet
from streamsnn.options import Options
from streamsnn.sources.base import SOURCES, Source, SourceBase, sample_range

if TYPE_CHECKING:
    # the options of any continuous source: ``streamsnn.sources`` completes the model with them
    # once every source is registered
    StreamMemberConfig = Options

QUEUE_PACKETS = 256  # packets waiting for the pipeline, all sources together
POLL_S = 0.05  # longest wait of a reading thread before it looks at ``close()`` again


class _Ended:
    """A reading thread's last item: its source ended (``error`` None) or failed."""

    def __init__(self, position: int, error: BaseException | None = None) -> None:
        self.position, self.error = position, error


def _gives(source: Source) -> str:
    return f"{'live' if source.live else 'replayed'} {source.kind}"


@dataclass
class Member:
    """One source of a ``streams`` source: its position in the configured list and its type."""

    position: int
    type: str
    source: Source


class StreamsSourceConfig(Options):
    """Several continuous sources stepped together by one operator, one slot per stream
    (``runtime.batch_size`` at least the number of sources): udp, camera, webcam, digits_dvs with
    ``live: true``, recording with ``mode: stream``; all live or all replayed, one sensor geometry.
    A stream is named ``<its source's stream>#<i>``, ``i`` the source's position in ``sources``."""

    type: Literal["streams"] = "streams"
    sources: list[StreamMemberConfig] = Field(
        min_length=1, description="the sources, each with its type and options as a source of its own"
    )
    offset: NonNegativeInt = Field(
        0, description="skip the first sources of the list (executor: ray gives each worker a group)"
    )
    limit: PositiveInt | None = Field(None, description="take the next N sources after offset (null: all)")


@SOURCES.register(StreamsSourceConfig)
class StreamsSource(SourceBase):
    """The sources ``sources[offset : offset + limit]`` of ``config``, opened through the source
    registry and read together. They must be unsegmented (live, or recordings with ``mode:
    stream``), all live or none, and give the same kind of data on the same sensor geometry (one
    model takes them all); otherwise every opened source is closed again and the error names the
    first misfit, ``sources[i]``. ``len()``: the number of sources."""

    segmented = False

    def __init__(self, config: StreamsSourceConfig) -> None:
        self._closed = threading.Event()
        self.members: list[Member] = []
        positions = sample_range(len(config.sources), config.offset, config.limit)
        if not positions:
            raise ValueError(f"offset {config.offset} selects none of the {len(config.sources)} sources")
        try:
            for i in positions:
                member = config.sources[i]
                try:
                    source = SOURCES.build(member)
                except (OSError, ValueError, KeyError) as err:
                    raise ValueError(f"sources[{i}] ({member.type}): {err}") from None
                self.members.append(Member(i, member.type, source))
                self._check(self.members[-1])
        except BaseException:
            self.close()
            raise
        first = self.sources[0]
        self.kind, self.live, self.sensor = first.kind, first.live, first.sensor
        self.labels = all(s.labels for s in self.sources)

    def _check(self, member: Member) -> None:
        i, kind, source = member.position, member.type, member.source
        if source.segmented:
            raise ValueError(
                f"sources[{i}] ({kind}) gives whole samples; streams takes continuous sources "
                "(udp, camera, webcam, digits_dvs with live: true, recording with mode: stream)"
            )
        first = self.sources[0]
        if (source.kind, source.live) != (first.kind, first.live):
            raise ValueError(
                f"sources[{i}] ({kind}) gives {_gives(source)} but sources[{self.members[0].position}] gives "
                f"{_gives(first)}: one pipeline takes one kind"
            )
        if source.sensor.size != first.sensor.size:
            ours, theirs = (f"{s.sensor.width}×{s.sensor.height}" for s in (source, first))
            raise ValueError(
                f"sources[{i}] ({kind}): sensor {ours} differs from sources[{self.members[0].position}]'s "
                f"{theirs}: one model takes them all"
            )

    @property
    def sources(self) -> list[Source]:
        return [m.source for m in self.members]

    def __len__(self) -> int:
        return len(self.members)

    @property
    def parallel_streams(self) -> int:  # type: ignore[override]
        """One stream per source, all at once."""
        return len(self.members)

    @property
    def realtime(self) -> bool:  # type: ignore[override]
        return any(s.realtime for s in self.sources)

    @realtime.setter
    def realtime(self, value: bool) -> None:
        for source in self.sources:
            source.realtime = value

    @property
    def stats(self) -> dict[str, int]:  # type: ignore[override]
        """The sources' counters, summed."""
        total: dict[str, int] = {}
        for source in self.sources:
            for key, n in source.stats.items():
                total[key] = total.get(key, 0) + n
        return total

    def __iter__(self) -> Iterator[Packet]:
        packets: queue.Queue[Packet | _Ended] = queue.Queue(QUEUE_PACKETS)
        threads = [
            threading.Thread(target=self._read, args=(i, source, packets), name=f"streams-{i}", daemon=True)
            for i, source in ((m.position, m.source) for m in self.members)
        ]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                try:
                    item = packets.get(timeout=POLL_S)
                except queue.Empty:
                    if self._closed.is_set():
                        return
                    continue
                if isinstance(item, _Ended):
                    running -= 1
                    if item.error is not None:
                        raise RuntimeError(f"source.sources[{item.position}]: {item.error}") from item.error
                    continue
                yield item
        finally:
            self.close()
            for thread in threads:
                thread.join(timeout=1.0)

    def _read(self, position: int, source: Source, packets: queue.Queue) -> None:
        """Move ``source``'s packets into ``packets``, each stream renamed ``<name>#<position>``."""
        ended = _Ended(position)
        try:
            for packet in source:
                packet.stream = f"{packet.stream}#{position}"  # a fresh packet, ours to rename
                if not self._put(packets, packet):
                    return
        except BaseException as err:
            ended.error = err
        self._put(packets, ended)

    def _put(self, packets: queue.Queue, item: Any) -> bool:
        """Queue ``item``, waiting while the queue is full; False once the source is closed."""
        while not self._closed.is_set():
            try:
                packets.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self._closed.set()
        for source in self.sources:
            source.close()
