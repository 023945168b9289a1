"""A ``SpikingNetwork``'s layers as plain data, so a checkpoint rebuilds them without code.

``layer_specs`` describes every layer as a map of its kind and constructor arguments (tensors
only by their shape: their values travel in the checkpoint's ``state_dict``); ``build_layers``
makes the layers back, with every tensor zero until the state dict is loaded. Kinds: conv1d,
conv2d, linear, avgpool2d (``divisor`` 1: sum pooling), flatten, scale, threshold, fork, merge
(with its shortcut's spec), leaky and current (the NIR neurons of ``streamsnn.snn.neurons``), if
and qffs (``IFNeuron``, ``QFFSNeuron``: a NIR export of streamsnn's read back exactly).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from streamsnn.snn.network import Fork, Merge, Scale, Threshold
from streamsnn.snn.neurons import CurrentNeuron, IFNeuron, LeakyNeuron, QFFSNeuron

_NEURON_TENSORS = ("decay", "gain", "leak", "threshold", "v_reset")


def _shape(t: torch.Tensor) -> list[int]:
    return [int(n) for n in t.shape]


def layer_spec(layer: nn.Module) -> dict[str, Any]:
    """The plain-data description of one layer; ``ValueError`` for a layer it cannot describe."""
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        return {
            "kind": "conv1d" if isinstance(layer, nn.Conv1d) else "conv2d",
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "kernel_size": list(layer.kernel_size),
            "stride": list(layer.stride),
            "padding": list(layer.padding),
            "dilation": list(layer.dilation),
            "groups": layer.groups,
            "bias": layer.bias is not None,
        }
    if isinstance(layer, nn.Linear):
        return {
            "kind": "linear",
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "bias": layer.bias is not None,
        }
    if isinstance(layer, nn.AvgPool2d):
        return {
            "kind": "avgpool2d",
            "kernel_size": list(nn.modules.utils._pair(layer.kernel_size)),
            "stride": list(nn.modules.utils._pair(layer.stride)),
            "padding": list(nn.modules.utils._pair(layer.padding)),
            "divisor": layer.divisor_override,
        }
    if isinstance(layer, nn.Flatten):
        return {"kind": "flatten", "start_dim": layer.start_dim, "end_dim": layer.end_dim}
    if isinstance(layer, Scale):
        return {"kind": "scale", "shape": _shape(layer.factor)}
    if isinstance(layer, Threshold):
        return {"kind": "threshold", "shape": _shape(layer.threshold)}
    if isinstance(layer, Fork):
        return {"kind": "fork", "name": layer.name}
    if isinstance(layer, Merge):
        return {"kind": "merge", "name": layer.name, "shortcut": layer_spec(layer.shortcut)}
    if isinstance(layer, nn.Identity):
        return {"kind": "identity"}
    if isinstance(layer, LeakyNeuron):
        spec = {
            "kind": "current" if isinstance(layer, CurrentNeuron) else "leaky",
            "reset": layer.reset,
            "fires": layer.spiking,
            "shapes": {name: _shape(getattr(layer, name)) for name in _NEURON_TENSORS},
        }
        if isinstance(layer, CurrentNeuron):
            spec["shapes"].update({name: _shape(getattr(layer, name)) for name in ("syn_decay", "syn_gain")})
        return spec
    if isinstance(layer, IFNeuron | QFFSNeuron):
        spec = {
            "kind": "qffs" if isinstance(layer, QFFSNeuron) else "if",
            "shapes": {"threshold": _shape(layer.threshold), "v0": _shape(layer.v0)},
        }
        return {**spec, "z_max": layer.z_max} if isinstance(layer, QFFSNeuron) else spec
    raise ValueError(f"no plain-data description of layer {type(layer).__name__}")


def layer_specs(layers: list[nn.Module] | nn.Module) -> list[dict[str, Any]]:
    """``layer_spec`` of every layer."""
    return [layer_spec(layer) for layer in layers]


def build_layer(spec: Mapping[str, Any]) -> nn.Module:
    """The layer ``spec`` describes, its tensors zero; ``ValueError`` names what is wrong."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a layer must be a map with its kind, got {type(spec).__name__}")
    args = dict(spec)
    kind = args.pop("kind", None)
    try:
        if kind in ("conv1d", "conv2d"):
            conv = nn.Conv1d if kind == "conv1d" else nn.Conv2d
            return conv(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
        if kind == "linear":
            return nn.Linear(**args)
        if kind == "avgpool2d":
            divisor = args.pop("divisor")
            return nn.AvgPool2d(**{k: tuple(v) for k, v in args.items()}, divisor_override=divisor)
        if kind == "flatten":
            return nn.Flatten(**args)
        if kind == "scale":
            return Scale(torch.zeros(args["shape"]))
        if kind == "threshold":
            return Threshold(torch.zeros(args["shape"]))
        if kind == "fork":
            return Fork(args["name"])
        if kind == "merge":
            return Merge(args["name"], build_layer(args["shortcut"]))
        if kind == "identity":
            return nn.Identity()
        if kind in ("leaky", "current"):
            tensors = {name: torch.zeros(shape) for name, shape in args["shapes"].items()}
            neuron = CurrentNeuron if kind == "current" else LeakyNeuron
            return neuron(**tensors, reset=args["reset"], fires=args["fires"])
        if kind in ("if", "qffs"):
            tensors = {name: torch.zeros(shape) for name, shape in args["shapes"].items()}
            return QFFSNeuron(**tensors, z_max=args["z_max"]) if kind == "qffs" else IFNeuron(**tensors)
    except (TypeError, KeyError, ValueError) as err:
        raise ValueError(f"layer {kind}: {type(err).__name__}: {err}") from None
    raise ValueError(f"unknown layer kind {kind!r}")


def build_layers(specs: list[Mapping[str, Any]]) -> list[nn.Module]:
    """The layers of ``specs`` (``build_layer``), naming the position of a wrong one."""
    if not isinstance(specs, list) or not specs:
        raise ValueError("layers: expected a non-empty list of layer maps")
    layers = []
    for i, spec in enumerate(specs):
        try:
            layers.append(build_layer(spec))
        except ValueError as err:
            raise ValueError(f"layers[{i}]: {err}") from None
    return layers
