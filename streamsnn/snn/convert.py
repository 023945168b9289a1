"""ANN → SNN conversion: QCFS, QFFS and data-based normalisation.

Rules common to all methods: BatchNorm is folded into the conv or linear layer before it;
average pooling and flatten stay as they are (average pooling is a depthwise conv with 1/k²
weights); spikes are unit events, so each layer's threshold moves into the weights of the next
weighted layer; the last layer does not spike and only accumulates its output over time. The
arithmetic (folding, scaling) and the neurons' thresholds and V0 are in the network's dtype, so a
float64 conversion rounds at float64 precision only, never to float32.

- QCFS (Bu et al.): QCFS(L, θ) → IF with soft reset, threshold θ, V0 = θ/2.
- QFFS (Li et al.): QCFS(L, θ) → IF with negative spikes and budget Z_max = L (a b-bit LSQ
  activation ``s·round(clip(x/s, 0, 2^b − 1))`` is QCFS with L = 2^b − 1, θ = L·s).
- Data-based normalisation (Diehl et al., Rueckauer et al.): ReLU → IF with threshold λ, the
  maximum or 99.9th percentile of the layer's activations on calibration data.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from streamsnn.snn.models import ResidualBlock
from streamsnn.snn.network import Fork, Merge, Scale, SpikingNetwork
from streamsnn.snn.neurons import IFNeuron, QFFSNeuron, SpikingNeuron
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


METHODS = ("qcfs", "qffs", "data_norm")


def activation_thresholds(
    ann: nn.Sequential, calibration: torch.Tensor, percentile: float
) -> dict[int, float]:
    """λ per ReLU (by position in ``ann``): the ``percentile`` of its outputs on ``calibration``
    inputs (100 = the maximum; 99.9 is robust to outliers)."""
    acts: dict[int, list[torch.Tensor]] = {}
    hooks = []
    for i, m in enumerate(ann):
        if isinstance(m, nn.ReLU):
            hooks.append(
                m.register_forward_hook(lambda _m, _x, y, i=i: acts.setdefault(i, []).append(y.flatten()))
            )
    was_training = ann.training
    ann.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(calibration), 256):
                ann(calibration[start : start + 256])
    finally:
        for h in hooks:
            h.remove()
        ann.train(was_training)
    return {i: percentile_of(torch.cat(chunks).double(), percentile) for i, chunks in acts.items()}


def percentile_of(values: torch.Tensor, q: float) -> float:
    """The ``q``-th percentile of ``values`` (1-D) by NumPy's default (linear) rule, in torch:
    ``torch.quantile`` refuses inputs above 2^24 values, which a layer's activations exceed."""
    if q >= 100:
        return float(values.max())
    pos = q / 100 * (len(values) - 1)
    lo = int(pos)
    frac = pos - lo
    a = float(torch.kthvalue(values, lo + 1).values)
    b = float(torch.kthvalue(values, min(lo + 2, len(values))).values)
    # NumPy's lerp: from the nearer end, so the result never leaves [a, b]
    return a + (b - a) * frac if frac < 0.5 else b - (b - a) * (1 - frac)


def _qcfs_neuron(m: QCFS, method: str, v0: float, dtype: torch.dtype) -> SpikingNeuron:
    theta = float(m.threshold.detach())
    if method == "qffs":
        return QFFSNeuron(theta, v0, z_max=m.levels, dtype=dtype)
    return IFNeuron(theta, v0, dtype)


def _scaled(m: nn.Module, factor: float) -> nn.Module:
    with torch.no_grad():
        m.weight.mul_(factor)
    return m


def _residual(
    block: ResidualBlock, key: str, carry: float, method: str, v0: float, dtype: torch.dtype
) -> list[nn.Module]:
    """[Fork, conv1, IF, conv2, Merge(shortcut), IF] with BN folded and spike amplitudes moved
    into the weights (the identity shortcut becomes a scale by the incoming amplitude)."""
    theta1 = float(block.act1.threshold.detach())
    conv1 = _scaled(fold_batchnorm(block.conv1, block.bn1), carry)
    conv2 = _scaled(fold_batchnorm(block.conv2, block.bn2), theta1)
    if len(block.shortcut):
        shortcut: nn.Module = _scaled(fold_batchnorm(block.shortcut[0], block.shortcut[1]), carry)
    else:
        shortcut = Scale(carry, dtype)
    return [
        Fork(key),
        conv1,
        _qcfs_neuron(block.act1, method, v0, dtype),
        conv2,
        Merge(key, shortcut),
        _qcfs_neuron(block.act2, method, v0, dtype),
    ]


def convert(
    ann: nn.Sequential,
    input_shape: tuple[int, ...],
    method: str = "qcfs",
    v0: float = 0.5,
    calibration: torch.Tensor | None = None,
    percentile: float = 99.9,
    dtype: torch.dtype | None = None,
) -> SpikingNetwork:
    """Convert ``ann`` (``nn.Sequential``) into a ``SpikingNetwork`` for inputs of
    ``input_shape`` (C×H×W).

    ``method``: ``qcfs`` (QCFS → IF, soft reset), ``qffs`` (QCFS with L levels → IF with negative
    spikes and Z_max = L; L = 2^b − 1 for b-bit LSQ) or ``data_norm`` (ReLU → IF with threshold
    λ = the ``percentile`` of that layer's activations on ``calibration`` inputs; QCFS layers are
    converted as in ``qcfs``). ``v0``: initial membrane as a fraction of the threshold. ``dtype``:
    the network's (default: the ANN's); conversion computes in it.
    """
    if method not in METHODS:
        raise ConversionError(f"unknown conversion method '{method}'; use one of {', '.join(METHODS)}")
    ann, dtype = _in_dtype(ann, dtype)
    modules = [m for m in ann if not isinstance(m, (nn.Dropout, nn.Identity))]
    lambdas: dict[int, float] = {}
    if method == "data_norm":
        if calibration is None:
            raise ConversionError(
                "data_norm conversion needs calibration inputs (a few hundred training samples)"
            )
        lambdas = activation_thresholds(nn.Sequential(*modules), calibration.to(dtype), percentile)
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
            layers.append(_qcfs_neuron(m, method, v0, dtype))
            carry = float(m.threshold.detach())
        elif isinstance(m, ResidualBlock):
            if method == "data_norm" or not isinstance(m.act1, QCFS) or not isinstance(m.act2, QCFS):
                raise ConversionError(f"{name}: residual blocks convert with QCFS activations (qcfs, qffs)")
            layers += _residual(m, f"res{i}", carry, method, v0, dtype)
            carry = float(m.act2.threshold.detach())
        elif isinstance(m, nn.ReLU) and method == "data_norm":
            lam = lambdas.get(i, 0.0)
            if lam <= 0:
                raise ConversionError(f"{name}: no positive activation on the calibration data; cannot set λ")
            layers.append(IFNeuron(lam, v0, dtype))
            carry = lam
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
                f"{name}: ReLU needs data-based normalisation (method data_norm with calibration data), "
                "or replace it with QCFS and fine-tune"
            )
        else:
            raise ConversionError(f"{name}: no spiking equivalent for {type(m).__name__}")
        i += 1
    if not layers or isinstance(layers[-1], SpikingNeuron):
        raise ConversionError("the last layer must be a non-spiking (accumulating) layer, e.g. nn.Linear")
    return SpikingNetwork(layers, input_shape).eval()


def _in_dtype(model: nn.Sequential, dtype: torch.dtype | None) -> tuple[nn.Sequential, torch.dtype]:
    """``model`` in ``dtype`` (a copy when it differs; default: its own) and that dtype."""
    own = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if dtype is None or dtype == own:
        return model, own
    return copy.deepcopy(model).to(dtype), dtype


def fold_spiking(
    model: nn.Sequential, input_shape: tuple[int, ...], dtype: torch.dtype | None = None
) -> SpikingNetwork:
    """A directly trained spiking ``nn.Sequential`` (conv-BN-LIF ...) as a ``SpikingNetwork``
    for inference in ``dtype`` (default: the model's), each BatchNorm folded into the conv or
    linear layer before it."""
    model, _ = _in_dtype(model, dtype)
    modules, layers, i = list(model), [], 0
    while i < len(modules):
        m = modules[i]
        nxt = modules[i + 1] if i + 1 < len(modules) else None
        if isinstance(m, (nn.Conv2d, nn.Linear)) and isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
            layers.append(fold_batchnorm(m, nxt))
            i += 2
            continue
        layers.append(copy.deepcopy(m))
        i += 1
    return SpikingNetwork(layers, input_shape).eval()
