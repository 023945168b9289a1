"""ANN → SNN conversion of QCFS-quantised networks.

Rules (Bu et al., as used by Dynamic Confidence and SEENN): BatchNorm is folded into the
convolution before it; every QCFS activation becomes an integrate-and-fire layer with soft reset,
threshold θ and initial membrane θ/2; spikes are binary, so θ moves into the weights of the next
weighted layer; average pooling and flatten stay as they are; the last layer does not spike and
only accumulates its output over time.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from streamsnn.snn.network import SpikingNetwork
from streamsnn.snn.neurons import IFNeuron
from streamsnn.snn.quant import QCFS


class ConversionError(ValueError):
    """A layer of the ANN cannot be converted; the message names it and says why."""


def fold_batchnorm(conv: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> nn.Module:
    """A copy of ``conv`` whose output equals ``bn(conv(x))`` in inference mode."""
    fused = copy.deepcopy(conv)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    fused.weight = nn.Parameter(conv.weight.detach() * scale.reshape(shape))
    fused.bias = nn.Parameter(bn.bias.detach() + (bias - bn.running_mean) * scale)
    return fused


def convert_qcfs(ann: nn.Sequential, input_shape: tuple[int, ...], v0: float = 0.5) -> SpikingNetwork:
    """Convert a QCFS ANN (``nn.Sequential``) into a ``SpikingNetwork`` for inputs of
    ``input_shape`` (C×H×W). ``v0`` is the initial membrane as a fraction of θ."""
    modules = [m for m in ann if not isinstance(m, (nn.Dropout, nn.Identity))]
    layers: list[nn.Module] = []
    carry = 1.0  # amplitude of the incoming spikes, moved into the next weighted layer
    i = 0
    while i < len(modules):
        m = modules[i]
        name = f"layer {i} ({type(m).__name__})"
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m = fold_batchnorm(m, nxt)
                i += 1
            else:
                m = copy.deepcopy(m)
            with torch.no_grad():
                m.weight.mul_(carry)
            carry = 1.0
            layers.append(m)
        elif isinstance(m, QCFS):
            theta = float(m.theta.detach())
            if theta <= 0:
                raise ConversionError(f"{name}: QCFS threshold must be positive, got {theta}")
            layers.append(IFNeuron(theta, v0))
            carry = theta
        elif isinstance(m, (nn.AvgPool2d, nn.Flatten)):
            layers.append(copy.deepcopy(m))
        elif isinstance(m, nn.MaxPool2d):
            raise ConversionError(
                f"{name}: max pooling of spikes does not pool rates (it passes any spike); "
                "use average pooling (nn.AvgPool2d) and retrain"
            )
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            raise ConversionError(
                f"{name}: BatchNorm must directly follow a conv or linear layer to be folded"
            )
        elif isinstance(m, nn.ReLU):
            raise ConversionError(
                f"{name}: ReLU needs data-based threshold balancing; replace it with QCFS and fine-tune"
            )
        else:
            raise ConversionError(f"{name}: no spiking equivalent for {type(m).__name__}")
        i += 1
    if not layers or not isinstance(layers[-1], (nn.Linear, nn.Conv2d, nn.Flatten, nn.AvgPool2d)):
        raise ConversionError("the last layer must be a non-spiking (accumulating) layer, e.g. nn.Linear")
    return SpikingNetwork(layers, input_shape).eval()
