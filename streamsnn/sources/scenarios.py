"""Live scenarios: a continuous event stream and its ground truth, a timeline of what is in view.

A live camera has no sample boundaries: digits come into view, leave, and between them the scene
may be empty (only the sensor's background noise) or the sensor may send nothing at all. A
scenario lays recordings and empty stretches end to end on one sensor clock (µs from 0):

- ``back_to_back``: the recordings one after another (no empty input);
- ``gaps``: a gap of uniform random length in [0, ``gap_max_us``] between consecutive
  recordings, holding background noise only;
- ``noise``: the first recording, then ``empty_us`` of background noise only, then the second
  recording if the range has one (a camera that looks away at an empty scene and back);
- ``silence``: the same with nothing at all instead of noise (a sensor that sends nothing).

The timeline is a list of contiguous ``Segment``s, computed without any event (``timeline``).
Everything random is seeded: a gap's length by (seed, the following recording's position), the
noise of an empty segment by (seed, its index in the timeline), so a shorter range (``limit``)
gives a prefix of a longer one's timeline and events.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

from streamsnn.events import EVENT_DTYPE
from streamsnn.sources.dvs_emulator import background_noise

Scenario = Literal["back_to_back", "gaps", "noise", "silence"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)
SegmentKind = Literal["digit", "noise", "silence"]
_GAP_KEY, _NOISE_KEY = 1, 2  # seed streams of gap lengths and of empty segments' noise


@dataclass(frozen=True)
class Segment:
    """What is in view over the sensor-time interval [start_us, end_us) (µs): a ``digit``
    (its ``label`` and ``sample``, its position in the split), or nothing, with the sensor's
    background ``noise`` only or in ``silence`` (no events at all)."""

    start_us: int
    end_us: int
    kind: SegmentKind
    label: int | None = None
    sample: int | None = None

    @property
    def empty(self) -> bool:
        """No digit in view."""
        return self.kind != "digit"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def segments_from(rows: Iterable[dict[str, Any]]) -> list[Segment]:
    """Segments from their ``to_dict()`` form (a timeline written as JSON)."""
    return [Segment(**row) for row in rows]


def timeline(
    scenario: str,
    positions: Sequence[int],
    labels: Sequence[int],
    recording_us: int,
    seed: int = 0,
    gap_max_us: int = 1_000_000,
    empty_us: int = 60_000_000,
) -> list[Segment]:
    """The timeline of ``scenario`` over the recordings at ``positions`` of a split (``labels``:
    their labels, ``recording_us`` long each); ``noise`` and ``silence`` take the first two.
    Empty segments of zero length are left out."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario '{scenario}'; use one of {', '.join(SCENARIOS)}")
    if scenario in ("noise", "silence"):
        positions, labels = positions[:2], labels[:2]
    out: list[Segment] = []
    t = 0
    for i, (position, label) in enumerate(zip(positions, labels, strict=True)):
        if i:
            if scenario == "gaps":
                rng = np.random.default_rng([seed, _GAP_KEY, int(position)])
                empty = int(rng.integers(0, gap_max_us, endpoint=True))
            else:
                empty = 0 if scenario == "back_to_back" else empty_us
            if empty:
                out.append(Segment(t, t + empty, "silence" if scenario == "silence" else "noise"))
                t += empty
        out.append(Segment(t, t + recording_us, "digit", int(label), int(position)))
        t += recording_us
    if scenario in ("noise", "silence") and len(positions) == 1:  # a single recording: the empty tail
        out.append(Segment(t, t + empty_us, "silence" if scenario == "silence" else "noise"))
    return out


def segment_at(segments: Sequence[Segment], t_us: float) -> Segment | None:
    """The segment holding sensor time ``t_us`` (start ≤ t < end), None outside the timeline."""
    i = bisect_right([s.start_us for s in segments], t_us) - 1
    return segments[i] if i >= 0 and t_us < segments[i].end_us else None


def empty_events(
    segment: Segment, index: int, seed: int, width: int, height: int, noise_hz: float
) -> np.ndarray:
    """The events of the empty segment at ``index`` of a timeline, in time order: background
    noise at ``noise_hz`` per pixel (the emulator's), or none in silence."""
    if segment.kind == "silence":
        return np.empty(0, dtype=EVENT_DTYPE)
    rng = np.random.default_rng([seed, _NOISE_KEY, index])
    noise = background_noise(rng, segment.start_us, segment.end_us, width, height, noise_hz)
    return noise[np.argsort(noise["t"], kind="stable")]


def packets(
    segments: Sequence[Segment], parts: Iterable[np.ndarray], packet_us: int
) -> Iterator[tuple[int, int, np.ndarray, int | None]]:
    """The stream of ``segments`` (``parts``: each segment's events on the stream clock, in time
    order) cut into packets of ``packet_us`` from 0 to the end of the timeline: (t0_us, t_end_us,
    events, label) each, ``label`` the digit in view at the packet's middle (None when empty).
    Every packet is given, also an empty one (a heartbeat); the last may be shorter."""
    end = segments[-1].end_us if segments else 0
    buf = np.empty(0, dtype=EVENT_DTYPE)
    t0, j = 0, 0  # j: the segment at the packet's middle
    for k, (segment, events) in enumerate(zip(segments, parts, strict=True)):
        if len(events):
            buf = np.concatenate([buf, events]) if len(buf) else events
        last = k == len(segments) - 1
        while t0 < end and (t0 + packet_us <= segment.end_us or last):
            t1 = min(t0 + packet_us, end)
            cut = int(np.searchsorted(buf["t"], t1, side="left"))
            while segments[j].end_us <= (t0 + t1) / 2:
                j += 1
            yield t0, t1, buf[:cut], segments[j].label
            buf, t0 = buf[cut:], t1
