"""Turn slices into input tensors for the SNN, and frames into events.

Encoders (looked up by name in ``ENCODERS``):

- ``event_rate``: events of a slice binned to P×H×W with polarity kept, as a rate
  (events per pixel per ``rate_unit_us``), so slices of any duration give comparable input.
- ``event_count``: plain event counts per pixel and polarity.
- ``direct``: a frame fed as a constant input current at every step (the papers' direct coding).
- ``poisson``: a frame in [0, 1] rate-coded as Bernoulli spikes at every step, seeded.

``emulate_dvs`` turns a sequence of intensity frames into DVS events (log-intensity change
against a per-pixel contrast threshold); the digits-dvs data set is made with it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from streamsnn.events import Slice, make_events

_UNSIGNED = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}


def _unsigned(coord: np.ndarray) -> np.ndarray:
    """Coordinates as a contiguous array of unsigned integers, so a negative one becomes huge
    and fails the single ``< W`` bounds test. One copy out of the packed event records: every
    later pass then runs on aligned contiguous memory (faster than strided field access)."""
    if coord.dtype.kind not in "iu" or not coord.dtype.isnative:
        coord = coord.astype(np.int64)
    return np.ascontiguousarray(coord.view(_UNSIGNED[coord.dtype.itemsize]))


def _count_events(
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    shape: tuple[int, int, int],
    frames: np.ndarray | None = None,
    n_frames: int = 1,
) -> tuple[torch.Tensor, int]:
    """Events (coordinates ``x``, ``y``, polarity ``p``) per (polarity, row, column) as a fresh
    float32 P×H×W tensor, and how many events lay outside the sensor (dropped). With ``frames``
    (each event's frame index < ``n_frames``) one pass fills n_frames×P×H×W. Never a buffer
    shared with an earlier call: the runtime holds the tensors of a step until it stacks them."""
    p_n, h, w = shape
    out_shape = shape if frames is None else (n_frames, *shape)
    cells = p_n * h * w * n_frames
    if len(x) == 0:
        return torch.zeros(out_shape), 0
    x, y = _unsigned(x), _unsigned(y)
    dropped = 0
    if x.max() >= w or y.max() >= h:  # two cheap reductions; masks only when needed
        inside = (x < w) & (y < h)
        dropped = len(x) - int(np.count_nonzero(inside))
        x, y, p = x[inside], y[inside], p[inside]
        frames = None if frames is None else frames[inside]
        if len(x) == 0:
            return torch.zeros(out_shape), dropped
    # cell index (p·H + y)·W + x, built in the narrowest unsigned type (fast on contiguous
    # memory), then counted by ``np.add.at`` with intp indices straight into float32: 2× faster
    # than ``np.bincount`` (an int64 frame plus a float32 copy) at 128×128 and than torch's
    # ``index_add_`` at Gen4 size (measured by benchmarks/ingest.py)
    dtype = np.uint16 if cells <= 1 << 16 else np.uint32 if cells <= 1 << 32 else np.uint64
    if p_n == 2:
        index = np.multiply(np.ascontiguousarray(p) > 0, h, dtype=dtype)
        index += y
    else:
        index = y.astype(dtype)
    index *= w
    index += x
    if frames is not None:
        index += frames.astype(dtype) * dtype(p_n * h * w)
    counts = np.zeros(out_shape, np.float32)
    np.add.at(counts.reshape(-1), index.astype(np.intp), np.float32(1))
    return torch.from_numpy(counts), dropped


def bin_events(events: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """Count events per (polarity, row, column) into a float32 P×H×W array.

    Polarity p > 0 counts as ON (channel 1) when P = 2; with P = 1 all events go to channel 0.
    Events outside the sensor (x ≥ W, y ≥ H or negative) are dropped; their number is returned
    as the second value.
    """
    counts, dropped = _count_events(events["x"], events["y"], events["p"], shape)
    return counts.numpy(), dropped


class Encoder(Protocol):
    """Turns one slice into one input tensor (P×H×W or C×H×W)."""

    def __call__(self, item: Slice) -> torch.Tensor: ...


@dataclass
class EventCountEncoder:
    """Event counts per pixel and polarity of one slice: P×H×W for a sensor of ``shape`` P×H×W,
    or P×size×size when ``size`` is set (bilinear resize of the counts, ``align_corners=False``,
    as SEENN's CIFAR10-DVS frames: 128×128 → 48×48). Events outside the sensor are dropped and
    counted in ``out_of_bounds``."""

    shape: tuple[int, int, int]
    out_of_bounds: int = 0
    size: int | None = None

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Shape of the tensors returned: P×H×W, or P×size×size when resized."""
        p_n, h, w = self.shape
        return (p_n, self.size, self.size) if self.size else (p_n, h, w)

    def __call__(self, item: Slice) -> torch.Tensor:
        return self.encode_many([item])[0]

    def encode_many(self, items: list[Slice]) -> torch.Tensor:
        """The slices ``items`` at once (T×P×H×W): one counting pass over all their events,
        equal to encoding them one by one (the runtime encodes a sample's slices this way)."""
        lengths = [len(item.payload) for item in items]
        # field by field: concatenating structured arrays is several times slower
        x, y, p = (np.concatenate([item.payload[f] for item in items]) for f in ("x", "y", "p"))
        frames = np.repeat(np.arange(len(items), dtype=np.uint32), lengths)
        counts, dropped = _count_events(x, y, p, self.shape, frames, len(items))
        self.out_of_bounds += dropped
        if self.size and counts.shape[2:] != (self.size, self.size):
            counts = torch.nn.functional.interpolate(
                counts, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return counts


@dataclass
class EventRateEncoder(EventCountEncoder):
    """Events per pixel per ``rate_unit_us`` of sensor time over the slice (P×H×W, or
    P×size×size: the resized counts scaled by ``rate_unit_us`` / slice duration in µs)."""

    rate_unit_us: float = 10_000.0

    def encode_many(self, items: list[Slice]) -> torch.Tensor:
        counts = super().encode_many(items)
        scale = np.array([self.rate_unit_us / max(i.t_end_us - i.t_start_us, 1) for i in items], np.float32)
        values = counts.numpy()
        np.multiply(values, scale.reshape(-1, 1, 1, 1), out=values)  # in NumPy: no torch dispatch
        return counts


@dataclass
class DirectEncoder:
    """The frame itself, every step (constant input current)."""

    shape: tuple[int, int, int]

    def __call__(self, item: Slice) -> torch.Tensor:
        return torch.as_tensor(item.payload, dtype=torch.float32).reshape(self.shape)


@dataclass
class PoissonEncoder:
    """Bernoulli spikes with probability = frame intensity (clipped to [0, 1]), seeded per
    (sample, step) so a replay is reproducible whatever the batching."""

    shape: tuple[int, int, int]
    seed: int = 0
    _gen: torch.Generator = field(default_factory=torch.Generator, repr=False)

    def __call__(self, item: Slice) -> torch.Tensor:
        frame = torch.as_tensor(item.payload, dtype=torch.float32).reshape(self.shape)
        key = f"{self.seed}/{item.stream}/{item.sample}/{item.index}".encode()
        self._gen.manual_seed(zlib.crc32(key))
        return (torch.rand(self.shape, generator=self._gen) < frame.clamp(0, 1)).float()


ENCODERS = {
    "event_rate": EventRateEncoder,
    "event_count": EventCountEncoder,
    "direct": DirectEncoder,
    "poisson": PoissonEncoder,
}


def make_encoder(name: str, shape: tuple[int, int, int], **options: float) -> Encoder:
    """The encoder called ``name`` for input tensors of ``shape`` (P×H×W)."""
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder '{name}'; known: {', '.join(ENCODERS)}")
    return ENCODERS[name](shape, **options)  # type: ignore[call-arg]


@dataclass(frozen=True)
class DVSParams:
    """Emulated DVS pixel: contrast threshold on log(I + eps) with per-pixel mismatch."""

    threshold: float = 0.2
    mismatch: float = 0.02  # std of the per-pixel threshold around ``threshold``
    log_eps: float = 0.1
    noise_hz: float = 0.5  # background activity per pixel


class DVSEmulator:
    """An emulated DVS pixel array watching intensity frames (values in [0, 1]).

    Each pixel keeps a reference log intensity, log(I + eps) of the first frame; whenever the log
    intensity moves one threshold above or below it, an ON or OFF event fires and the reference
    moves by one threshold. Crossings between two frames are timed by linear interpolation.
    Pixels are the trailing dimensions of the frames, so a batch N×H×W emulates N recordings at
    once; ``thresholds`` (per pixel, with mismatch) broadcast against them.
    """

    def __init__(self, thresholds: np.ndarray, params: DVSParams) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.params = params
        self._log: np.ndarray | None = None
        self._ref: np.ndarray | None = None
        self._t = 0.0

    def __call__(
        self, frame: np.ndarray, t_us: float
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
        """Feed the frame seen at ``t_us``; return event times (µs, float), pixel index arrays
        (one per frame dimension) and polarities (1 ON, 0 OFF) of the crossings since the last one."""
        cur = np.log(np.asarray(frame, dtype=np.float64) + self.params.log_eps)
        if self._ref is None or self._log is None:
            self._log, self._ref, self._t = cur, cur.copy(), float(t_us)
            return np.empty(0), tuple(np.empty(0, np.int64) for _ in cur.shape), np.empty(0, np.int8)
        prev, ref, thr = self._log, self._ref, np.broadcast_to(self.thresholds, cur.shape)
        up = np.floor((cur - ref) / thr)
        down = np.floor((ref - cur) / thr)
        n = np.where(up > 0, up, np.where(down > 0, -down, 0)).astype(np.int64)
        where = np.nonzero(n)
        counts, sign = np.abs(n[where]), np.sign(n[where])
        # the j-th crossing (j = 1..count) of a pixel happens at level ref + sign * j * threshold
        rep = np.repeat(np.arange(len(counts)), counts)
        j = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        idx = tuple(w[rep] for w in where)
        level = ref[idx] + sign[rep] * j * thr[idx]
        span = cur[idx] - prev[idx]
        frac = np.clip((level - prev[idx]) / np.where(span == 0, 1, span), 0, 1)
        t = self._t + frac * (t_us - self._t)
        ref[where] += n[where] * thr[where]
        self._log, self._t = cur, float(t_us)
        return t, idx, (sign[rep] > 0).astype(np.int8)


def background_noise(
    rng: np.random.Generator, t0_us: float, t1_us: float, width: int, height: int, rate_hz: float
) -> np.ndarray:
    """Poisson background events at ``rate_hz`` per pixel over [t0_us, t1_us), random polarity."""
    n = rng.poisson(rate_hz * width * height * (t1_us - t0_us) * 1e-6)
    return make_events(
        np.floor(rng.uniform(t0_us, t1_us, n)),
        rng.integers(0, width, n),
        rng.integers(0, height, n),
        rng.integers(0, 2, n),
    )
