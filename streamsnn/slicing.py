"""Cut event streams into time slices on sensor time, as they arrive.

Vocabulary as in tonic: ``time_window_us`` (fixed windows anchored at the sample start),
``event_count`` (fixed number of events) or ``n_time_bins`` (a whole sample split into n equal
windows; needs the end of the sample, so only for segmented sources such as dataset replay).
Complete windows agree with tonic's ``SliceByTime``/``SliceByEventCount``; unlike tonic's
``SliceByTimeBins`` (which floors the bin width and drops the last event) every event of a
sample lands in exactly one bin.

Timestamps going backwards: an event older than the start of the slice being filled can no
longer be placed in time; it is dropped and counted in ``late_events``. Events within one pushed
packet are stably sorted first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamsnn.events import EVENT_DTYPE


@dataclass
class EventSlice:
    """Events in the sensor-time window [t_start_us, t_end_us)."""

    t_start_us: int
    t_end_us: int
    events: np.ndarray


class Slicer:
    """Streaming slicer for one stream. ``push`` packets of events, ``flush`` at sample end.

    Exactly one of ``time_window_us``, ``event_count`` or ``n_time_bins`` must be given.
    """

    def __init__(
        self,
        time_window_us: int | None = None,
        event_count: int | None = None,
        n_time_bins: int | None = None,
    ) -> None:
        given = {
            k: v
            for k, v in dict(
                time_window_us=time_window_us, event_count=event_count, n_time_bins=n_time_bins
            ).items()
            if v is not None
        }
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of time_window_us, event_count, n_time_bins; got {sorted(given) or 'none'}"
            )
        for key, value in given.items():
            if int(value) < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        self.time_window_us = time_window_us
        self.event_count = event_count
        self.n_time_bins = n_time_bins
        self.late_events = 0
        self.reset()

    def reset(self, t0_us: int | None = None) -> None:
        """Start a new sample; windows are anchored at ``t0_us`` or at its first event."""
        self._t0 = t0_us
        self._window_start = t0_us
        self._pending: list[np.ndarray] = []

    @property
    def t0_us(self) -> int | None:
        """Start of the current sample in sensor time (µs), once known."""
        return self._t0

    def push(self, events: np.ndarray) -> list[EventSlice]:
        """Add a packet of events; return the slices it completed."""
        if len(events) == 0:
            return []
        if np.any(np.diff(events["t"]) < 0):
            events = events[np.argsort(events["t"], kind="stable")]
        if self._t0 is None:
            self._t0 = self._window_start = int(events["t"][0])
        if events["t"][0] < self._window_start:
            keep = events["t"] >= self._window_start
            self.late_events += int((~keep).sum())
            events = events[keep]
        self._pending.append(events)
        if self.time_window_us is not None:
            return self._cut_time(final_t_us=None)
        if self.event_count is not None:
            return self._cut_count(final=False)
        return []

    def flush(self, t_end_us: int | None = None) -> list[EventSlice]:
        """End of sample: return all remaining slices, the last one possibly incomplete.

        ``t_end_us`` is the end of the recording when known (else the last event + 1 µs).
        """
        events = self._take_pending()
        if self._t0 is None:
            self._t0 = self._window_start = int(events["t"][0]) if len(events) else 0
        if len(events):  # events past a declared end are still sliced, never lost
            t_end_us = max(t_end_us or 0, int(events["t"][-1]) + 1)
        elif t_end_us is None:
            t_end_us = self._window_start
        self._pending = [events]
        if self.time_window_us is not None:
            out = self._cut_time(final_t_us=t_end_us)
        elif self.event_count is not None:
            out = self._cut_count(final=True)
        else:
            out = self._cut_bins(t_end_us)
        self._pending = []
        return out

    # -- internals -------------------------------------------------------------------------
    def _take_pending(self) -> np.ndarray:
        if not self._pending:
            return np.empty(0, dtype=EVENT_DTYPE)
        events = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending = []
        return events

    def _cut_time(self, final_t_us: int | None) -> list[EventSlice]:
        events = self._take_pending()
        window = int(self.time_window_us)  # type: ignore[arg-type]
        start = int(self._window_start)  # type: ignore[arg-type]
        if final_t_us is None:
            # complete windows are those ending at or before the newest event
            newest = int(events["t"][-1]) if len(events) else start
            n = (newest - start) // window
        else:
            n = max(0, -(-(final_t_us - start) // window))  # ceil: keep the incomplete tail
        ends = start + window * np.arange(1, n + 1, dtype=np.int64)
        cuts = np.searchsorted(events["t"], ends, side="left")
        out, lo = [], 0
        for i, hi in enumerate(cuts):
            out.append(EventSlice(int(ends[i] - window), int(ends[i]), events[lo:hi]))
            lo = hi
        self._window_start = start + window * n
        if lo < len(events):
            self._pending = [events[lo:]]
        return out

    def _cut_count(self, final: bool) -> list[EventSlice]:
        events = self._take_pending()
        count = int(self.event_count)  # type: ignore[arg-type]
        n_full = len(events) // count
        out = []
        for i in range(n_full):
            chunk = events[i * count : (i + 1) * count]
            out.append(self._count_slice(chunk))
        rest = events[n_full * count :]
        if final and len(rest):
            out.append(self._count_slice(rest))
        elif len(rest):
            self._pending = [rest]
        return out

    def _count_slice(self, chunk: np.ndarray) -> EventSlice:
        start = int(self._window_start)  # type: ignore[arg-type]
        end = max(int(chunk["t"][-1]) + 1, start + 1)
        self._window_start = end
        return EventSlice(start, end, chunk)

    def _cut_bins(self, t_end_us: int) -> list[EventSlice]:
        events = self._take_pending()
        n = int(self.n_time_bins)  # type: ignore[arg-type]
        start = int(self._window_start)  # type: ignore[arg-type]
        t_end_us = max(t_end_us, start + n)
        edges = start + ((t_end_us - start) * np.arange(n + 1, dtype=np.int64)) // n
        cuts = np.searchsorted(events["t"], edges, side="left")
        cuts[-1] = len(events)
        return [EventSlice(int(edges[i]), int(edges[i + 1]), events[cuts[i] : cuts[i + 1]]) for i in range(n)]
