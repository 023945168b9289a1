"""Events, sensors and slices: the data that flows from sources to the SNN operator.

Conventions follow tonic: structured event arrays with fields ``t`` (µs, int64), ``x``, ``y``
and ``p`` (polarity 0 = OFF, 1 = ON); sensor sizes as (W, H, P); tensors as (T×)P×H×W.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
"""One event: timestamp in µs, pixel column, pixel row, polarity (0 OFF, 1 ON)."""


def make_events(t: Any, x: Any, y: Any, p: Any) -> np.ndarray:
    """Pack equal-length arrays into an ``EVENT_DTYPE`` array (t in µs)."""
    events = np.empty(len(t), dtype=EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = t, x, y, p
    return events


_FIELD_NAMES = {"t": ("t", "timestamp", "ts"), "x": ("x",), "y": ("y",), "p": ("p", "polarity", "on", "pol")}
_COORD_MAX = int(np.iinfo(EVENT_DTYPE["x"]).max)  # the largest x or y an event can hold
_T_LIMIT = 2**63  # time stamps below it fit int64

MAX_GAP_US = 3_600_000_000
"""Default for the largest forward jump between consecutive events of a recording (µs): 1 h. A
longer one is taken for a damaged time stamp (it would stand for that many empty slices)."""
MAX_REORDERED_SHARE = 0.1
"""Events out of time order, as a share of those read (after ``MIN_EVENTS_TO_JUDGE``), above
which a file is not a time-ordered event recording: sensors reorder a few events, not this many."""
MIN_EVENTS_TO_JUDGE = 100


class EventError(ValueError):
    """Events that cannot be taken as they are; the message names the field, the value and the
    event (its index in what was checked)."""


def _add(counts: dict[str, int], key: str, n: int) -> None:
    if n:
        counts[key] = counts.get(key, 0) + n


def to_events(
    array: np.ndarray, sensor: Sensor | None = None, counts: dict[str, int] | None = None
) -> np.ndarray:
    """Any structured event array (tonic's, aestream's, dv-processing's, expelliarmus', a user's
    ``.npy``) as ``EVENT_DTYPE``, checked on the way in and never reinterpreted:

    - a missing field, a field that is not numbers, or float time stamps or coordinates with a
      fractional part (time stamps are whole µs, coordinates whole pixels) raise ``EventError``;
    - an event with a NaN or infinite field, or a time stamp below 0 or beyond int64, is dropped and
      counted in ``counts['invalid_events']``;
    - an event outside the sensor (x ≥ width, y ≥ height, or negative; without ``sensor``: beyond
      what ``EVENT_DTYPE`` holds, 0…32767) is dropped and counted in ``counts['out_of_bounds_events']``.

    Without ``counts`` a dropped event is refused instead (``EventError``). Polarity becomes 0/1
    (p > 0 is ON)."""
    return _convert(array, sensor, counts)[0]


def _convert(
    array: np.ndarray, sensor: Sensor | None, counts: dict[str, int] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``to_events``, and which events of ``array`` it kept (None: all)."""
    names = array.dtype.names or ()
    fields = {}
    for field, aliases in _FIELD_NAMES.items():
        found = [a for a in aliases if a in names]
        if not found:
            raise EventError(f"event array has no field {' / '.join(aliases)} (fields: {names or 'none'})")
        fields[field] = array[found[0]]
    for field, values in fields.items():
        if values.dtype.kind not in "biuf":
            raise EventError(f"field {field} holds {values.dtype} values; event fields are numbers")
    invalid = np.zeros(len(array), dtype=bool)
    for field, values in fields.items():
        if values.dtype.kind == "f":
            nonfinite = ~np.isfinite(values)
            invalid |= nonfinite
            if field != "p":
                _whole_numbers(field, values, nonfinite)
    invalid |= ~_within(fields["t"], 0, _T_LIMIT)
    width, height = (sensor.width, sensor.height) if sensor is not None else (_COORD_MAX + 1,) * 2
    outside = ~_within(fields["x"], 0, width) | ~_within(fields["y"], 0, height)
    outside &= ~invalid
    keep = None
    if invalid.any() or outside.any():
        keep = ~(invalid | outside)
        if counts is None:
            i = int(np.flatnonzero(~keep)[0])
            values = ", ".join(f"{f} = {fields[f][i]}" for f in fields)
            what = (
                "a NaN or infinite value or a time stamp below 0"
                if invalid[i]
                else "a place outside the sensor"
            )
            raise EventError(f"event {i} ({values}) has {what}")
        _add(counts, "invalid_events", int(invalid.sum()))
        _add(counts, "out_of_bounds_events", int(outside.sum()))
        fields = {f: v[keep] for f, v in fields.items()}
    if array.dtype == EVENT_DTYPE:  # as it is (consumers read polarity as p > 0)
        return (array if keep is None else array[keep]), keep
    p = fields["p"]
    return make_events(fields["t"], fields["x"], fields["y"], p if p.dtype == np.bool_ else p > 0), keep


def _within(values: np.ndarray, low: int, high: int) -> np.ndarray:
    """Which ``values`` lie in [low, high) (NaN does not); a scan of min and max first, since
    nearly every packet lies within."""
    if values.dtype.kind != "f" and (not len(values) or (values.min() >= low and values.max() < high)):
        return np.ones(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        return (values >= low) & (values < high)


def _whole_numbers(field: str, values: np.ndarray, nonfinite: np.ndarray) -> None:
    """Refuse float ``values`` with a fractional part (NaN and infinities aside)."""
    with np.errstate(invalid="ignore"):
        fractional = (values != np.floor(values)) & ~nonfinite
    if fractional.any():
        i = int(np.flatnonzero(fractional)[0])
        unit = "µs" if field == "t" else "pixels"
        raise EventError(
            f"field {field} holds fractions (event {i}: {values[i]}); event {field} values are whole {unit}"
            + (" (time stamps in seconds? multiply by 1e6)" if field == "t" else "")
        )


class EventCheck:
    """Checks the packets of one recording (or one sample) in their order: ``to_events`` on each
    (dropped events counted in ``counts``), then the time order:

    - events earlier than one before them are counted in ``counts['reordered_events']``; within a
      packet they are stably sorted into place (across packets the slicer places them, or drops
      them as ``late_events`` once their slice is closed);
    - a jump forward of more than ``max_gap_us`` between consecutive events (in time order) is a
      damaged time stamp: ``EventError`` naming the event (its index among all events checked),
      after the events before it in time;
    - more than ``MAX_REORDERED_SHARE`` of the events so far out of order is not a time-ordered
      recording (random bytes, a reversed file): ``EventError``.

    ``__call__`` returns the packet's good events and the error (or None): the events before a
    refused place are kept. Without ``counts`` an event that would be dropped is refused instead
    (``to_events`` raises ``EventError``)."""

    def __init__(
        self,
        sensor: Sensor | None = None,
        counts: dict[str, int] | None = None,
        max_gap_us: int = MAX_GAP_US,
    ) -> None:
        self.sensor, self.max_gap_us = sensor, max_gap_us
        self.refuse_drops = counts is None
        self.counts: dict[str, int] = {} if counts is None else counts
        self.read = 0  # events checked so far (dropped ones included)
        self.reordered = 0
        self.newest: int | None = None  # the latest time stamp so far (µs)

    def __call__(self, array: np.ndarray) -> tuple[np.ndarray, EventError | None]:
        first, self.read = self.read, self.read + len(array)
        kept, mask = _convert(array, self.sensor, None if self.refuse_drops else self.counts)
        where = np.arange(len(array)) if mask is None else np.flatnonzero(mask)  # index in the packet
        if not len(kept):
            return kept, None
        t = np.ascontiguousarray(kept["t"])
        before = t[0] if self.newest is None else self.newest
        running = np.maximum.accumulate(np.concatenate([[before], t[:-1]]))
        late = int((t < running).sum())
        if late:
            self.reordered += late
            _add(self.counts, "reordered_events", late)
            order = np.argsort(t, kind="stable")
            kept = kept.view(np.dtype((np.void, EVENT_DTYPE.itemsize)))[order].view(EVENT_DTYPE)
            t, where = t[order], where[order]
        steps = np.diff(t, prepend=before if self.newest is not None else t[0])
        jumps = np.flatnonzero(steps > self.max_gap_us)
        if len(jumps):
            j = int(jumps[0])
            return kept[:j], EventError(
                f"event {first + int(where[j]):,} (t = {int(t[j])} µs) comes {int(steps[j]) / 1e6:,.1f} s "
                f"after the event before it (more than {self.max_gap_us / 1e6:,.0f} s): a damaged time stamp"
            )
        if self.read >= MIN_EVENTS_TO_JUDGE and self.reordered > MAX_REORDERED_SHARE * self.read:
            return kept[:0], EventError(
                f"time stamps out of order for {self.reordered:,} of the {self.read:,} events read "
                f"(more than {MAX_REORDERED_SHARE:.0%}): not a time-ordered event recording"
            )
        self.newest = max(int(t[-1]), before)
        return kept, None


@dataclass(frozen=True)
class Sensor:
    """Pixel array geometry of an event sensor."""

    name: str
    width: int
    height: int
    polarities: int = 2
    description: str = ""
    file_format: str = ""

    @property
    def size(self) -> tuple[int, int, int]:
        """tonic's ``sensor_size`` convention: (W, H, P)."""
        return (self.width, self.height, self.polarities)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Tensor shape of one binned slice: (P, H, W)."""
        return (self.polarities, self.height, self.width)


def sensor_dirs() -> list[Path]:
    """Folders searched for sensor profiles: ``$STREAMSNN_SENSORS`` (os.pathsep separated),
    ``./sensors`` and the project's own ``sensors/``."""
    dirs = [Path(d) for d in os.environ.get("STREAMSNN_SENSORS", "").split(os.pathsep) if d]
    dirs += [Path.cwd() / "sensors", Path(__file__).resolve().parent.parent / "sensors"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def _sensor_from_file(path: Path) -> Sensor:
    with open(path) as f:
        raw = yaml.safe_load(f)
    fields = {"name", "width", "height", "polarities", "description", "file_format"}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a sensor profile must be a mapping")
    unknown = set(raw) - fields
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    for key in ("width", "height", "polarities"):
        value = raw.get(key, 2 if key == "polarities" else None)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{path}: '{key}' must be a positive integer, got {value!r}")
    return Sensor(**{"name": path.stem, **raw})


def list_sensors() -> dict[str, Sensor]:
    """All sensor profiles found, by name (earlier folders win)."""
    found: dict[str, Sensor] = {}
    for d in sensor_dirs():
        for path in sorted(d.glob("*.yaml")):
            sensor = _sensor_from_file(path)
            found.setdefault(sensor.name, sensor)
    return found


def load_sensor(name: str) -> Sensor:
    """The sensor profile called ``name`` (see ``streamsnn sensors``)."""
    sensors = list_sensors()
    if name not in sensors:
        raise KeyError(f"unknown sensor '{name}'; known: {', '.join(sorted(sensors))}")
    return sensors[name]


@dataclass
class Packet:
    """A piece of one stream: events (``EVENT_DTYPE``) or one frame (H×W, values in [0, 1]).

    Dataset and file sources send a whole sample per packet (``end_of_sample=True``) with its
    recording window ``[t0_us, t_end_us)`` when known; live sources send packets of a continuous
    stream (``sample=None``, ``end_of_sample=False``); ``end_of_stream`` marks the last packet of a
    stream that ends while the source goes on (the next file of a replay).
    """

    stream: str
    sample: int | None
    data: np.ndarray
    label: int | None = None
    t0_us: int | None = None
    t_end_us: int | None = None
    end_of_sample: bool = True
    end_of_stream: bool = False


@dataclass
class Slice:
    """One time slice of one stream, cut on sensor time.

    ``data`` is an event array (``EVENT_DTYPE``) for event sources or a frame tensor for
    frame sources. ``t_start_us``/``t_end_us`` bound the slice in sensor time and
    ``sample_t0_us`` is the first event of the sample, so ``t_end_us - sample_t0_us`` is the
    input latency of a decision made after this slice. ``arrival_ns`` is the monotonic wall
    clock at which the slice became available. ``input`` is the slice encoded for the network
    (1×C×H×W, a batch of one) and ``encode_s`` the wall time that took (s), set by the runtime's
    source stage.
    """

    stream: str
    sample: int
    index: int
    t_start_us: int
    t_end_us: int
    data: Any
    sample_t0_us: int = 0
    label: int | None = None
    last: bool = False
    arrival_ns: int = 0
    input: Any = None
    encode_s: float = 0.0
