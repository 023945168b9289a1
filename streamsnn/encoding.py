"""Turn slices into input tensors for the SNN.

Encoders (registered by name with their options in ``ENCODERS``):

- ``event_rate``: events of a slice binned to P×H×W with polarity kept, as a rate
  (events per pixel per ``rate_unit_us``), so slices of any duration give comparable input.
- ``event_count``: plain event counts per pixel and polarity.
- ``direct``: a frame fed as a constant input current at every step (the papers' direct coding).
- ``poisson``: a frame in [0, 1] rate-coded as Bernoulli spikes at every step, seeded.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt

from streamsnn.events import Slice
from streamsnn.options import Options, Registry

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


def bin_events(events: np.ndarray, shape: tuple[int, int, int], block: int = 1) -> tuple[np.ndarray, int]:
    """Count events per (polarity, row, column) into a float32 P×H×W array.

    Polarity p > 0 counts as ON (channel 1) when P = 2; with P = 1 all events go to channel 0.
    Events outside the sensor (x ≥ W, y ≥ H or negative) are dropped; their number is returned
    as the second value. With ``block`` > 1 the counts are per block×block pixels of the P×H×W
    sensor: a P×⌈H/block⌉×⌈W/block⌉ array (a downsampled image).
    """
    if block == 1:
        counts, dropped = _count_events(events["x"], events["y"], events["p"], shape)
        return counts.numpy(), dropped
    p_n, h, w = shape
    x, y = _unsigned(events["x"]), _unsigned(events["y"])
    inside = (x < w) & (y < h)
    blocks = (p_n, -(-h // block), -(-w // block))
    counts, _ = _count_events(x[inside] // block, y[inside] // block, events["p"][inside], blocks)
    return counts.numpy(), len(x) - int(np.count_nonzero(inside))


class Encoder:
    """Turns one slice into one input tensor of ``out_shape`` (P×H×W or C×H×W), for a sensor of
    ``shape``. Capabilities (class attributes): ``takes``, what it encodes (``"events"`` or
    ``"frames"``); ``spikes``, its output is binary spikes (else an analog input current);
    ``batched``, ``encode_many`` takes several slices in one pass (faster than one by one).
    ``trained``: the model checkpoint's input spec (what the model was trained with)."""

    takes: ClassVar[str]
    spikes: ClassVar[bool] = False
    batched: ClassVar[bool] = False
    out_of_bounds: int = 0  # events outside the sensor, dropped (event encoders count them)

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = tuple(shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the tensors returned."""
        return self.shape

    def __call__(self, item: Slice) -> torch.Tensor:
        raise NotImplementedError

    def encode_many(self, items: list[Slice]) -> torch.Tensor:
        """The slices ``items`` encoded (T×C×H×W)."""
        return torch.stack([self(item) for item in items])


ENCODERS: Registry[Encoder] = Registry("encoder")

_SIZE = (
    "resize the binned P×H×W events (bilinear) to P×size×size, as SEENN's CIFAR10-DVS frames (null: as is)"
)


class EventCountEncoderConfig(Options):
    """Events: plain event counts per pixel and polarity of each slice."""

    type: Literal["event_count"] = "event_count"
    size: PositiveInt | None = Field(None, description=_SIZE)


@ENCODERS.register(EventCountEncoderConfig)
class EventCountEncoder(Encoder):
    """Event counts per pixel and polarity of one slice: P×H×W for a sensor of ``shape`` P×H×W,
    or P×size×size when ``size`` is set (bilinear resize of the counts, ``align_corners=False``,
    antialiased with ``antialias``, as SEENN's CIFAR10-DVS frames: 128×128 → 48×48). Events
    outside the sensor are dropped and counted in ``out_of_bounds``."""

    takes = "events"
    batched = True

    def __init__(
        self,
        config: EventCountEncoderConfig | EventRateEncoderConfig,
        shape: tuple[int, int, int],
        trained: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(shape)
        self.size = config.size
        self.antialias = bool((trained or {}).get("antialias", False))  # as the model was trained
        self.out_of_bounds = 0

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """P×H×W, or P×size×size when resized."""
        p_n, h, w = self.shape
        return (p_n, self.size, self.size) if self.size else (p_n, h, w)

    def __call__(self, item: Slice) -> torch.Tensor:
        return self.encode_many([item])[0]

    def encode_many(self, items: list[Slice]) -> torch.Tensor:
        """The slices ``items`` at once (T×P×H×W): one counting pass over all their events,
        equal to encoding them one by one (the runtime encodes a sample's slices this way)."""
        lengths = [len(item.data) for item in items]
        # field by field: concatenating structured arrays is several times slower
        x, y, p = (np.concatenate([item.data[f] for item in items]) for f in ("x", "y", "p"))
        frames = np.repeat(np.arange(len(items), dtype=np.uint32), lengths)
        counts, dropped = _count_events(x, y, p, self.shape, frames, len(items))
        self.out_of_bounds += dropped
        if self.size and counts.shape[2:] != (self.size, self.size):
            counts = torch.nn.functional.interpolate(
                counts,
                size=(self.size, self.size),
                mode="bilinear",
                align_corners=False,
                antialias=self.antialias,
            )
        return counts


class EventRateEncoderConfig(Options):
    """Events: events per pixel and polarity per rate_unit_us of sensor time over each slice, so
    slices of any duration give comparable input."""

    type: Literal["event_rate"] = "event_rate"
    rate_unit_us: PositiveFloat | None = Field(
        None, description="the time unit of the rate (µs; null: the value the model was trained with)"
    )
    size: PositiveInt | None = Field(None, description=_SIZE)


@ENCODERS.register(EventRateEncoderConfig)
class EventRateEncoder(EventCountEncoder):
    """Events per pixel per ``rate_unit_us`` of sensor time over the slice (P×H×W, or
    P×size×size: the resized counts scaled by ``rate_unit_us`` / slice duration in µs).
    ``rate_unit_us`` unset: the model's (``trained``), else 10 ms."""

    DEFAULT_RATE_UNIT_US = 10_000.0  # for a model that does not say

    def __init__(
        self,
        config: EventRateEncoderConfig,
        shape: tuple[int, int, int],
        trained: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config, shape, trained)
        trained_unit = (trained or {}).get("rate_unit_us", self.DEFAULT_RATE_UNIT_US)
        self.rate_unit_us = float(config.rate_unit_us or trained_unit)

    def encode_many(self, items: list[Slice]) -> torch.Tensor:
        counts = super().encode_many(items)
        scale = np.array([self.rate_unit_us / max(i.t_end_us - i.t_start_us, 1) for i in items], np.float32)
        values = counts.numpy()
        np.multiply(values, scale.reshape(-1, 1, 1, 1), out=values)  # in NumPy: no torch dispatch
        return counts


class DirectEncoderConfig(Options):
    """Frames: the frame itself at every step, as a constant input current (the papers' direct coding)."""

    type: Literal["direct"] = "direct"


@ENCODERS.register(DirectEncoderConfig)
class DirectEncoder(Encoder):
    """The frame itself, every step (constant input current)."""

    takes = "frames"

    def __init__(
        self,
        config: DirectEncoderConfig,
        shape: tuple[int, int, int],
        trained: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(shape)

    def __call__(self, item: Slice) -> torch.Tensor:
        return torch.as_tensor(item.data, dtype=torch.float32).reshape(self.shape)


class PoissonEncoderConfig(Options):
    """Frames: a frame in [0, 1] rate-coded as Bernoulli spikes at every step, seeded."""

    type: Literal["poisson"] = "poisson"
    seed: int = Field(
        0, description="seed of the spikes (a replay gives the same spikes whatever the batching)"
    )


@ENCODERS.register(PoissonEncoderConfig)
class PoissonEncoder(Encoder):
    """Bernoulli spikes with probability = frame intensity (clipped to [0, 1]), seeded per
    (sample, step) so a replay is reproducible whatever the batching."""

    takes = "frames"
    spikes = True

    def __init__(
        self,
        config: PoissonEncoderConfig,
        shape: tuple[int, int, int],
        trained: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(shape)
        self.seed = config.seed
        self._gen = torch.Generator()

    def __call__(self, item: Slice) -> torch.Tensor:
        frame = torch.as_tensor(item.data, dtype=torch.float32).reshape(self.shape)
        key = f"{self.seed}/{item.stream}/{item.sample}/{item.index}".encode()
        self._gen.manual_seed(zlib.crc32(key))
        return (torch.rand(self.shape, generator=self._gen) < frame.clamp(0, 1)).float()
