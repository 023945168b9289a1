"""Network definitions written in the project (torchvision does not run beside the CPU torch).

Models are built from an ``arch`` dictionary that is stored in every checkpoint, so a
checkpoint is rebuilt without code from the user.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from streamsnn.snn.quant import QCFS


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


ARCHITECTURES = {"digits_cnn": digits_cnn}


def build_model(arch: dict[str, Any]) -> nn.Sequential:
    """The ANN described by ``arch`` (``{"name": ..., **kwargs}``)."""
    arch = dict(arch)
    name = arch.pop("name", None)
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture '{name}'; known: {', '.join(ARCHITECTURES)}")
    for key in ("widths",):
        if key in arch:
            arch[key] = tuple(arch[key])
    return ARCHITECTURES[name](**arch)
