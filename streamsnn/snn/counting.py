"""Counting what a spiking network does: spikes per neuron, synaptic events per layer and step,
and the energy estimate of SEENN (0.9 pJ per accumulate, 4.6 pJ per multiply-accumulate).

Synaptic events of a layer are its non-zero inputs times their fan-out, counted exactly at the
borders (a conv counts the non-zero inputs under every output's receptive field, as Dutson et
al. do by convolving the spikes with a ones kernel). A layer whose input is analog (the direct
input frame) performs multiply-accumulates instead; the ANN performs MACs everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from streamsnn.snn.network import Scale, SpikingNetwork
from streamsnn.snn.neurons import SpikingNeuron

PJ_PER_AC = 0.9
PJ_PER_MAC = 4.6


def synaptic_events(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per sample (B): number of (non-zero input, synapse) pairs ``layer`` processes for ``x``."""
    nz = (x != 0).to(torch.float32)
    if isinstance(layer, nn.Conv1d):
        g = layer.groups
        ones = torch.ones(g, layer.in_channels // g, *layer.kernel_size, device=x.device)
        per_group = F.conv1d(nz, ones, None, layer.stride, layer.padding, layer.dilation, groups=g)
        return per_group.flatten(1).sum(1) * (layer.out_channels // g)
    if isinstance(layer, nn.Conv2d):
        g = layer.groups
        ones = torch.ones(g, layer.in_channels // g, *layer.kernel_size, device=x.device)
        per_group = F.conv2d(nz, ones, None, layer.stride, layer.padding, layer.dilation, groups=g)
        return per_group.flatten(1).sum(1) * (layer.out_channels // g)
    if isinstance(layer, nn.Linear):
        return nz.flatten(1).sum(1) * layer.out_features
    if isinstance(layer, Scale):
        return nz.flatten(1).sum(1)
    if isinstance(layer, nn.AvgPool2d):
        k = layer.kernel_size if isinstance(layer.kernel_size, tuple) else (layer.kernel_size,) * 2
        pooled = F.avg_pool2d(nz, k, layer.stride, layer.padding, count_include_pad=True) * (k[0] * k[1])
        return pooled.flatten(1).sum(1)
    return torch.zeros(x.shape[0], device=x.device)


def dense_macs(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Multiply-accumulates of one dense (ANN) pass of ``layer`` from input ``x`` to output ``y``
    (per sample)."""
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        k = int(torch.tensor(layer.kernel_size).prod())
        return int(y[0].numel() * (layer.in_channels // layer.groups) * k)
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features
    if isinstance(layer, nn.AvgPool2d):
        k = layer.kernel_size if isinstance(layer.kernel_size, tuple) else (layer.kernel_size,) * 2
        return int(y[0].numel() * k[0] * k[1])
    return 0


@dataclass
class Counts:
    """Counts of a run of T steps over a batch, per step and per layer (summed over the batch)."""

    samples: int
    neurons: int
    layer_names: list[str]
    spikes: list[list[float]] = field(default_factory=list)  # [step][spiking layer]
    events: list[list[float]] = field(default_factory=list)  # [step][synaptic layer]: accumulates
    macs: list[list[float]] = field(default_factory=list)  # [step][synaptic layer]: multiply-accumulates
    ann_macs: int = 0  # per sample, one dense forward pass

    def spikes_per_neuron(self, steps: int | None = None) -> float:
        """Spikes per neuron per sample over the first ``steps`` steps (all by default)."""
        total = sum(sum(s) for s in self.spikes[:steps])
        return total / (self.neurons * self.samples)

    def events_per_sample(self, steps: int | None = None) -> float:
        return sum(sum(e) for e in self.events[:steps]) / self.samples

    def energy_uj(self, steps: int | None = None) -> float:
        """Estimated energy per sample over the first ``steps`` steps (µJ)."""
        acs = sum(sum(e) for e in self.events[:steps])
        macs = sum(sum(m) for m in self.macs[:steps])
        return energy_uj(acs, macs) / self.samples

    def ann_energy_uj(self) -> float:
        return energy_uj(0, self.ann_macs)


def layer_operations(
    layer: nn.Module, x: torch.Tensor, y: torch.Tensor, analog: bool
) -> tuple[torch.Tensor, int]:
    """Per sample: accumulates (B, synaptic events) and multiply-accumulates (an int, the same
    for every sample) of one synapse layer. ``analog``: its input is real-valued (no spiking
    layer before it), so a conv or linear layer multiplies."""
    if analog and isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        return torch.zeros(x.shape[0], device=x.device), dense_macs(layer, x, y)
    return synaptic_events(layer, x), 0


class SampleCounter:
    """Observer of one network step: accumulates ``acs`` and multiply-accumulates ``macs`` per
    sample (B), the operator's per-stream counters."""

    def __init__(self, batch: int, analog_input: bool, device: torch.device | str = "cpu") -> None:
        self.analog = analog_input
        self.acs = torch.zeros(batch, device=device)
        self.macs = torch.zeros(batch, device=device)

    def __call__(self, layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        if isinstance(layer, SpikingNeuron):
            self.analog = not layer.spiking  # a leaky integrator's membrane is analog
            return
        acs, macs = layer_operations(layer, x, y, self.analog)
        self.acs += acs
        self.macs += macs


def energy_uj(acs: float, macs: float) -> float:
    """Energy (µJ) of ``acs`` accumulates and ``macs`` multiply-accumulates."""
    return (acs * PJ_PER_AC + macs * PJ_PER_MAC) * 1e-6


class _StepCounter:
    """Observer of one network step: spikes per spiking layer, events and MACs per synapse
    (summed over the batch)."""

    def __init__(self, counts: Counts, batch: int, analog: bool, first_step: bool) -> None:
        self.counts, self.batch, self.analog, self.first_step = counts, batch, analog, first_step
        self.spikes: list[float] = []
        self.events: list[float] = []
        self.macs: list[float] = []

    def __call__(self, layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        if isinstance(layer, SpikingNeuron):
            self.spikes.append(float(y.abs().sum()) if layer.spiking else 0.0)
            self.analog = not layer.spiking
            return
        if self.first_step:
            self.counts.ann_macs += dense_macs(layer, x, y)
        acs, macs = layer_operations(layer, x, y, self.analog)
        self.events.append(float(acs.sum()))
        self.macs.append(float(macs * self.batch))


@torch.no_grad()
def counted_run(
    net: SpikingNetwork, xs: torch.Tensor, analog_input: bool = True
) -> tuple[torch.Tensor, Counts]:
    """Run T steps (xs: T×B×C×H×W) from a fresh state, counting as it goes. Returns the
    accumulated output after every step (T×B×K) and the counts. ``analog_input``: the input is a
    real-valued frame (direct coding), so the layers before the first spiking layer perform MACs."""
    t_n, b = xs.shape[:2]
    state = net.init_state(b, xs.dtype, xs.device)
    neurons = sum(int(torch.tensor(s).prod()) for s in net.neuron_shapes)
    counts = Counts(b, neurons, [f"{i}:{type(m).__name__}" for i, m in enumerate(net.layers)])
    outs = []
    for t in range(t_n):
        step = _StepCounter(counts, b, analog_input, first_step=t == 0)
        state, _ = net.step(xs[t], state, step)
        outs.append(state.out)
        counts.spikes.append(step.spikes)
        counts.events.append(step.events)
        counts.macs.append(step.macs)
    return torch.stack(outs), counts
