"""The embedded default data: scikit-learn's real 8×8 handwritten digits, as events and frames.

``digits-dvs`` records each digit the way N-MNIST was recorded: the image, upscaled to 28×28 on
a 34×34 pixel array, moves along three saccades (a triangle of ~3.5 px sides, 100 ms each) in
front of an emulated DVS (log-intensity change against a per-pixel contrast threshold, ON/OFF
polarity, µs timestamps, background noise). Everything is seeded: the same sample index gives
the same events on every machine and in every batch.

The 1,797 digits are split once, stratified 60/20/20 with seed 0, into train (1,077),
val (360) and test (360).

Generating a recording takes ~16 ms of CPU, so the recordings are cached on disk, one
uncompressed ``.npz`` (~5 MB, read 3× faster than compressed) per chunk of ``GENERATE_BATCH``
recordings of a split, made on first use: in ``$STREAMSNN_CACHE/digits_dvs``, else
``$XDG_CACHE_HOME/streamsnn/digits_dvs``, else ``~/.cache/streamsnn/digits_dvs`` (~140 MB for
all three splits). To clear the cache, delete that folder; it is rebuilt on demand. File names
hash everything the events depend on, so stale files are never read. Without a writable cache
folder the recordings are generated every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from streamsnn.events import EVENT_DTYPE, Packet, Sensor, make_events
from streamsnn.options import Options
from streamsnn.sources.base import SOURCES, SourceBase, Split, sample_range
from streamsnn.sources.dvs_emulator import DVSEmulator, DVSParams, background_noise
from streamsnn.sources.scenarios import Scenario, Segment, empty_events, packets, timeline

SPLITS = ("train", "val", "test")
DIGITS_DVS_SENSOR = Sensor("digits_dvs", 34, 34, 2, "emulated DVS of the digits-dvs data set")
SACCADE_MS = 100
FRAME_STEP_US = 1_000
DIGIT_PX = 28
RECORDING_US = 3 * SACCADE_MS * 1000
GENERATE_BATCH = 64  # digits rendered and emulated together
SENSOR_SEED = 1234  # the emulated sensor's fixed per-pixel threshold mismatch
CACHE_VERSION = 1  # part of every cache key: bump it whenever the generated events change

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    labels = data.target.astype(np.int64)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=360, stratify=labels, random_state=0)
    train, val = train_test_split(rest, test_size=360, stratify=labels[rest], random_state=0)
    return images, labels, {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N×8×8 in [0, 1]), labels (N) and global digit indices (N) of a split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    images, labels, splits = _digits()
    idx = splits[split]
    return images[idx], labels[idx], idx


def saccade_offsets(n_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame times (µs) and (dx, dy) offsets (px) of the three-saccade path."""
    side = 3.5
    tri = np.array([[-side / 2, side / 3**0.5 / 2], [side / 2, side / 3**0.5 / 2], [0, -side / 3**0.5]])
    steps = SACCADE_MS * 1000 // FRAME_STEP_US
    ease = (1 - np.cos(np.pi * np.arange(steps) / steps)) / 2  # smooth start and stop
    path = [tri[i] + (tri[(i + 1) % 3] - tri[i]) * ease[:, None] for i in range(3)]
    offsets = np.concatenate([*path, tri[:1]])
    times = np.arange(len(offsets), dtype=np.int64) * FRAME_STEP_US
    return times, offsets


def render_saccades(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intensity frames (K×N×34×34) of 8×8 digits (N×8×8) moving along the saccades, and the
    frame times (K, µs)."""
    n, h, w = len(images), DIGITS_DVS_SENSOR.height, DIGITS_DVS_SENSOR.width
    times, offsets = saccade_offsets()
    k = len(offsets)
    big = F.interpolate(
        torch.from_numpy(images)[:, None], size=(DIGIT_PX, DIGIT_PX), mode="bilinear", align_corners=False
    )
    pad = (w - DIGIT_PX) // 2
    canvas = F.pad(big, (pad, pad, pad, pad))  # N×1×H×W
    theta = torch.zeros(k, 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = torch.from_numpy(-offsets[:, 0] * 2 / w).float()
    theta[:, 1, 2] = torch.from_numpy(-offsets[:, 1] * 2 / h).float()
    grid = F.affine_grid(theta, [k, 1, h, w], align_corners=False)  # K×H×W×2
    # one grid_sample call per digit, each frame independent of the other digits in the batch
    frames = torch.stack(
        [
            F.grid_sample(canvas[i : i + 1].expand(k, 1, h, w), grid, align_corners=False)[:, 0]
            for i in range(n)
        ],
        dim=1,
    )
    return frames.numpy().clip(0, 1), times


@lru_cache(maxsize=1)
def _sensor_thresholds(params: DVSParams) -> np.ndarray:
    rng = np.random.default_rng(SENSOR_SEED)
    shape = (DIGITS_DVS_SENSOR.height, DIGITS_DVS_SENSOR.width)
    return np.maximum(rng.normal(params.threshold, params.mismatch, shape), 0.05)


# Bump CACHE_VERSION whenever this function or what it calls (render_saccades, DVSEmulator,
# background_noise, make_events) changes its output, so cached recordings are regenerated.
def digits_dvs_events(
    indices: np.ndarray, seed: int = 0, params: DVSParams | None = None
) -> list[np.ndarray]:
    """The digits-dvs recordings of the digits ``indices`` (global indices into ``load_digits``).

    A recording depends only on its digit, ``seed`` and ``params``, never on the batch it was
    made in.
    """
    images, _, _ = _digits()
    params = params or DVSParams()
    frames, times = render_saccades(images[np.asarray(indices)])
    dvs = DVSEmulator(_sensor_thresholds(params), params)
    parts = [dvs(frame, t) for frame, t in zip(frames, times, strict=True)]
    t = np.concatenate([q[0] for q in parts])
    n, y, x = (np.concatenate([q[1][d] for q in parts]) for d in range(3))
    p = np.concatenate([q[2] for q in parts])
    order = np.argsort(n, kind="stable")
    bounds = np.searchsorted(n[order], np.arange(len(indices) + 1))
    out = []
    for i, index in enumerate(indices):
        sel = order[bounds[i] : bounds[i + 1]]
        noise = background_noise(
            np.random.default_rng([seed, int(index)]),
            0,
            RECORDING_US,
            DIGITS_DVS_SENSOR.width,
            DIGITS_DVS_SENSOR.height,
            params.noise_hz,
        )
        t_us = np.minimum(np.floor(t[sel]), RECORDING_US - 1)  # crossings at the last frame
        events = np.concatenate([make_events(t_us, x[sel], y[sel], p[sel]), noise])
        out.append(events[np.argsort(events["t"], kind="stable")])
    return out


_SPLIT = "the split: train (1,077 digits), val (360) or test (360)"
_OFFSET = "skip the split's first samples (samples keep their numbers in the split)"
_LIMIT = "take the next N samples after offset (null: to the end of the split)"


class DigitsDVSSourceConfig(Options):
    """digits-dvs: the embedded handwritten digits as emulated DVS recordings (34×34, 300 ms each),
    replayed one sample per digit or played live as one continuous camera stream."""

    type: Literal["digits_dvs"] = "digits_dvs"
    split: Split = Field("test", description=_SPLIT)
    offset: NonNegativeInt = Field(0, description=_OFFSET)
    limit: PositiveInt | None = Field(None, description=_LIMIT)
    seed: int = Field(
        0, description="seed of the emulated sensor's background noise (and of a scenario's gaps and noise)"
    )
    live: bool = Field(
        False,
        description="play the split as one continuous camera stream (no sample boundaries): the scenario's "
        "recordings and empty stretches, in real time unless pace: false",
    )
    packet_us: PositiveInt = Field(1_000, description="live: sensor time per packet (µs)")
    scenario: Scenario = Field(
        "back_to_back",
        description="live: back_to_back (the digits one after another), gaps (noise-only gaps of random "
        "length between them), noise / silence (a digit, empty_s of noise only / of nothing, a digit)",
    )
    gap_max_ms: NonNegativeFloat = Field(
        1_000, description="scenario gaps: each gap is uniform in [0, gap_max_ms] (ms)"
    )
    empty_s: PositiveFloat = Field(60, description="scenarios noise and silence: the empty stretch (s)")
    pace: bool = Field(
        True,
        description="live: release packets in real time (a camera: slices are dropped when the pipeline is "
        "behind); false: the same stream as fast as the pipeline takes it, nothing lost (a measurement)",
    )

    @model_validator(mode="after")
    def _live_options(self) -> DigitsDVSSourceConfig:
        if not self.live and (self.scenario != "back_to_back" or not self.pace):
            raise ValueError("scenario and pace apply to a live stream: set live: true")
        return self


@SOURCES.register(DigitsDVSSourceConfig)
class DigitsDVS(SourceBase):
    """digits-dvs: one packet of events per digit of the chosen split (offline replay).

    ``live`` plays the split instead as one continuous camera stream: the ``scenario``'s
    recordings and empty stretches (``streamsnn.sources.scenarios``) on one sensor clock, in
    packets of ``packet_us`` from time 0, each with its end (``t_end_us``, a heartbeat in silence
    too) and the label of the digit in view at its middle (None when empty), released in real
    time, with no sample boundaries; ``timeline()`` is the ground truth. With ``pace: false`` the
    same stream is replayed as fast as the pipeline takes it (``live`` is then False: nothing is
    dropped). ``offset`` and ``limit`` select positions ``offset … offset + limit − 1`` of the
    split, numbered as in it.
    """

    kind = "events"
    labels = True
    sensor = DIGITS_DVS_SENSOR
    continuous = True

    def __init__(self, config: DigitsDVSSourceConfig) -> None:
        _, self._labels, self._split_index = digits_split(config.split)
        self._positions = sample_range(len(self._split_index), config.offset, config.limit)
        self.config = config
        self.split, self.seed, self.scenario = config.split, config.seed, config.scenario
        self.live = config.live and config.pace
        self.packet_us = config.packet_us
        self.gap_max_us, self.empty_us = round(config.gap_max_ms * 1e3), round(config.empty_s * 1e6)
        name = "live" if config.scenario == "back_to_back" else f"live-{config.scenario}"
        self.stream = f"digits-dvs/{config.split}" + (f"/{name}" if config.live else "")

    @property
    def segmented(self) -> bool:
        """Whole samples, unless played as one stream (``live``, paced or not)."""
        return not self.config.live

    def __len__(self) -> int:
        return len(self._positions)

    def recordings(self, positions: range | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(position in the split, events) of every selected recording (or of ``positions``),
        loaded from the disk cache or generated, one chunk of ``GENERATE_BATCH`` split positions
        at a time."""
        folder, writable = _open_cache()
        chosen = self._positions if positions is None else positions
        first, end = chosen.start, chosen.stop
        for start in range(first - first % GENERATE_BATCH, end, GENERATE_BATCH):
            chunk = self._split_index[start : start + GENERATE_BATCH]  # whole chunk, whatever the range
            lo, hi = max(first, start) - start, min(end, start + len(chunk)) - start
            path = folder / _chunk_name(self.split, self.seed, start, chunk) if folder else None
            events = _load_chunk(path, chunk) if path else None
            if events is None and writable and path:  # the whole chunk, for any later range too
                events = digits_dvs_events(chunk, self.seed)
                _save_chunk(path, chunk, events)
            elif events is None:  # nowhere to keep it: make only what is asked for
                events = [None] * lo + digits_dvs_events(chunk[lo:hi], self.seed)
            yield from zip(range(start + lo, start + hi), events[lo:hi], strict=True)

    def timeline(self) -> list[Segment]:
        """The live stream's ground truth: what is in view when (µs on the stream's clock),
        computed without generating any event."""
        if not self.config.live:
            raise ValueError("digits_dvs: only a live stream (live: true) has a timeline")
        positions = list(self._positions)
        labels = [int(self._labels[i]) for i in positions]
        return timeline(
            self.scenario, positions, labels, RECORDING_US, self.seed, self.gap_max_us, self.empty_us
        )

    def segment_events(self, segments: list[Segment] | None = None) -> Iterator[np.ndarray]:
        """The events of every segment of the timeline (``segments``: the timeline, if already
        made), on the stream's clock, in time order: a recording shifted to its segment's start,
        background noise at the recordings' own rate, or nothing in silence."""
        segments = self.timeline() if segments is None else segments
        digits = [s.sample for s in segments if s.sample is not None]  # consecutive positions
        loaded = self.recordings(range(digits[0], digits[-1] + 1)) if digits else iter(())
        for index, segment in enumerate(segments):
            if segment.empty:
                yield empty_events(
                    segment, index, self.seed, self.sensor.width, self.sensor.height, DVSParams().noise_hz
                )
                continue
            _, events = next(loaded)
            events = events.copy()
            events["t"] += segment.start_us
            yield events

    def events(self) -> np.ndarray:
        """The whole live stream as one event array (``EVENT_DTYPE``, t in µs from 0)."""
        parts = list(self.segment_events())
        return np.concatenate(parts) if parts else np.empty(0, dtype=EVENT_DTYPE)

    def __iter__(self) -> Iterator[Packet]:
        if self.config.live:
            yield from self._live()
            return
        for i, events in self.recordings():
            yield Packet(self.stream, i, events, int(self._labels[i]), 0, RECORDING_US)

    def _live(self) -> Iterator[Packet]:
        wall0 = time.monotonic()
        segments = self.timeline()
        for t0, end, events, label in packets(segments, self.segment_events(segments), self.packet_us):
            if self.config.pace:
                delay = wall0 + end * 1e-6 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            else:
                self.pace(end)  # runtime.realtime: replayed at sensor speed
            yield Packet(self.stream, None, events, label, t0, end, end_of_sample=False)


def cache_dir() -> Path:
    """The digits-dvs cache folder (see the module docstring); not created here."""
    root = os.environ.get("STREAMSNN_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = Path(xdg) / "streamsnn" if xdg else Path.home() / ".cache" / "streamsnn"
    return Path(root) / "digits_dvs"


def _open_cache() -> tuple[Path | None, bool]:
    """The cache folder, created if need be (None if impossible), and whether it is writable."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError) as err:  # RuntimeError: no home directory
        log.debug("digits-dvs: no cache (%s); generating the recordings", err)
        return None, False
    writable = os.access(folder, os.W_OK)
    if not writable:
        log.debug("digits-dvs: cache %s is read-only; new recordings are not kept", folder)
    return folder, writable


def _chunk_name(split: str, seed: int, start: int, chunk: np.ndarray) -> str:
    """File name of a chunk: a hash of everything its events depend on."""
    key = json.dumps([CACHE_VERSION, split, seed, asdict(DVSParams()), SENSOR_SEED, chunk.tolist()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{split}-seed{seed}-{start:04d}-{digest}.npz"


def _load_chunk(path: Path, chunk: np.ndarray) -> list[np.ndarray] | None:
    """The recordings of a cache file, or None if it is missing or broken (with a warning)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            events, offsets, indices = z["events"], z["offsets"], z["indices"]
        if not (
            events.dtype == EVENT_DTYPE
            and events.ndim == 1
            and offsets.dtype == np.int64
            and offsets.shape == (len(chunk) + 1,)
            and offsets[0] == 0
            and offsets[-1] == len(events)
            and np.all(np.diff(offsets) >= 0)
            and np.array_equal(indices, chunk)
        ):
            raise ValueError("wrong shape, dtype, offsets or indices")
    except Exception as err:  # any damage (truncated zip, garbage, wrong content) -> regenerate
        log.warning("digits-dvs: regenerating broken cache file %s (%s: %s)", path, type(err).__name__, err)
        return None
    return np.split(events, offsets[1:-1])


def _save_chunk(path: Path, chunk: np.ndarray, events: list[np.ndarray]) -> None:
    """Write a chunk atomically (temp file in the same folder, then rename); failures are ignored."""
    offsets = np.zeros(len(events) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in events], out=offsets[1:])
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, events=np.concatenate(events), offsets=offsets, indices=chunk.astype(np.int64))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        log.debug("digits-dvs: could not write cache file %s (%s)", path, err)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class DigitsFramesSourceConfig(Options):
    """The embedded handwritten digits as intensity frames (size×size, in [0, 1])."""

    type: Literal["digits_frames"] = "digits_frames"
    split: Split = Field("test", description=_SPLIT)
    offset: NonNegativeInt = Field(0, description=_OFFSET)
    limit: PositiveInt | None = Field(None, description=_LIMIT)
    size: PositiveInt = Field(16, description="frame side (pixels): the 8×8 digits resized (bilinear)")


@SOURCES.register(DigitsFramesSourceConfig)
class DigitsFrames(SourceBase):
    """The same digits as frames (H×W in [0, 1], bilinear from 8×8), one packet per digit."""

    kind = "frames"
    live = False
    labels = True

    def __init__(self, config: DigitsFramesSourceConfig) -> None:
        images, self._labels, _ = digits_split(config.split)
        chosen = sample_range(len(images), config.offset, config.limit)
        images, self._labels = images[chosen.start : chosen.stop], self._labels[chosen.start : chosen.stop]
        self._first = chosen.start
        self._frames = digit_frames(images, config.size)
        self.sensor = Sensor("digits_frames", config.size, config.size, 1, "digits as intensity frames")
        self.stream = f"digits-frames/{config.split}"

    def __len__(self) -> int:
        return len(self._labels)

    def __iter__(self) -> Iterator[Packet]:
        for i, (frame, label) in enumerate(zip(self._frames, self._labels, strict=True), self._first):
            yield Packet(self.stream, i, frame, int(label), 0, 0)


def digit_frames(images: np.ndarray, size: int) -> np.ndarray:
    """8×8 digits resized (bilinear) to size×size, values in [0, 1]."""
    out = F.interpolate(
        torch.from_numpy(images)[:, None], size=(size, size), mode="bilinear", align_corners=False
    )
    return out[:, 0].clamp(0, 1).numpy()
