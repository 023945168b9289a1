"""A converted spiking network as a pure step function over an explicit state tuple."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from streamsnn.snn.neurons import SpikingNeuron


class NetState(NamedTuple):
    """State of a whole network for a batch: one membrane per spiking layer and the output
    accumulated by the last (non-spiking) layer since the last reset."""

    layers: tuple[NamedTuple, ...]
    out: torch.Tensor


class SpikingNetwork(nn.Module):
    """Synapse layers (conv, linear, pooling, flatten) interleaved with IF layers; the last
    layer only accumulates its input over time.

    ``step`` advances one time step, ``run`` many (layer by layer, T folded into the batch for
    the synapses); both give the same result.
    """

    def __init__(self, layers: list[nn.Module], input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(input_shape)
        self._neuron_shapes = self._trace_shapes()

    def _trace_shapes(self) -> list[tuple[int, ...]]:
        shapes = []
        param = next(self.layers.parameters(), None)
        x = torch.zeros(1, *self.input_shape, dtype=param.dtype if param is not None else torch.float32)
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, SpikingNeuron):
                    shapes.append(tuple(x.shape[1:]))
                else:
                    x = layer(x)
        self.n_classes = int(x.shape[1])
        return shapes

    @property
    def neuron_shapes(self) -> list[tuple[int, ...]]:
        """Shape (without batch) of every spiking layer."""
        return list(self._neuron_shapes)

    def init_state(
        self, batch: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> NetState:
        """A fresh state (membranes at V0, empty output) for ``batch`` streams."""
        device = torch.device(device)
        neurons = [layer for layer in self.layers if isinstance(layer, SpikingNeuron)]
        return NetState(
            tuple(
                n.init_state((batch, *s), dtype, device)
                for n, s in zip(neurons, self._neuron_shapes, strict=True)
            ),
            torch.zeros(batch, self.n_classes, dtype=dtype, device=device),
        )

    def step(self, x: torch.Tensor, state: NetState) -> tuple[NetState, torch.Tensor]:
        """One time step for a batch: input B×C×H×W → new state and spikes per stream (B)."""
        new_layers, spikes = [], torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        k = 0
        for layer in self.layers:
            if isinstance(layer, SpikingNeuron):
                x, s = layer(x, state.layers[k])
                new_layers.append(s)
                spikes = spikes + x.flatten(1).abs().sum(1)
                k += 1
            else:
                x = layer(x)
        return NetState(tuple(new_layers), state.out + x), spikes

    def run(self, xs: torch.Tensor, state: NetState) -> tuple[NetState, torch.Tensor, torch.Tensor]:
        """T steps at once: input T×B×C×H×W → final state, accumulated outputs after every step
        (T×B×K) and spikes per step and stream (T×B)."""
        t_n, b = xs.shape[:2]
        x = xs.flatten(0, 1)
        new_layers, spikes = [], torch.zeros(t_n, b, dtype=xs.dtype, device=xs.device)
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
                x = layer(x)
        acc, outs = state.out, []
        for x_t in x.unflatten(0, (t_n, b)):
            acc = acc + x_t  # same order of additions as ``step``
            outs.append(acc)
        return NetState(tuple(new_layers), acc), torch.stack(outs), spikes
