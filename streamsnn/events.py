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


def to_events(array: np.ndarray) -> np.ndarray:
    """Any structured event array (tonic's, aestream's, dv-processing's, expelliarmus') as
    ``EVENT_DTYPE``; converted polarity becomes 0/1. Raises ``ValueError`` naming missing fields."""
    if array.dtype == EVENT_DTYPE:  # as it is (consumers read polarity as p > 0)
        return array
    names = array.dtype.names or ()
    fields = {}
    for field, aliases in _FIELD_NAMES.items():
        found = [a for a in aliases if a in names]
        if not found:
            raise ValueError(f"event array has no field {' / '.join(aliases)} (fields: {names or 'none'})")
        fields[field] = array[found[0]]
    p = fields["p"]
    return make_events(fields["t"], fields["x"], fields["y"], p if p.dtype == np.bool_ else p > 0)


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
