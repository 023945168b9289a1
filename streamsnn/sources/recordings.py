"""Recorded event files: AEDAT4, Prophesee ``.dat``/``.raw``, N-MNIST ``.bin`` and NumPy arrays.

Each format is read by the field's own library:

- ``.aedat4`` (iniVation DV): the ``aedat`` decoder that tonic's ``read_aedat4`` uses, packet by
  packet, so a long recording streams and a damaged one is read up to the damaged packet.
  (aestream 0.6.4's ``FileInput`` returns no events for AEDAT4 files — aestream issue #105 — and
  dv-processing's reader hangs on a corrupt LZ4 packet, so neither is used for reading; the
  ``record`` sink writes AEDAT4 with dv-processing.)
- ``.aedat`` (jAER AER-DAT 2.0, DAVIS346 and DVS128 chips): tonic's header reader and
  address decoding; geometry from the ``AEChip`` header line.
- ``.dat`` (Prophesee DAT): aestream's ``FileInput``; geometry from the ``% Width``/``% Height``
  header lines when present.
- ``.raw`` (Prophesee EVT 2.0 / 3.0): expelliarmus (tonic's Prophesee reader); aestream 0.6.4
  rejects EVT 2.0 and decodes EVT 3.0 time stamps differently. Geometry from the header.
- ``.bin`` (N-MNIST, ATIS 34×34): tonic's ``read_mnist_file``.
- ``.npy``: a structured array with fields ``t``/``timestamp``, ``x``, ``y``, ``p``/``polarity``;
  geometry from a ``sensors/`` profile.

Every packet read is checked on the way in (``streamsnn.events.EventCheck``), never reinterpreted:
events with a NaN, infinite or negative time stamp or value are dropped and counted
(``invalid_events``), so are events outside the sensor (``out_of_bounds_events``); events out of
time order are sorted within their packet and counted (``reordered_events``). A file that is not
what it claims — a DAT file without its header or with an unknown event type, fields that are
not numbers, fractional time stamps, a jump forward of more than ``max_gap_s``, more than a tenth
of its events out of order (random bytes) — is refused like a damaged one.

Damaged files raise ``RecordingError`` naming the file and the position (packet, byte or event);
the events before it are kept. A ``RecordingSource`` replays a file, a folder or a glob of files;
a damaged file ends its own stream early and is counted (``stats['damaged_files']``), the others
continue.
"""

from __future__ import annotations

import glob
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from streamsnn.events import (
    EVENT_DTYPE,
    MAX_GAP_US,
    EventCheck,
    EventError,
    Packet,
    Sensor,
    load_sensor,
    make_events,
)
from streamsnn.options import Options
from streamsnn.sources.base import SOURCES, SourceBase

log = logging.getLogger(__name__)

FORMATS = {
    ".aedat": "aedat",
    ".aedat4": "aedat4",
    ".dat": "prophesee_dat",
    ".raw": "prophesee_raw",
    ".bin": "nmnist",
    ".npy": "numpy",
}
NMNIST_SENSOR = Sensor("nmnist", 34, 34, 2, "ATIS (N-MNIST saccades)", "bin")
NMNIST_EVENT_BYTES = 5
DAT_EVENT_BYTES = 8
DAT_EVENT_TYPES = {0: "Event2d", 12: "EventCD"}  # the type byte after a DAT header; both 8 bytes


class RecordingError(ValueError):
    """A recording cannot be read (further); the message names the file and the position."""


@dataclass
class Recording:
    """An open recording: its path, format, geometry (``None`` when the file has none) and the
    events it holds, in packets as stored."""

    path: Path
    format: str
    sensor: Sensor | None

    def packets(self, check: EventCheck | None = None) -> Iterator[np.ndarray]:
        """Events (``EVENT_DTYPE``) in file order, a stored packet at a time, each through ``check``
        (None: a fresh ``EventCheck`` on the file's geometry that refuses what it would drop);
        raises ``RecordingError`` at a damaged place after yielding everything before it."""
        if check is None:
            check = EventCheck(self.sensor)
        for index, raw in enumerate(_READERS[self.format](self.path)):
            try:
                events, error = check(raw)
            except EventError as err:  # the packet as a whole is not events
                where = f"packet {index}: " if index else ""
                raise RecordingError(f"{self.path}: {where}{err}") from None
            if len(events):
                yield events
            if error is not None:
                raise RecordingError(f"{self.path}: {error}")


def recording_format(path: Path, fmt: str | None = None) -> str:
    """The format of ``path``: ``fmt`` when given, else from the file extension."""
    if fmt is not None:
        if fmt not in FORMATS.values():
            raise RecordingError(f"{path}: unknown format '{fmt}'; known: {', '.join(FORMATS.values())}")
        return fmt
    if path.suffix.lower() not in FORMATS:
        raise RecordingError(
            f"{path}: cannot tell the format from '{path.suffix}'; known: {', '.join(FORMATS)} "
            "(or set the format)"
        )
    return FORMATS[path.suffix.lower()]


def open_recording(path: str | Path, fmt: str | None = None) -> Recording:
    """Open ``path`` and read its geometry (the events are read by ``Recording.packets``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such recording")
    fmt = recording_format(path, fmt)
    sensor = {
        "aedat": _jaer_sensor,
        "aedat4": _aedat4_sensor,
        "prophesee_dat": _prophesee_sensor,
        "prophesee_raw": _prophesee_sensor,
        "nmnist": lambda _: NMNIST_SENSOR,
        "numpy": lambda _: None,
    }[fmt](path)
    return Recording(path, fmt, sensor)


def read_events(path: str | Path, fmt: str | None = None, counts: dict[str, int] | None = None) -> np.ndarray:
    """All events of a recording (``EVENT_DTYPE``), checked against its stated geometry (else
    what ``EVENT_DTYPE`` holds), events out of order sorted within their stored packet. Dropped
    and reordered events are counted in ``counts``; without it a file that would lose an event is
    refused (``RecordingError``)."""
    rec = open_recording(path, fmt)
    parts = list(rec.packets(EventCheck(rec.sensor, counts)))
    if len(parts) == 1:
        return parts[0]
    return join_events(parts)


def join_events(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate event arrays as raw bytes (numpy copies packed records field by field, ~6×
    slower)."""
    if not parts:
        return np.empty(0, EVENT_DTYPE)
    raw = np.dtype((np.void, EVENT_DTYPE.itemsize))
    return np.concatenate([p.view(raw) for p in parts]).view(EVENT_DTYPE)


# -- AEDAT4 ------------------------------------------------------------------------------------------
def _aedat4_decoder(path: Path) -> Any:  # aedat's Decoder
    import aedat

    try:
        return aedat.Decoder(str(path))
    except (RuntimeError, OSError) as err:
        raise RecordingError(f"{path}: not a readable AEDAT4 file (header: {err})") from None


def _aedat4_sensor(path: Path) -> Sensor:
    streams = _aedat4_decoder(path).id_to_stream()
    events = [s for s in streams.values() if s.get("type") == "events"]
    if not events:
        raise RecordingError(f"{path}: the AEDAT4 file holds no event stream (streams: {streams})")
    return Sensor(path.stem, int(events[0]["width"]), int(events[0]["height"]), 2, "from the AEDAT4 header")


def _aedat4_packets(path: Path) -> Iterator[np.ndarray]:
    decoder = _aedat4_decoder(path)
    index, count = 0, 0
    while True:
        try:
            packet = next(decoder)
        except StopIteration:
            return
        except RuntimeError as err:
            raise RecordingError(
                f"{path}: damaged at packet {index} (after {count:,} events): {err}"
            ) from None
        index += 1
        if "events" in packet:
            count += len(packet["events"])
            yield packet["events"]


# -- jAER AER-DAT 2.0 ------------------------------------------------------------------------------
JAER_CHIPS = {"davis346": (346, 260), "dvs128": (128, 128)}


def _jaer_chip(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    match = re.search(rb"#\s*AEChip:\s*(\S+)", head)
    name = match.group(1).decode("latin-1").lower() if match else ""
    for chip in JAER_CHIPS:
        if chip in name:
            return chip
    raise RecordingError(
        f"{path}: jAER chip '{name or 'not stated'}' is not supported (known: {', '.join(JAER_CHIPS)})"
    )


def _jaer_sensor(path: Path) -> Sensor:
    chip = _jaer_chip(path)
    return Sensor(chip, *JAER_CHIPS[chip], 2, "from the jAER AEChip header line")


def _read_jaer(path: Path) -> Iterator[np.ndarray]:
    from tonic.io import get_aer_events_from_file, read_aedat_header_from_file

    version, start, _ = read_aedat_header_from_file(str(path))
    if not 2 <= version < 3:
        raise RecordingError(f"{path}: AER-DAT {version} is not supported (2.0 is)")
    size = path.stat().st_size
    if size - start == 1:  # tonic's reader points at the header's last newline when no data follows
        return
    if (size - start) % 8:
        good = (size - start) // 8
        raise RecordingError(f"{path}: truncated at byte {start + good * 8} (AER-DAT 2.0 events are 8 bytes)")
    raw = get_aer_events_from_file(str(path), version, start)
    addr, t = raw["address"].astype(np.int64), raw["timeStamp"].astype(np.int64)
    chip = _jaer_chip(path)
    width, height = JAER_CHIPS[chip]
    if chip == "davis346":  # jAER's DAVIS address layout, as tonic's read_davis_346 decodes it
        x, y, p = width - 1 - ((addr >> 12) & 0x3FF), height - 1 - ((addr >> 22) & 0x1FF), (addr >> 11) & 1
    else:  # DVS128: polarity in bit 0, y in bits 1-7, x in bits 8-14
        x, y, p = (addr >> 8) & 0x7F, (addr >> 1) & 0x7F, addr & 1
    yield make_events(t, x, y, p)


# -- Prophesee ---------------------------------------------------------------------------------------
def _prophesee_header(path: Path) -> tuple[list[str], int]:
    """Header lines (``% ...``) of a Prophesee file and the byte offset where data starts."""
    lines, offset = [], 0
    with open(path, "rb") as f:
        while True:
            line = f.readline()
            if not line.startswith(b"%"):
                break
            lines.append(line[1:].decode("latin-1").strip())
            offset += len(line)
            if line.strip() == b"% end":
                break
    return lines, offset


def _prophesee_sensor(path: Path) -> Sensor | None:
    lines, _ = _prophesee_header(path)
    text = "\n".join(lines)
    width = re.search(r"(?im)^width\s+(\d+)|width=(\d+)", text)
    height = re.search(r"(?im)^height\s+(\d+)|height=(\d+)", text)
    geometry = re.search(r"(?im)^geometry\s+(\d+)x(\d+)", text)
    if geometry:
        return Sensor(path.stem, int(geometry.group(1)), int(geometry.group(2)), 2, "from the file header")
    if width and height:
        w = int(width.group(1) or width.group(2))
        h = int(height.group(1) or height.group(2))
        return Sensor(path.stem, w, h, 2, "from the file header")
    return None


def _read_dat(path: Path) -> Iterator[np.ndarray]:
    import aestream

    lines, offset = _prophesee_header(path)
    with open(path, "rb") as f:
        f.seek(offset)
        kind = f.read(2)  # two bytes after the header: event type and size
    if not lines:
        raise RecordingError(f"{path}: not a Prophesee DAT file: no '% ...' header lines")
    if len(kind) == 2 and (kind[0] not in DAT_EVENT_TYPES or kind[1] != DAT_EVENT_BYTES):
        raise RecordingError(
            f"{path}: not a Prophesee DAT file of events: event type {kind[0]}, size {kind[1]} after the "
            f"header at byte {offset} (known: {', '.join(f'{k} {v}' for k, v in DAT_EVENT_TYPES.items())}; "
            f"size {DAT_EVENT_BYTES})"
        )
    payload = path.stat().st_size - offset - 2
    good = max(payload, 0) // DAT_EVENT_BYTES
    sensor = _prophesee_sensor(path) or Sensor("dat", 1 << 14, 1 << 14)
    if good:
        yield aestream.FileInput(str(path), (sensor.width, sensor.height)).load()[:good]
    if payload < 0 or payload % DAT_EVENT_BYTES:
        raise RecordingError(
            f"{path}: truncated at byte {offset + 2 + good * DAT_EVENT_BYTES} "
            f"(DAT events are {DAT_EVENT_BYTES} bytes; the {good:,} whole events before it are kept)"
        )


def _read_raw(path: Path) -> Iterator[np.ndarray]:
    from expelliarmus import Wizard

    lines, _ = _prophesee_header(path)
    text = " ".join(lines).lower()
    encoding = (
        "evt3" if re.search(r"evt\s*3|evt3", text) else "evt2" if re.search(r"evt\s*2|evt2", text) else None
    )
    if encoding is None:
        raise RecordingError(f"{path}: the header names no EVT 2.0/3.0 encoding (header: {lines[:4]})")
    try:
        events = Wizard(encoding=encoding, fpath=str(path)).read()
    except (RuntimeError, ValueError, OSError) as err:
        raise RecordingError(f"{path}: damaged {encoding.upper()} data: {err}") from None
    yield events


# -- N-MNIST and NumPy -------------------------------------------------------------------------------
def _read_nmnist(path: Path) -> Iterator[np.ndarray]:
    from tonic.io import read_mnist_file

    data = path.read_bytes()
    good = len(data) // NMNIST_EVENT_BYTES
    dtype = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "i1")])
    yield read_mnist_file(io.BytesIO(data[: good * NMNIST_EVENT_BYTES]), dtype, is_stream=True)
    if len(data) % NMNIST_EVENT_BYTES:
        raise RecordingError(
            f"{path}: truncated at byte {good * NMNIST_EVENT_BYTES} (N-MNIST events are "
            f"{NMNIST_EVENT_BYTES} bytes; the {good:,} whole events before it are kept)"
        )


def _read_numpy(path: Path) -> Iterator[np.ndarray]:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise RecordingError(f"{path}: not a readable .npy event array ({err})") from None
    if array.dtype.names is None or array.ndim != 1:
        raise RecordingError(
            f"{path}: not an event array: a 1-D structured array with fields t, x, y, p is expected "
            f"(got {array.dtype} of shape {array.shape})"
        )
    yield array


_READERS = {
    "aedat": _read_jaer,
    "aedat4": _aedat4_packets,
    "prophesee_dat": _read_dat,
    "prophesee_raw": _read_raw,
    "nmnist": _read_nmnist,
    "numpy": _read_numpy,
}


# -- the source --------------------------------------------------------------------------------------
def recording_paths(path: str) -> list[Path]:
    """A file, every recording in a folder (sorted), or the files matching a glob (sorted)."""
    p = Path(path)
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if f.suffix.lower() in FORMATS)
    elif any(c in path for c in "*?["):
        found = sorted(Path(f) for f in glob.glob(path))
    else:
        found = [p]
    if not found:
        raise FileNotFoundError(f"{path}: no recordings ({', '.join(FORMATS)}) found")
    return found


class RecordingSourceConfig(Options):
    """Recorded event files (.aedat4, .aedat, .dat, .raw, .bin, .npy), replayed as continuous
    streams or one sample per file."""

    type: Literal["recording"] = "recording"
    path: str = Field(description="a file, a folder (its recordings, sorted) or a glob")
    format: Literal["aedat", "aedat4", "prophesee_dat", "prophesee_raw", "nmnist", "numpy"] | None = Field(
        None, description="the file format (null: from the file extension)"
    )
    sensor: str | None = Field(
        None, description="sensor profile: needed for .npy, checked against the geometry a file states"
    )
    mode: Literal["stream", "sample"] = Field(
        "stream", description="stream: each file one continuous stream; sample: each file one sample"
    )
    packet_us: PositiveInt = Field(10_000, description="stream mode: sensor time per packet (µs)")
    max_gap_s: PositiveFloat = Field(
        MAX_GAP_US / 1e6,
        description="the longest time between consecutive events (s); a longer jump is refused as a "
        "damaged time stamp (the file ends there and is counted in damaged_files)",
    )


@SOURCES.register(RecordingSourceConfig)
class RecordingSource(SourceBase):
    """Replays recordings: one file, a folder or a glob, in sorted order.

    ``mode='stream'``: each recording is one continuous, unsegmented stream (named after the
    file) cut into packets of ``packet_us`` sensor time, like a camera; decisions come from the
    exit and reset policies, and ``realtime`` releases the packets at sensor time.
    ``mode='sample'``: each recording is one sample (offline replay of e.g. N-MNIST files; the
    runner paces those). ``sensor`` names a ``sensors/`` profile; when the file states its
    geometry too, the two must agree. Replays never drop data (``live`` is False); bad events are
    dropped or refused as the module docstring says, and counted in ``stats``.
    """

    kind = "events"
    live = False
    labels = False
    continuous = True

    def __init__(self, config: RecordingSourceConfig) -> None:
        self.paths = recording_paths(config.path)
        self.format, self.mode, self.packet_us = config.format, config.mode, config.packet_us
        self.max_gap_us = round(config.max_gap_s * 1e6)
        self.errors: list[str] = []
        self._packet_end: int | None = None  # sensor time (µs) closing the packet being cut
        first = open_recording(self.paths[0], config.format)
        self.sensor = self._geometry(first, config.sensor)

    def _geometry(self, rec: Recording, profile: str | None) -> Sensor:
        named = load_sensor(profile) if profile else None
        if named and rec.sensor and (named.width, named.height) != (rec.sensor.width, rec.sensor.height):
            raise ValueError(
                f"{rec.path}: the file says {rec.sensor.width}×{rec.sensor.height} but sensor '{profile}' is "
                f"{named.width}×{named.height}"
            )
        sensor = named or rec.sensor
        if sensor is None:
            raise ValueError(
                f"{rec.path}: the file states no geometry; name a sensor profile (source.sensor)"
            )
        return sensor

    @property
    def segmented(self) -> bool:
        return self.mode == "sample"

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Packet]:
        for i, path in enumerate(self.paths):
            stream = path.stem
            parts: list[np.ndarray] = []
            check = EventCheck(self.sensor, self.stats, self.max_gap_us)
            try:
                for events in open_recording(path, self.format).packets(check):
                    if self.mode == "sample":
                        parts.append(events)
                    else:
                        yield from self._stream_packets(stream, events)
            except RecordingError as err:
                self.count("damaged_files")
                self.errors.append(str(err))
                log.warning("%s (the events before it are used)", err)
            if self.mode == "stream":
                yield Packet(stream, None, np.empty(0, EVENT_DTYPE), end_of_sample=False, end_of_stream=True)
            else:
                events = join_events(parts)
                t0 = int(events["t"].min()) if len(events) else 0  # packets may overlap in time
                t_end = int(events["t"].max()) + 1 if len(events) else t0
                yield Packet(stream, i, events, None, t0, t_end)
            self._packet_end = None

    def _stream_packets(self, stream: str, events: np.ndarray) -> Iterator[Packet]:
        """Re-cut stored packets (checked: in time order, gaps bounded by ``max_gap_s``) into
        packets of ``packet_us`` sensor time. A packet without events is a heartbeat
        (``t_end_us``), so the slices of a quiet stretch close one by one, as a live sensor's do."""
        if not len(events):
            return
        if self._packet_end is None:
            self._packet_end = int(events["t"][0]) + self.packet_us
        t = events["t"]
        lo = 0
        while lo < len(events):
            hi = int(np.searchsorted(t, self._packet_end, side="left"))
            if hi >= len(events):  # the rest: a packet the next stored one may extend
                self.pace(int(t[-1]) + 1)
                yield Packet(stream, None, events[lo:], end_of_sample=False)
                return
            self.pace(self._packet_end)
            if hi > lo:
                yield Packet(stream, None, events[lo:hi], end_of_sample=False)
            else:
                yield Packet(stream, None, events[:0], end_of_sample=False, t_end_us=self._packet_end)
            lo = hi
            self._packet_end += self.packet_us
