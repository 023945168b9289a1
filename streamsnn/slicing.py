"""Cut event streams into time slices on sensor time, as they arrive.

Vocabulary as in tonic: ``time_window_us`` (fixed windows anchored at the sample start),
``event_count`` (fixed number of events), ``n_time_bins`` (a whole sample split into n equal
windows) or ``n_event_bins`` (a whole sample split into n slices of equal event counts). The two
``n_*_bins`` modes need the end of the sample, so only segmented sources such as dataset replay
take them. Complete windows agree with tonic's ``SliceByTime``/``SliceByEventCount``; unlike
tonic's ``SliceByTimeBins`` (which floors the bin width and drops the last event) every event of
a sample lands in exactly one time bin. ``n_event_bins`` matches tonic's ``SliceByEventBins``
(``ToFrame(n_event_bins=...)``) exactly, which SEENN's CIFAR10-DVS frames are made with: see
``Slicer``.

Timestamps going backwards: an event older than the start of the slice being filled can no
longer be placed in time; it is dropped and counted in ``late_events``. Events within one pushed
packet are stably sorted first.

A time window is complete once a newer event arrives, or once a live source's packet end says
sensor time has passed it (``advance``): a silent sensor still gets its empty windows on time.

Slices are views of the pushed arrays where possible; a slice spanning several packets is one
concatenated copy. Cuts are found with ``np.searchsorted``, with no Python work per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from pydantic import Field, PositiveInt, model_validator

from streamsnn.events import EVENT_DTYPE
from streamsnn.options import Options


class SlicingConfig(Options):
    """How a stream is cut into slices, one SNN step each: exactly one option. ``n_time_bins`` and
    ``n_event_bins`` split whole samples, so live streams take ``time_window_us`` or ``event_count``."""

    time_window_us: PositiveInt | None = Field(
        None, description="fixed windows of sensor time (µs), anchored at the sample's start"
    )
    event_count: PositiveInt | None = Field(None, description="slices of a fixed number of events")
    n_time_bins: PositiveInt | None = Field(
        None, description="a whole sample in n equal windows; frame sources: steps each frame is shown for"
    )
    n_event_bins: PositiveInt | None = Field(
        None, description="a whole sample in n slices of equal event counts (tonic's rule)"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SlicingConfig:
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of time_window_us, event_count, n_time_bins, n_event_bins "
                f"(got {given or 'none'})"
            )
        return self


@dataclass
class EventSlice:
    """Events in the sensor-time window [t_start_us, t_end_us)."""

    t_start_us: int
    t_end_us: int
    data: np.ndarray  # the events in the window


def _raw(events: np.ndarray) -> np.ndarray:
    """The same events as opaque records: numpy copies packed structured arrays field by field
    (~20 ns per event), opaque records as plain bytes (~1 ns)."""
    return events.view(np.dtype((np.void, events.dtype.itemsize)))


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """One array of the non-empty ``parts`` (in order): a view if there is only one."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.empty(0, dtype=EVENT_DTYPE)
    if len(parts) == 1:
        return parts[0]
    if any(p.dtype != parts[0].dtype for p in parts):
        return np.concatenate(parts)
    return np.concatenate([_raw(p) for p in parts]).view(parts[0].dtype)


def _sorted(events: np.ndarray) -> np.ndarray:
    """``events`` stably sorted by time."""
    return _raw(events)[np.argsort(events["t"], kind="stable")].view(events.dtype)


class Slicer:
    """Streaming slicer for one stream. ``push`` packets of events, ``flush`` at sample end.

    ``config`` gives exactly one of ``time_window_us``, ``event_count``, ``n_time_bins`` or
    ``n_event_bins``.

    ``n_event_bins`` = k follows tonic's rule exactly: with N events, slice i holds events
    [i·q, (i+1)·q) for q = N // k, so the last N mod k (< k) events of the sample are left out,
    and a sample of fewer than k events gives k empty slices. The left-out events are counted in
    ``unbinned_events``. Slice i ends 1 µs after its last event (when it is complete), the next
    starts there, the first starts at the sample start and the last ends at the sample end, so
    the slices tile the sample; an event sharing its timestamp with the last event of the
    previous slice lies just before its slice's start.
    """

    def __init__(self, config: SlicingConfig) -> None:
        self.time_window_us = config.time_window_us
        self.event_count = config.event_count
        self.n_time_bins = config.n_time_bins
        self.n_event_bins = config.n_event_bins
        self.late_events = 0
        self.unbinned_events = 0
        self.reset()

    def reset(self, t0_us: int | None = None) -> None:
        """Start a new sample; windows are anchored at ``t0_us`` or at its first event."""
        self._t0 = t0_us
        self._window_start = t0_us
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    @property
    def t0_us(self) -> int | None:
        """Start of the current sample in sensor time (µs), once known."""
        return self._t0

    def push(self, events: np.ndarray) -> list[EventSlice]:
        """Add a packet of events; return the slices it completed."""
        if len(events) == 0:
            return []
        t = np.ascontiguousarray(events["t"])  # one copy out of the packed records: later passes are faster
        if len(t) > 1 and (t[1:] < t[:-1]).any():
            order = np.argsort(t, kind="stable")
            events, t = _raw(events)[order].view(events.dtype), t[order]
        if self._t0 is None:
            self._t0 = self._window_start = int(t[0])
        if t[0] < self._window_start:  # sorted: the late events are a prefix
            late = int(np.searchsorted(t, self._window_start, side="left"))
            self.late_events += late
            events, t = events[late:], t[late:]
            if len(events) == 0:
                return []
        if self.time_window_us is not None:  # complete: the windows ending by the newest event
            return self._cut_time(events, t, until_us=int(t[-1]))
        if self.event_count is not None:
            return self._cut_count(events, final=False)
        self._keep(events)
        return []

    def advance(self, t_us: int) -> list[EventSlice]:
        """Sensor time has reached ``t_us`` (µs): every event before it has been pushed (a live
        source's packet end, sent even when no event came). Time windows ending by then are
        complete and returned, empty ones included, so a silent sensor still gets its windows on
        time instead of in one burst when events return. Other modes (and a stream without any
        event yet, whose windows are not anchored) return nothing."""
        if self.time_window_us is None or self._window_start is None:
            return []
        empty = np.empty(0, dtype=EVENT_DTYPE)
        return self._cut_time(empty, empty["t"], until_us=int(t_us))

    def flush(self, t_end_us: int | None = None) -> list[EventSlice]:
        """End of sample: return all remaining slices, the last one possibly incomplete.

        ``t_end_us`` is the end of the recording when known (else the last event + 1 µs).
        """
        packets, self._pending, self._pending_n = self._pending, [], 0
        events = _join(packets)
        if any(b["t"][0] < a["t"][-1] for a, b in pairwise(packets)):  # packets overlap in time
            events = _sorted(events)
        if self._t0 is None:
            self._t0 = self._window_start = int(events["t"][0]) if len(events) else 0
        if len(events):  # events past a declared end are still sliced, never lost
            t_end_us = max(t_end_us or 0, int(events["t"][-1]) + 1)
        elif t_end_us is None:
            t_end_us = self._window_start
        if self.time_window_us is not None:
            return self._cut_time(events, events["t"], until_us=t_end_us, final=True)
        if self.event_count is not None:
            return self._cut_count(events, final=True)
        if self.n_time_bins is not None:
            return self._cut_time_bins(events, t_end_us)
        return self._cut_event_bins(events, t_end_us)

    # -- internals -------------------------------------------------------------------------
    def _keep(self, events: np.ndarray) -> None:
        if len(events):
            self._pending.append(events)
            self._pending_n += len(events)

    def _take(self, head: np.ndarray) -> np.ndarray:
        """The pending events followed by ``head``; empties the pending list."""
        out = _join([*self._pending, head])
        self._pending, self._pending_n = [], 0
        return out

    def _cut_time(
        self, events: np.ndarray, t: np.ndarray, until_us: int, final: bool = False
    ) -> list[EventSlice]:
        """Cut ``events`` (all newer than the pending ones, which lie in the open window) into
        the windows that end by ``until_us``; with ``final`` also the incomplete last one."""
        window = int(self.time_window_us)  # type: ignore[arg-type]
        start = int(self._window_start)  # type: ignore[arg-type]
        n = -(-(until_us - start) // window) if final else (until_us - start) // window
        if n <= 0:
            self._keep(events)
            return []
        ends = start + window * np.arange(1, n + 1, dtype=np.int64)
        cuts = np.searchsorted(t, ends, side="left").tolist()
        out = [EventSlice(start, start + window, self._take(events[: cuts[0]]))]
        for i in range(1, n):
            out.append(
                EventSlice(start + i * window, start + (i + 1) * window, events[cuts[i - 1] : cuts[i]])
            )
        self._window_start = start + window * n
        self._keep(events[cuts[-1] :])
        return out

    def _cut_count(self, events: np.ndarray, final: bool) -> list[EventSlice]:
        count = int(self.event_count)  # type: ignore[arg-type]
        first = count - self._pending_n  # events of this packet that complete the open slice
        if len(events) < first:
            if not final:
                self._keep(events)
                return []
            chunk = self._take(events)
            return [self._count_slice(chunk)] if len(chunk) else []
        out = [self._count_slice(self._take(events[:first]))]
        n_full = (len(events) - first) // count
        for i in range(n_full):
            out.append(self._count_slice(events[first + i * count : first + (i + 1) * count]))
        rest = events[first + n_full * count :]
        if final and len(rest):
            out.append(self._count_slice(rest))
        else:
            self._keep(rest)
        return out

    def _count_slice(self, chunk: np.ndarray) -> EventSlice:
        start = int(self._window_start)  # type: ignore[arg-type]
        end = max(int(chunk["t"][-1]) + 1, start + 1)
        self._window_start = end
        return EventSlice(start, end, chunk)

    def _cut_time_bins(self, events: np.ndarray, t_end_us: int) -> list[EventSlice]:
        n = int(self.n_time_bins)  # type: ignore[arg-type]
        start = int(self._window_start)  # type: ignore[arg-type]
        t_end_us = max(t_end_us, start + n)
        edges = start + ((t_end_us - start) * np.arange(n + 1, dtype=np.int64)) // n
        cuts = np.searchsorted(events["t"], edges, side="left")
        cuts[-1] = len(events)
        e, c = edges.tolist(), cuts.tolist()
        self._window_start = e[-1]
        return [EventSlice(e[i], e[i + 1], events[c[i] : c[i + 1]]) for i in range(n)]

    def _cut_event_bins(self, events: np.ndarray, t_end_us: int) -> list[EventSlice]:
        k = int(self.n_event_bins)  # type: ignore[arg-type]
        start = int(self._window_start)  # type: ignore[arg-type]
        q = len(events) // k
        self.unbinned_events += len(events) - k * q
        if q == 0:  # fewer events than bins: k empty slices over equal times, as tonic's frames
            t_end_us = max(t_end_us, start + k)
            e = (start + ((t_end_us - start) * np.arange(k + 1, dtype=np.int64)) // k).tolist()
            self._window_start = e[-1]
            return [EventSlice(e[i], e[i + 1], events[:0]) for i in range(k)]
        last_t = events["t"][q - 1 : k * q : q].tolist()  # last event of each slice
        e = [start, *(t + 1 for t in last_t[:-1]), t_end_us]
        self._window_start = t_end_us
        return [EventSlice(e[i], e[i + 1], events[i * q : (i + 1) * q]) for i in range(k)]
