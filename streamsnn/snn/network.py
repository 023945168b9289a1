"""A spiking network as a pure step function over an explicit state tuple.

The network is a flat list of layers: synapse layers (conv, linear, BatchNorm, pooling,
flatten), spiking neuron layers (with state), and ``Fork``/``Merge`` markers for residual
connections (``Fork`` keeps the current activation, ``Merge`` adds its shortcut of it back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from streamsnn.snn.neurons import SpikingNeuron

Observer = Callable[[nn.Module, torch.Tensor, torch.Tensor], None]
"""Called as ``observer(layer, input, output)`` for every layer of a step (counting, probes)."""


class NetState(NamedTuple):
    """State of a whole network for a batch: one state per spiking layer and the output
    accumulated by the last (non-spiking) layer since the last reset."""

    layers: tuple[NamedTuple, ...]
    out: torch.Tensor


class Fork(nn.Module):
    """Start of a residual connection: remembers the activation under ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def extra_repr(self) -> str:
        return self.name


class Merge(nn.Module):
    """End of a residual connection: adds ``shortcut(activation at Fork name)``."""

    def __init__(self, name: str, shortcut: nn.Module) -> None:
        super().__init__()
        self.name, self.shortcut = name, shortcut

    def extra_repr(self) -> str:
        return self.name


class Scale(nn.Module):
    """Multiply by a constant (an identity shortcut carrying spikes of amplitude θ)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.register_buffer("factor", torch.tensor(float(factor)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor.to(x.dtype)


class SpikingNetwork(nn.Module):
    """Synapse layers interleaved with spiking layers; the last layer only accumulates its input
    over time.

    ``step`` advances one time step, ``run`` many (layer by layer, T folded into the batch for
    the synapses); both give the same result.
    """

    def __init__(self, layers: list[nn.Module], input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(input_shape)
        self._neuron_shapes = self._trace_shapes()

    def _trace_shapes(self) -> list[tuple[int, ...]]:
        shapes: list[tuple[int, ...]] = []
        param = next(self.layers.parameters(), None)
        x = torch.zeros(1, *self.input_shape, dtype=param.dtype if param is not None else torch.float32)
        saved: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, SpikingNeuron):
                    shapes.append(tuple(x.shape[1:]))
                else:
                    x = self._synapse(layer, x, saved, None)
        self.n_classes = int(x.shape[1])
        return shapes

    @property
    def neuron_shapes(self) -> list[tuple[int, ...]]:
        """Shape (without batch) of every spiking layer."""
        return list(self._neuron_shapes)

    @property
    def neurons(self) -> list[SpikingNeuron]:
        return [layer for layer in self.layers if isinstance(layer, SpikingNeuron)]

    def init_state(
        self, batch: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> NetState:
        """A fresh state (membranes at V0, empty output) for ``batch`` streams."""
        device = torch.device(device)
        return NetState(
            tuple(
                n.init_state((batch, *s), dtype, device)
                for n, s in zip(self.neurons, self._neuron_shapes, strict=True)
            ),
            torch.zeros(batch, self.n_classes, dtype=dtype, device=device),
        )

    @staticmethod
    def _synapse(layer: nn.Module, x: torch.Tensor, saved: dict[str, torch.Tensor], observe: Observer | None):
        if isinstance(layer, Fork):
            saved[layer.name] = x
            return x
        if isinstance(layer, Merge):
            short_in = saved.pop(layer.name)
            short = layer.shortcut(short_in)
            if observe is not None:
                observe(layer.shortcut, short_in, short)
            return x + short
        y = layer(x)
        if observe is not None:
            observe(layer, x, y)
        return y

    def step(
        self, x: torch.Tensor, state: NetState, observe: Observer | None = None
    ) -> tuple[NetState, torch.Tensor]:
        """One time step for a batch: input B×C×H×W → new state and spikes per stream (B)."""
        new_layers, spikes = [], torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        saved: dict[str, torch.Tensor] = {}
        k = 0
        for layer in self.layers:
            if isinstance(layer, SpikingNeuron):
                z, s = layer(x, state.layers[k])
                if observe is not None:
                    observe(layer, x, z)
                x = z
                new_layers.append(s)
                spikes = spikes + z.flatten(1).abs().sum(1)
                k += 1
            else:
                x = self._synapse(layer, x, saved, observe)
        return NetState(tuple(new_layers), state.out + x), spikes

    def run_per_step(
        self, xs: torch.Tensor, state: NetState
    ) -> tuple[tuple[NamedTuple, ...], torch.Tensor, torch.Tensor]:
        """T steps layer by layer (T folded into the batch for the synapses): the new layer
        states, the last layer's output at every step (T×B×K, not accumulated) and spikes per
        step and stream (T×B). Differentiable (direct training)."""
        t_n, b = xs.shape[:2]
        x = xs.flatten(0, 1)
        new_layers, spikes = [], torch.zeros(t_n, b, dtype=xs.dtype, device=xs.device)
        saved: dict[str, torch.Tensor] = {}
        k = 0
        for layer in self.layers:
            if isinstance(layer, SpikingNeuron):
                per_step = x.unflatten(0, (t_n, b))
                s, outs = state.layers[k], []
                for t in range(t_n):
                    z, s = layer(per_step[t], s)
                    outs.append(z)
                x = torch.stack(outs).flatten(0, 1)
                spikes = spikes + x.flatten(1).abs().sum(1).unflatten(0, (t_n, b))
                new_layers.append(s)
                k += 1
            else:
                x = self._synapse(layer, x, saved, None)
        return tuple(new_layers), x.unflatten(0, (t_n, b)), spikes

    def run(self, xs: torch.Tensor, state: NetState) -> tuple[NetState, torch.Tensor, torch.Tensor]:
        """T steps at once: input T×B×C×H×W → final state, accumulated outputs after every step
        (T×B×K) and spikes per step and stream (T×B)."""
        layers, per_step, spikes = self.run_per_step(xs, state)
        acc, outs = state.out, []
        for x_t in per_step:
            acc = acc + x_t  # same order of additions as ``step``
            outs.append(acc)
        return NetState(layers, acc), torch.stack(outs), spikes
