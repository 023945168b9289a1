"""Spiking neurons as pure step functions over explicit state, and thin modules around them.

A step takes the input current and the state and returns the spikes (0/1) and the new state;
nothing is hidden in the module, so a network's state can be stored, batched, reset and
restored per stream.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class IFState(NamedTuple):
    """Membrane potential of an integrate-and-fire layer (same shape as its input)."""

    v: torch.Tensor


def if_soft_reset_step(
    x: torch.Tensor, state: IFState, threshold: torch.Tensor | float
) -> tuple[torch.Tensor, IFState]:
    """Integrate-and-fire with soft reset (reset by subtraction).

    ``v ← v + x``; a neuron with ``v ≥ threshold`` spikes (1) and ``v ← v − threshold``.
    """
    v = state.v + x
    spikes = (v >= threshold).to(x.dtype)
    return spikes, IFState(v - spikes * threshold)


class IFNeuron(nn.Module):
    """Integrate-and-fire layer, soft reset, threshold θ (scalar or per channel), initial
    membrane ``v0`` as a fraction of θ (0.5: the QCFS / high-entropy initialisation)."""

    def __init__(self, threshold: torch.Tensor | float = 1.0, v0: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32))
        self.v0 = float(v0)

    def init_state(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> IFState:
        """State of a fresh layer for inputs of ``shape`` (batch first)."""
        theta = self.threshold.to(dtype=dtype, device=device)
        return IFState(torch.zeros(shape, dtype=dtype, device=device) + self.v0 * theta)

    def forward(self, x: torch.Tensor, state: IFState) -> tuple[torch.Tensor, IFState]:
        return if_soft_reset_step(x, state, self.threshold.to(x.dtype))

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.flatten()[:4].tolist()}, v0={self.v0}"
