"""Spiking neurons as pure step functions over explicit state, and thin modules around them.

A step takes the input current and the state and returns the spikes and the new state; nothing
is hidden in the module, so a network's state can be stored, batched, reset and restored per
stream. Thresholds and initial membranes are scalars, per layer, or per channel (shape C×1×1
for conv layers, C for linear layers), stored in the dtype the neuron is built with (float64 for a
float64 conversion, so nothing is rounded to float32 on the way).

The pure functions below define the dynamics (and carry gradients for training). For inference
every neuron module also has ``step_``: the same update in place on the state tensors, in three
elementwise passes and no temporaries (tested equal to the pure function, bit for bit).

- ``if_soft_reset_step``: integrate-and-fire, reset by subtraction (QCFS conversion).
- ``qffs_step``: integrate-and-fire with negative spikes and a spike budget Z_max
  (QFFS, supplementary eqs. 18–24).
- ``lif_hard_reset_step``: leaky integrate-and-fire, reset to zero, surrogate gradient
  (direct training, SEENN / TET).

Ties (a membrane exactly at the threshold) are settled as follows; the references differ:

- IF fires at ``v ≥ θ``, as the released code of QCFS (spikingjelly's ``v − θ ≥ 0``), Dynamic
  Confidence (``mem >= th``) and SaRNN (``v >= 1``). Dynamic Confidence's supplementary (Θ(0) = 0)
  and SEENN's conversion code (``mem − 1 > 0``) fire at ``v > θ``. With ``≥``, L steps of constant
  input give exactly the QCFS activation ``floor(x·L/θ + 0.5)``, which rounds half up.
- QFFS fires +1 at ``v ≥ θ`` (as IF, and Dynamic Confidence's code) and −1 at ``v < 0`` (strict, as
  the supplementary's Θ(−u) and the code); the budget ``Z < Z_max`` and ``Z > 0`` is strict in both.
- LIF fires at ``v > θ``, as SEENN's paper ("exceeds a threshold") and the code of its VGGSNN for
  CIFAR10-DVS (``mem − θ > 0``); SEENN's ResNet-19 / VGG-16 code (Dspike) fires at ``≥``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class IFState(NamedTuple):
    """Membrane potential (same shape as the layer's input)."""

    v: torch.Tensor


class QFFSState(NamedTuple):
    """Membrane potential and the running spike count Z (net of negative spikes)."""

    v: torch.Tensor
    count: torch.Tensor


class SurrogateSpike(torch.autograd.Function):
    """Heaviside step forward (1 where x > 0); triangle surrogate gradient max(0, γ − |x|)/γ²
    backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.gamma = gamma
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        g = ctx.gamma
        return grad * (g - x.abs()).clamp(min=0) / (g * g), None


def if_soft_reset_step(
    x: torch.Tensor, state: IFState, threshold: torch.Tensor | float
) -> tuple[torch.Tensor, IFState]:
    """``v ← v + x``; a neuron with ``v ≥ threshold`` spikes (1) and ``v ← v − threshold``."""
    v = state.v + x
    spikes = (v >= threshold).to(x.dtype)
    return spikes, IFState(v - spikes * threshold)


def qffs_step(
    x: torch.Tensor, state: QFFSState, threshold: torch.Tensor | float, z_max: int
) -> tuple[torch.Tensor, QFFSState]:
    """Soft-reset IF with negative spikes and a spike budget (eqs. 18–20 of the supplement).

    ``v ← v + x``; spike +1 if ``v ≥ θ`` and ``Z < Z_max``; spike −1 if ``v < 0`` and ``Z > 0``;
    ``v ← v − z·θ``; ``Z ← Z + z``. A negative spike takes back an earlier spike that later input
    proved premature (overshoot), so the count tracks the quantised activation.
    """
    v = state.v + x
    pos = (v >= threshold) & (state.count < z_max)
    neg = (v < 0) & (state.count > 0)
    z = pos.to(x.dtype) - neg.to(x.dtype)
    return z, QFFSState(v - z * threshold, state.count + z)


def lif_hard_reset_step(
    x: torch.Tensor, state: IFState, threshold: torch.Tensor | float, decay: float, gamma: float = 1.0
) -> tuple[torch.Tensor, IFState]:
    """``v ← decay·v + x``; spike if ``v > threshold`` (surrogate gradient of width ``gamma``);
    a spiking neuron resets to 0. ``decay`` is SEENN's τ = 0.5."""
    v = torch.add(x, state.v, alpha=decay)  # one pass, the same op as the in-place step
    spikes = SurrogateSpike.apply(v - threshold, gamma)
    return spikes, IFState(v * (1 - spikes))


class SpikingNeuron(nn.Module):
    """A layer of spiking neurons: threshold θ and initial membrane ``v0`` as a fraction of θ
    (0.5: the QCFS / high-entropy initialisation), both scalar or per channel, held in ``dtype``.

    ``signed``: spikes can be negative (QFFS), so spike counts take their magnitude."""

    signed = False

    def __init__(
        self,
        threshold: torch.Tensor | float = 1.0,
        v0: torch.Tensor | float = 0.5,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=dtype).clone())
        self.register_buffer("v0", torch.as_tensor(v0, dtype=dtype).clone())

    def _fresh_v(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        start = (self.v0 * self.threshold).to(dtype=dtype, device=device)
        return torch.zeros(shape, dtype=dtype, device=device) + start

    def init_state(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> NamedTuple:
        """State of a fresh layer for inputs of ``shape`` (batch first)."""
        return IFState(self._fresh_v(shape, dtype, device))

    def step_(self, x: torch.Tensor, state: NamedTuple, out: torch.Tensor | None = None) -> torch.Tensor:
        """Inference step in place: updates the tensors of ``state`` and returns the spikes,
        written into ``out`` when given (``x`` itself may be passed: it is read first)."""
        spikes, new = self(x, state)
        for field, value in zip(state, new, strict=True):
            field.copy_(value)
        return spikes if out is None else out.copy_(spikes)

    def _fire(self, v: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        """Spikes ``v ≥ θ`` (1.0 / 0.0), written into ``out`` when given."""
        return torch.ge(v, self.threshold, out=torch.empty_like(v) if out is None else out)

    def extra_repr(self) -> str:
        def show(t: torch.Tensor) -> str:
            return f"{t.item():.4g}" if t.numel() == 1 else f"per-channel[{t.numel()}]"

        return f"threshold={show(self.threshold)}, v0={show(self.v0)}"


class IFNeuron(SpikingNeuron):
    """Integrate-and-fire, soft reset (QCFS and data-normalised conversion); fires at v ≥ θ."""

    def forward(self, x: torch.Tensor, state: IFState) -> tuple[torch.Tensor, IFState]:
        return if_soft_reset_step(x, state, self.threshold.to(x.dtype))

    def step_(self, x: torch.Tensor, state: IFState, out: torch.Tensor | None = None) -> torch.Tensor:
        v = state.v.add_(x)
        spikes = self._fire(v, out)
        v.addcmul_(spikes, self.threshold, value=-1)
        return spikes


class QFFSNeuron(SpikingNeuron):
    """Integrate-and-fire with negative spikes and spike budget ``z_max`` = 2^b − 1 (QFFS); fires
    +1 at v ≥ θ (Z < Z_max), −1 at v < 0 (Z > 0)."""

    signed = True

    def __init__(
        self,
        threshold: torch.Tensor | float = 1.0,
        v0: torch.Tensor | float = 0.5,
        z_max: int = 3,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(threshold, v0, dtype)
        self.z_max = int(z_max)

    def init_state(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> QFFSState:
        return QFFSState(self._fresh_v(shape, dtype, device), torch.zeros(shape, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor, state: QFFSState) -> tuple[torch.Tensor, QFFSState]:
        return qffs_step(x, state, self.threshold.to(x.dtype), self.z_max)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", z_max={self.z_max}"


class LIFNeuron(SpikingNeuron):
    """Leaky integrate-and-fire with hard reset and a surrogate gradient (direct training); fires
    at v > θ."""

    def __init__(self, threshold: float = 1.0, decay: float = 0.5, v0: float = 0.0, gamma: float = 1.0):
        super().__init__(threshold, v0)
        self.decay, self.gamma = float(decay), float(gamma)

    def forward(self, x: torch.Tensor, state: IFState) -> tuple[torch.Tensor, IFState]:
        return lif_hard_reset_step(x, state, self.threshold.to(x.dtype), self.decay, self.gamma)

    def step_(self, x: torch.Tensor, state: IFState, out: torch.Tensor | None = None) -> torch.Tensor:
        v = torch.add(x, state.v, alpha=self.decay, out=state.v)  # one pass for leak and input
        spikes = torch.gt(v, self.threshold, out=torch.empty_like(v) if out is None else out)
        v.addcmul_(v, spikes, value=-1)  # a spiking neuron's v − v = 0 (hard reset)
        return spikes

    def extra_repr(self) -> str:
        return super().extra_repr() + f", decay={self.decay}"
