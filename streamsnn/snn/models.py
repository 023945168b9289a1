"""Network definitions written in the project (torchvision does not run beside the CPU torch).

Models are built from an ``arch`` dictionary that is stored in every checkpoint, so a
checkpoint is rebuilt without code from the user.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from streamsnn.snn.neurons import LIFNeuron, SpikingNeuron
from streamsnn.snn.quant import QCFS
from streamsnn.snn.spec import build_layers


def activation_layer(name: str, levels: int, theta: float) -> nn.Module:
    """``qcfs`` (quantised, for QCFS/QFFS conversion) or ``relu`` (for data-based normalisation)."""
    if name == "qcfs":
        return QCFS(levels, theta)
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation '{name}'; use qcfs or relu")


def digits_cnn(
    in_channels: int = 2,
    size: int = 34,
    classes: int = 10,
    widths: tuple[int, ...] = (32, 64),
    levels: int = 4,
    theta: float = 1.0,
    activation: str = "qcfs",
) -> nn.Sequential:
    """Small CNN for the digits data: [conv3×3-BN-act-avgpool2] per width, then a linear
    classifier. Input C×size×size. ``activation``: ``qcfs`` (L levels, threshold θ) or ``relu``."""
    layers: list[nn.Module] = []
    c, s = in_channels, size
    for w in widths:
        layers += [
            nn.Conv2d(c, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            activation_layer(activation, levels, theta),
            nn.AvgPool2d(2),
        ]
        c, s = w, s // 2
    layers += [nn.Flatten(), nn.Linear(c * s * s, classes)]
    return nn.Sequential(*layers)


def vgg16(
    in_channels: int = 3,
    size: int = 32,
    classes: int = 10,
    levels: int = 4,
    theta: float = 8.0,
    activation: str = "qcfs",
    dropout: float = 0.0,
) -> nn.Sequential:
    """VGG-16 for conversion (as in the QCFS code): 13 conv3×3-BN-act layers with average pooling
    (max pooling does not convert), then 4096-4096-classes fully connected."""
    plan = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]
    layers: list[nn.Module] = []
    c, s = in_channels, size
    for item in plan:
        if item == "P":
            layers.append(nn.AvgPool2d(2))
            s //= 2
            continue
        w = int(item)
        layers += [
            nn.Conv2d(c, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            activation_layer(activation, levels, theta),
        ]
        c = w
    layers.append(nn.Flatten())
    features = c * s * s
    for width in (4096, 4096):
        layers += [nn.Linear(features, width), activation_layer(activation, levels, theta)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        features = width
    layers.append(nn.Linear(features, classes))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Basic residual block: conv3×3-BN-act-conv3×3-BN, plus the shortcut (identity, or
    conv1×1-BN when the shape changes), then act."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str, levels: int, theta: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = activation_layer(activation, levels, theta)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Sequential()
        )
        self.act2 = activation_layer(activation, levels, theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + self.shortcut(x))


RESNET_PLANS: dict[str, tuple[int, list[tuple[int, int]], int | None]] = {
    # stem width, (width, blocks) per stage, hidden FC width; the CIFAR variants of SEENN's
    # appendix table 6 (3×3 stem, no max pooling, global average pooling, one FC)
    "resnet8": (16, [(16, 1), (32, 1), (64, 1)], None),  # SEENN-II's policy network
    "resnet18": (64, [(64, 2), (128, 2), (256, 2), (512, 2)], None),
    "resnet19": (128, [(128, 3), (256, 3), (512, 2)], None),
    "resnet20": (16, [(16, 2), (32, 2), (64, 2)], None),
}


def resnet(
    plan: str,
    in_channels: int = 3,
    size: int = 32,
    classes: int = 10,
    levels: int = 4,
    theta: float = 8.0,
    activation: str = "qcfs",
) -> nn.Sequential:
    """A ResNet of ``RESNET_PLANS`` with basic residual blocks and global average pooling."""
    stem, stages, hidden = RESNET_PLANS[plan]
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
        nn.BatchNorm2d(stem),
        activation_layer(activation, levels, theta),
    ]
    c, s = stem, size
    for i, (width, blocks) in enumerate(stages):
        for b in range(blocks):
            stride = 2 if (i > 0 and b == 0) else 1
            layers.append(ResidualBlock(c, width, stride, activation, levels, theta))
            c, s = width, (s + stride - 1) // stride
    layers += [nn.AvgPool2d(s), nn.Flatten()]
    if hidden:
        layers += [nn.Linear(c, hidden), activation_layer(activation, levels, theta)]
        c = hidden
    layers.append(nn.Linear(c, classes))
    return nn.Sequential(*layers)


def vggsnn(
    in_channels: int = 2,
    size: int = 48,
    classes: int = 10,
    threshold: float = 1.0,
    decay: float = 0.5,
    gamma: float = 1.0,
) -> nn.Sequential:
    """VGGSNN of SEENN/TET for CIFAR10-DVS, trained directly as an SNN: 8 conv3×3-BN-LIF layers
    (64, 128 s2, 256, 256 s2, 512, 512 s2, 512, 512 s2) and Linear(512·3·3, classes) for 48×48
    input; LIF τ = 0.5, threshold 1, hard reset."""
    plan = [(64, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2), (512, 1), (512, 2)]
    layers: list[nn.Module] = []
    c, s = in_channels, size
    for width, stride in plan:
        layers += [
            nn.Conv2d(c, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            LIFNeuron(threshold, decay, v0=0.0, gamma=gamma),
        ]
        c, s = width, (s + stride - 1) // stride
    layers += [nn.Flatten(), nn.Linear(c * s * s, classes)]
    return nn.Sequential(*layers)


def spiking_network(layers: list[dict[str, Any]]) -> nn.Sequential:
    """A spiking network given layer by layer as plain data (``streamsnn.snn.spec``; e.g. a NIR
    graph imported by ``streamsnn.interop``), its tensors zero until the weights are loaded."""
    return nn.Sequential(*build_layers(layers))


ARCHITECTURES = {
    "digits_cnn": digits_cnn,
    "vgg16": vgg16,
    **{name: functools.partial(resnet, name) for name in RESNET_PLANS},
    "vggsnn": vggsnn,
    "spiking_network": spiking_network,
}


def is_spiking(model: nn.Module) -> bool:
    """True for networks built with spiking neurons (trained directly as SNNs)."""
    return any(isinstance(m, SpikingNeuron) for m in model.modules())


def build_model(arch: Mapping[str, Any]) -> nn.Sequential:
    """The ANN described by ``arch`` (``{"name": ..., **kwargs}``); ``ValueError`` names an
    unknown architecture or the argument it does not take."""
    if not isinstance(arch, Mapping):
        raise ValueError(
            f"expected a map of the architecture's name and arguments, got {type(arch).__name__}"
        )
    arch = dict(arch)
    name = arch.pop("name", None)
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    takes = inspect.signature(ARCHITECTURES[name]).parameters
    unknown = [str(k) for k in arch if k not in takes]
    if unknown:
        raise ValueError(f"{name} takes no argument {', '.join(unknown)} (it takes {', '.join(takes)})")
    try:
        if "widths" in arch:
            arch["widths"] = tuple(arch["widths"])
        return ARCHITECTURES[name](**arch)
    except (TypeError, ValueError, RuntimeError) as err:  # an argument of the wrong type or value
        raise ValueError(f"{name}: {err}") from None
