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
- ``leaky_step`` and ``current_step``: one step of a linear membrane ``v ← decay·v + gain·x +
  leak`` (with a synaptic current before it: ``i ← syn_decay·i + syn_gain·x``), firing at
  ``v > θ`` with reset to a value or by subtraction, or not firing at all (a leaky integrator,
  whose output is ``v``): the discretised NIR neurons IF, LIF, LI, CubaLIF and CubaLI (the rule
  that gives the factors from time constants and ``dt`` is the reader's, ``streamsnn.interop``).

Ties (a membrane exactly at the threshold) are settled as follows; the references differ:

- IF fires at ``v ≥ θ``, as the released code of QCFS (spikingjelly's ``v − θ ≥ 0``), Dynamic
  Confidence (``mem >= th``) and SaRNN (``v >= 1``). Dynamic Confidence's supplementary (Θ(0) = 0)
  and SEENN's conversion code (``mem − 1 > 0``) fire at ``v > θ``. With ``≥``, L steps of constant
  input give exactly the QCFS activation ``floor(x·L/θ + 0.5)``, which rounds half up.
- QFFS fires +1 at ``v ≥ θ`` (as IF, and Dynamic Confidence's code) and −1 at ``v < 0`` (strict, as
  the supplementary's Θ(−u) and the code); the budget ``Z < Z_max`` and ``Z > 0`` is strict in both.
- The NIR neurons fire at ``v > θ``, as NIR defines them.
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


class CurrentState(NamedTuple):
    """Membrane potential and synaptic current (current-based neurons)."""

    v: torch.Tensor
    i: torch.Tensor


RESETS = ("value", "subtract")
"""How a NIR neuron resets after a spike: to ``v_reset`` (NIR's rule) or by subtracting θ."""


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


def leaky_step(
    x: torch.Tensor,
    state: IFState,
    decay: torch.Tensor,
    gain: torch.Tensor,
    leak: torch.Tensor,
    threshold: torch.Tensor | None = None,
    reset: str = "value",
    v_reset: torch.Tensor | float = 0.0,
) -> tuple[torch.Tensor, IFState]:
    """``v ← decay·v + gain·x + leak``. With a ``threshold``: spike (1) where ``v > threshold``,
    then ``v ← v_reset`` (``reset`` 'value') or ``v ← v − threshold`` ('subtract'); without
    one (a leaky integrator) the output is ``v``."""
    v = torch.addcmul(state.v * decay, x, gain) + leak
    if threshold is None:
        return v, IFState(v)
    spikes = (v > threshold).to(x.dtype)
    if reset == "subtract":
        return spikes, IFState(v - spikes * threshold)
    return spikes, IFState(torch.where(spikes.bool(), torch.as_tensor(v_reset, dtype=v.dtype), v))


def current_step(
    x: torch.Tensor,
    state: CurrentState,
    syn_decay: torch.Tensor,
    syn_gain: torch.Tensor,
    decay: torch.Tensor,
    gain: torch.Tensor,
    leak: torch.Tensor,
    threshold: torch.Tensor | None = None,
    reset: str = "value",
    v_reset: torch.Tensor | float = 0.0,
) -> tuple[torch.Tensor, CurrentState]:
    """``i ← syn_decay·i + syn_gain·x``, then ``leaky_step`` with the new current as its input."""
    i = torch.addcmul(state.i * syn_decay, x, syn_gain)
    out, new = leaky_step(i, IFState(state.v), decay, gain, leak, threshold, reset, v_reset)
    return out, CurrentState(new.v, i)


class SpikingNeuron(nn.Module):
    """A layer of spiking neurons: threshold θ and initial membrane ``v0`` as a fraction of θ
    (0.5: the QCFS / high-entropy initialisation), both scalar or per channel, held in ``dtype``.

    ``signed``: spikes can be negative (QFFS), so spike counts take their magnitude.
    ``spiking``: the output is spikes (False: a leaky integrator's membrane, counted as no
    spikes, and analog input to the next layer)."""

    signed = False
    spiking = True

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


class LeakyNeuron(SpikingNeuron):
    """A discretised linear membrane (NIR's IF, LIF and LI; ``leaky_step``): ``decay``, ``gain``,
    ``leak``, ``threshold`` and ``v_reset`` are scalars or tensors that broadcast to the layer's
    shape (without batch). ``fires`` False: a leaky integrator, whose output is its membrane
    (``threshold`` and ``v_reset`` unused). The state starts at 0."""

    def __init__(
        self,
        decay: torch.Tensor | float,
        gain: torch.Tensor | float,
        leak: torch.Tensor | float = 0.0,
        threshold: torch.Tensor | float = 1.0,
        v_reset: torch.Tensor | float = 0.0,
        reset: str = "value",
        fires: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(threshold, 0.0, dtype)
        if reset not in RESETS:
            raise ValueError(f"unknown reset '{reset}'; use one of {', '.join(RESETS)}")
        self.reset, self.spiking = reset, bool(fires)
        for name, value in (("decay", decay), ("gain", gain), ("leak", leak), ("v_reset", v_reset)):
            self.register_buffer(name, torch.as_tensor(value, dtype=dtype).clone())

    def init_state(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> NamedTuple:
        return IFState(torch.zeros(shape, dtype=dtype, device=device))

    def _factors(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        threshold = self.threshold.to(dtype) if self.spiking else None
        return self.decay.to(dtype), self.gain.to(dtype), self.leak.to(dtype), threshold

    def forward(self, x: torch.Tensor, state: IFState) -> tuple[torch.Tensor, IFState]:
        decay, gain, leak, threshold = self._factors(x.dtype)
        return leaky_step(x, state, decay, gain, leak, threshold, self.reset, self.v_reset.to(x.dtype))

    def _membrane_(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``v ← decay·v + gain·x + leak`` in place."""
        return v.mul_(self.decay).addcmul_(x, self.gain).add_(self.leak)

    def _fire_and_reset_(self, v: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        if not self.spiking:
            return v.clone() if out is None else out.copy_(v)
        spikes = torch.gt(v, self.threshold, out=torch.empty_like(v) if out is None else out)
        if self.reset == "subtract":
            v.addcmul_(spikes, self.threshold, value=-1)
        else:
            torch.where(spikes.bool(), self.v_reset, v, out=v)
        return spikes

    def step_(self, x: torch.Tensor, state: IFState, out: torch.Tensor | None = None) -> torch.Tensor:
        return self._fire_and_reset_(self._membrane_(x, state.v), out)

    def extra_repr(self) -> str:
        what = f"reset={self.reset}" if self.spiking else "integrator (output: membrane)"
        return f"{what}, shape={tuple(self.decay.shape)}"


class CurrentNeuron(LeakyNeuron):
    """A ``LeakyNeuron`` fed by a synaptic current (NIR's CubaLIF and CubaLI; ``current_step``):
    ``i ← syn_decay·i + syn_gain·x`` drives the membrane. State (v, i) starts at 0."""

    def __init__(
        self,
        syn_decay: torch.Tensor | float,
        syn_gain: torch.Tensor | float,
        decay: torch.Tensor | float,
        gain: torch.Tensor | float,
        leak: torch.Tensor | float = 0.0,
        threshold: torch.Tensor | float = 1.0,
        v_reset: torch.Tensor | float = 0.0,
        reset: str = "value",
        fires: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(decay, gain, leak, threshold, v_reset, reset, fires, dtype)
        self.register_buffer("syn_decay", torch.as_tensor(syn_decay, dtype=dtype).clone())
        self.register_buffer("syn_gain", torch.as_tensor(syn_gain, dtype=dtype).clone())

    def init_state(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> CurrentState:
        return CurrentState(*(torch.zeros(shape, dtype=dtype, device=device) for _ in range(2)))

    def forward(self, x: torch.Tensor, state: CurrentState) -> tuple[torch.Tensor, CurrentState]:
        decay, gain, leak, threshold = self._factors(x.dtype)
        syn = self.syn_decay.to(x.dtype), self.syn_gain.to(x.dtype)
        return current_step(
            x, state, *syn, decay, gain, leak, threshold, self.reset, self.v_reset.to(x.dtype)
        )

    def step_(self, x: torch.Tensor, state: CurrentState, out: torch.Tensor | None = None) -> torch.Tensor:
        i = state.i.mul_(self.syn_decay).addcmul_(x, self.syn_gain)
        return self._fire_and_reset_(self._membrane_(i, state.v), out)
