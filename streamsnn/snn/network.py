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
    """State of a whole network for a batch: one state per spiking layer and the read-out
    (``SpikingNetwork.readout``): the last layer's output accumulated since the last reset, or
    the current membrane of a last layer that is a leaky integrator."""

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
    """Multiply by a constant (an identity shortcut carrying spikes of amplitude θ), a scalar or
    a tensor that broadcasts to the input (without batch)."""

    def __init__(self, factor: float | torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("factor", torch.as_tensor(factor, dtype=dtype).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor.to(x.dtype)


class Threshold(nn.Module):
    """A stateless threshold (NIR's Threshold): 1 where the input is above ``threshold`` (a
    scalar or a tensor that broadcasts to the input without batch), else 0."""

    def __init__(self, threshold: float | torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=dtype).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.threshold.to(x.dtype)).to(x.dtype)


class SpikingNetwork(nn.Module):
    """Synapse layers interleaved with spiking layers. The read-out (``readout``) is ``sum``: the
    last layer's output accumulated over time (a synapse layer's currents, or a spiking layer's
    spike counts), or ``current``: when the last layer is a leaky integrator (a neuron that does
    not spike), its membrane after the latest step.

    For inference, ``step_`` advances one time step and ``run_`` T steps (layer by layer, T folded
    into the batch for the synapses), both in place on a state; ``step`` and ``run`` are their
    pure forms. ``run_per_step`` is the differentiable form used for training.
    """

    def __init__(self, layers: list[nn.Module], input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(input_shape)
        self._neuron_shapes = self._trace_shapes()
        self._program = self._plan()
        last = self.layers[-1] if len(self.layers) else None
        self.readout = "current" if isinstance(last, SpikingNeuron) and not last.spiking else "sum"

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

    def _plan(self) -> list[tuple[bool, nn.Module, bool]]:
        """The layers as (spiking, layer, owned) for the inference loop; ``owned``: the layer's
        input is a fresh intermediate of this step, so a spiking layer may write its spikes
        into it instead of allocating."""
        program, owned = [], False  # the network's input belongs to the caller
        for layer in self.layers:
            spiking = isinstance(layer, SpikingNeuron)
            program.append((spiking, layer, owned))
            if spiking or isinstance(layer, (nn.Conv2d, nn.Linear, nn.AvgPool2d, Scale, Merge)):
                owned = True  # a fresh output
            elif not isinstance(layer, nn.Flatten):  # a view keeps the status; Fork keeps x
                owned = False
        return program

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
    def clone_state(state: NetState) -> NetState:
        return NetState(tuple(type(s)(*(f.clone() for f in s)) for s in state.layers), state.out.clone())

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

    def _forward_(
        self, x: torch.Tensor, state: NetState, t_n: int, observe: Observer | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference over ``t_n`` steps in place on ``state``: x is (t_n·B)×C×H×W, T folded into
        the batch. Returns the last layer's output per step ((t_n·B)×K, not accumulated) and the
        spikes per step and stream ((t_n·B))."""
        saved: dict[str, torch.Tensor] = {}
        # spikes per spiking layer and stream, summed into rows of one buffer (one call per layer)
        per_layer = x.new_empty(len(self.neurons), x.shape[0])
        rows, k = per_layer.unbind(0), 0
        for spiking, layer, owned in self._program:
            if spiking:
                s = state.layers[k]
                k += 1
                reuse = owned and observe is None
                if t_n == 1:
                    z = layer.step_(x, s, out=x if reuse else None)
                else:
                    per_step = x.unflatten(0, (t_n, -1))
                    out = per_step if reuse else torch.empty_like(per_step)
                    for t in range(t_n):
                        layer.step_(per_step[t], s, out=out[t])
                    z = out.flatten(0, 1)
                if observe is not None:
                    observe(layer, x, z)
                if layer.spiking:  # summed over dims, not flatten(1): a channels-last tensor would be copied
                    torch.sum(z.abs() if layer.signed else z, tuple(range(1, z.dim())), out=rows[k - 1])
                else:
                    rows[k - 1].zero_()
                x = z
            else:
                x = self._synapse(layer, x, saved, observe)
        return x, per_layer.sum(0)

    @torch.no_grad()
    def step_(self, x: torch.Tensor, state: NetState, observe: Observer | None = None) -> torch.Tensor:
        """One inference step for a batch, in place on ``state``: input B×C×H×W → spikes per
        stream (B). ``observe`` sees every layer's input and output (counting, probes)."""
        y, spikes = self._forward_(x, state, 1, observe)
        if self.readout == "sum":
            state.out.add_(y)
        else:
            state.out.copy_(y)
        return spikes

    @torch.no_grad()
    def run_(
        self, xs: torch.Tensor, state: NetState, observe: Observer | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """T inference steps at once, in place on ``state`` (xs: T×B×C×H×W, T folded into the
        batch for the synapses, spiking layers looping over T): the accumulated output after
        every step (T×B×K; the read-out) and the spikes per step and stream (T×B). Same results
        as T calls of ``step_``."""
        t_n, b = xs.shape[:2]
        y, spikes = self._forward_(xs.flatten(0, 1), state, t_n, observe)
        outs = y.unflatten(0, (t_n, b))
        if self.readout == "sum":
            outs[0].add_(state.out)  # the same order of additions as step_
            for t in range(1, t_n):
                outs[t].add_(outs[t - 1])
        state.out.copy_(outs[-1])
        return outs, spikes.unflatten(0, (t_n, b))

    def step(
        self, x: torch.Tensor, state: NetState, observe: Observer | None = None
    ) -> tuple[NetState, torch.Tensor]:
        """``step_`` on a copy of ``state``: the new state and the spikes per stream (B)."""
        new = self.clone_state(state)
        return new, self.step_(x, new, observe)

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
                if layer.spiking:
                    spikes = spikes + x.flatten(1).abs().sum(1).unflatten(0, (t_n, b))
                new_layers.append(s)
                k += 1
            else:
                x = self._synapse(layer, x, saved, None)
        return tuple(new_layers), x.unflatten(0, (t_n, b)), spikes

    def run(self, xs: torch.Tensor, state: NetState) -> tuple[NetState, torch.Tensor, torch.Tensor]:
        """``run_`` on a copy of ``state``: the final state, accumulated outputs after every step
        (T×B×K) and spikes per step and stream (T×B)."""
        new = self.clone_state(state)
        outs, spikes = self.run_(xs, new)
        return new, outs, spikes
