"""A ``SpikingNetwork`` written as a NIR graph (``nir.NIRGraph``), with what NIR cannot say.

NIR describes neurons as continuous-time equations; streamsnn steps them. The export writes one
step as ``dt = 1`` (time unit: one step) under forward Euler, so:

- ``IFNeuron`` (``v ← v + x``) → ``nir.IF`` with ``r = 1``, ``v_threshold = θ``;
- ``LIFNeuron`` (``v ← decay·v + x``, hard reset to 0, fires at ``v > θ``) → ``nir.LIF`` with
  ``τ = dt/(1 − decay)``, ``r = τ/dt``, ``v_leak = 0``, ``v_reset = 0``: Euler's
  ``v ← v + dt/τ·(−v + r·x)`` is then the streamsnn step exactly;
- conv / linear layers (BatchNorm already folded by ``LoadedModel.snn``) → ``nir.Conv2d`` /
  ``nir.Affine`` (``nir.Linear`` without bias), flatten → ``nir.Flatten`` (no batch axis);
- average pooling → ``nir.SumPool2d`` with the 1/k² moved into the next conv or linear layer
  (``pooling="sum"``, exact when k² is a power of two, as for 2×2; readers such as Sinabs and
  Speck take only sum pooling), or ``nir.AvgPool2d`` (``pooling="avg"``);
- residual ``Fork``/``Merge`` → two edges into one node (NIR sums a node's inputs), the identity
  shortcut's scale → ``nir.Scale``;
- the last (accumulating) layer → its per-step output (``readout="per_step"``, graph metadata
  ``readout: sum``: the anytime output is its running sum) or, with ``readout="integrator"``,
  followed by ``nir.I`` (``v ← v + x``), the running sum inside the graph.

What NIR's equations cannot express is a ``LossyItem`` (node, what, why): the soft reset
(NIR's IF resets to ``v_reset``), the initial membrane V0 (NIR graphs have no initial state),
the tie rule (NIR fires at ``v > θ``, streamsnn's IF at ``v ≥ θ``), QFFS's negative spikes and
budget. ``write`` refuses a lossy export unless ``allow_lossy``; each neuron node also carries
the exact streamsnn semantics in its metadata (``streamsnn_*`` keys) for a reader that honours
them. What is exact only when the reader follows the graph's metadata (the per-step read-out) is
a note, not a lossy item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nir
import numpy as np
import torch
from torch import nn

from streamsnn.interop.semantics import EXACT, FORMAT
from streamsnn.snn.network import Fork, Merge, Scale, SpikingNetwork
from streamsnn.snn.neurons import IFNeuron, LIFNeuron, QFFSNeuron, SpikingNeuron

_RESETS = {
    "IFNeuron": "subtract θ (soft), V0 in node metadata",
    "QFFSNeuron": "subtract z·θ (signed spikes), V0 in node metadata",
    "LIFNeuron": "to 0 (hard)",
}
DT = 1.0
"""The export's time step in NIR time units: one streamsnn step."""

Pooling = Literal["sum", "avg"]
Readout = Literal["per_step", "integrator"]


class NIRExportError(ValueError):
    """A network or option that cannot be exported; the message names the layer or option."""


@dataclass(frozen=True)
class LossyItem:
    """Something of the network a NIR reader does not get exactly: at ``node``, ``what``
    differs and ``why``."""

    node: str
    what: str
    why: str

    def line(self) -> str:
        return f"{self.node}: {self.what} — {self.why}"


class LossyExportError(NIRExportError):
    """The export would be lossy and ``allow_lossy`` was not given; ``items`` says what."""

    def __init__(self, items: list[LossyItem], what: str = "the NIR export") -> None:
        self.items = items
        listed = "; ".join(item.line() for item in items)
        super().__init__(
            f"{what} is lossy ({len(items)} items; pass --lossy / allow_lossy=True to write it "
            f"anyway): {listed}"
        )


@dataclass
class NIRExport:
    """The graph and what it does not say exactly: ``lossy`` (NIR's equations differ from the
    network's) and ``notes`` (exact when the reader follows the graph's metadata)."""

    graph: nir.NIRGraph
    lossy: list[LossyItem] = field(default_factory=list)
    notes: list[LossyItem] = field(default_factory=list)
    output_node: str = "output"


def _array(t: torch.Tensor | float, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A float32 array of ``t`` (broadcast to ``shape`` when given)."""
    a = torch.as_tensor(t).detach().to(torch.float64).cpu().numpy()
    if shape is not None:
        a = np.broadcast_to(a, shape)
    return np.array(a, dtype=np.float32)


def _neuron_node(
    layer: SpikingNeuron, name: str, shape: tuple[int, ...], lossy: list[LossyItem]
) -> nir.NIRNode:
    theta = _array(layer.threshold, shape)
    v0 = _array(layer.v0 * layer.threshold, shape)
    meta: dict[str, Any] = {"streamsnn_neuron": type(layer).__name__, "streamsnn_v0": v0}
    if np.any(v0 != 0):
        lossy.append(
            LossyItem(
                name,
                f"initial membrane V0 = {float(layer.v0.flatten()[0]):g}·θ exported as 0",
                "a NIR graph has no initial state (kept in the node metadata streamsnn_v0)",
            )
        )
    if isinstance(layer, LIFNeuron):
        if not 0 <= layer.decay < 1:
            raise NIRExportError(f"{name}: LIF decay {layer.decay} is not in [0, 1): no NIR time constant")
        tau = DT / (1.0 - layer.decay)
        meta.update(EXACT["LIFNeuron"])
        ones = np.ones(shape, dtype=np.float32)
        return nir.LIF(
            tau=ones * np.float32(tau),
            r=ones * np.float32(tau / DT),
            v_leak=ones * 0,
            v_threshold=theta,
            v_reset=ones * 0,
            metadata=meta,
        )
    if not isinstance(layer, IFNeuron | QFFSNeuron):
        raise NIRExportError(f"{name}: no NIR node for {type(layer).__name__}")
    meta.update(EXACT[type(layer).__name__])
    lossy.append(
        LossyItem(
            name,
            "soft reset (v ← v − θ) exported as NIR's reset to v_reset = 0",
            "NIR's IF resets to v_reset; Sinabs and Speck read a plain IF as subtractive, others do not",
        )
    )
    lossy.append(
        LossyItem(
            name,
            "fires at v ≥ θ; NIR's IF fires at v > θ",
            "NIR's equations; differs only when a membrane lands exactly on θ",
        )
    )
    if isinstance(layer, QFFSNeuron):
        meta.update(streamsnn_z_max=layer.z_max)
        lossy.append(
            LossyItem(
                name,
                f"QFFS negative spikes and spike budget Z_max = {layer.z_max} dropped (exported as IF)",
                "NIR has no neuron with signed spikes or a spike budget",
            )
        )
    return nir.IF(
        r=np.ones(shape, dtype=np.float32),
        v_threshold=theta,
        v_reset=np.zeros(shape, np.float32),
        metadata=meta,
    )


def _pair(v: Any) -> np.ndarray:
    return np.array(v if isinstance(v, tuple | list) else (v, v), dtype=np.int64)


def _next_weighted(layers: list[nn.Module], i: int) -> nn.Module | None:
    """The conv or linear layer that directly takes layer ``i``'s output (through flatten only)."""
    for layer in layers[i + 1 :]:
        if isinstance(layer, nn.Conv2d | nn.Linear):
            return layer
        if not isinstance(layer, nn.Flatten):
            return None
    return None


def to_nir(
    net: SpikingNetwork,
    *,
    pooling: Pooling = "sum",
    readout: Readout = "per_step",
    metadata: dict[str, Any] | None = None,
) -> NIRExport:
    """``net`` as a NIR graph (float32 parameters) with its lossy items and notes.
    ``metadata``: extra graph metadata (source checkpoint, encoder, ...)."""
    if pooling not in ("sum", "avg"):
        raise NIRExportError(f"pooling: unknown '{pooling}'; use sum or avg")
    if readout not in ("per_step", "integrator"):
        raise NIRExportError(f"readout: unknown '{readout}'; use per_step or integrator")
    layers = list(net.layers)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(net.input_shape))}
    edges: list[tuple[str, str]] = []
    lossy: list[LossyItem] = []
    notes: list[LossyItem] = []
    current = ["input"]  # nodes whose outputs (summed) feed the next node
    saved: dict[str, list[str]] = {}
    shape = tuple(net.input_shape)
    pending = 1.0  # a factor moved from a sum pooling into the next weighted layer
    neuron_shapes = iter(net.neuron_shapes)
    x = torch.zeros(1, *net.input_shape, dtype=next(net.parameters()).dtype)
    trace: dict[str, torch.Tensor] = {}

    def add(name: str, node: nir.NIRNode, inputs: list[str]) -> None:
        nodes[name] = node
        edges.extend((src, name) for src in inputs)

    with torch.no_grad():
        for i, layer in enumerate(layers):
            kind = type(layer).__name__.lower()
            name = f"{i}_{kind}"
            if isinstance(layer, SpikingNeuron):
                add(name, _neuron_node(layer, name, next(neuron_shapes), lossy), current)
                current = [name]
                continue
            if isinstance(layer, Fork):
                saved[layer.name] = list(current)
                trace[layer.name] = x
                continue
            if isinstance(layer, Merge):
                short = layer.shortcut
                sname = f"{i}_shortcut"
                if isinstance(short, Scale):
                    factor = float(short.factor)
                    add(
                        sname,
                        nir.Scale(scale=np.full(tuple(trace[layer.name].shape[1:]), factor, np.float32)),
                        saved.pop(layer.name),
                    )
                elif isinstance(short, nn.Conv2d):
                    add(sname, _conv(short, tuple(trace[layer.name].shape[2:]), 1.0), saved.pop(layer.name))
                else:
                    raise NIRExportError(f"layer {i}: no NIR node for a {type(short).__name__} shortcut")
                x = x + short(trace.pop(layer.name))
                current = [*current, sname]
                continue
            if isinstance(layer, nn.Conv2d):
                add(name, _conv(layer, tuple(x.shape[2:]), pending), current)
            elif isinstance(layer, nn.Linear):
                w = _array(layer.weight.detach() * pending)
                if layer.bias is None:
                    add(name, nir.Linear(weight=w), current)
                else:
                    add(name, nir.Affine(weight=w, bias=_array(layer.bias)), current)
            elif isinstance(layer, nn.Flatten):
                if layer.start_dim != 1 or layer.end_dim != -1:
                    raise NIRExportError(f"layer {i}: only Flatten(start_dim=1, end_dim=-1) is exported")
                add(
                    name,
                    nir.Flatten(input_type={"input": np.array(x.shape[1:])}, start_dim=0, end_dim=-1),
                    current,
                )
            elif isinstance(layer, nn.AvgPool2d):
                k, s, p = (
                    _pair(layer.kernel_size),
                    _pair(layer.stride or layer.kernel_size),
                    _pair(layer.padding),
                )
                if layer.ceil_mode or layer.divisor_override or (np.any(p) and not layer.count_include_pad):
                    raise NIRExportError(
                        f"layer {i}: AvgPool2d with ceil_mode, divisor_override or count_include_pad=False"
                    )
                if pooling == "sum" and _next_weighted(layers, i) is not None:
                    add(f"{i}_sumpool2d", nir.SumPool2d(kernel_size=k, stride=s, padding=p), current)
                    name = f"{i}_sumpool2d"
                    factor = 1.0 / float(np.prod(k))
                    if not math.log2(float(np.prod(k))).is_integer():
                        notes.append(
                            LossyItem(
                                name,
                                f"1/{int(np.prod(k))} moved into the next layer's weights",
                                "rounds at float32 precision (k² is not a power of two)",
                            )
                        )
                    pending *= factor
                else:
                    add(name, nir.AvgPool2d(kernel_size=k, stride=s, padding=p), current)
                    if pooling == "sum":
                        notes.append(
                            LossyItem(
                                name, "kept as AvgPool2d", "no conv or linear layer follows to take 1/k²"
                            )
                        )
            else:
                raise NIRExportError(f"layer {i}: no NIR node for {type(layer).__name__}")
            current = [name]
            if isinstance(layer, nn.Conv2d | nn.Linear):
                pending = 1.0
            x = layer(x)
            shape = tuple(x.shape[1:])
    last = current[0]
    if readout == "integrator":
        add("readout", nir.I(r=np.ones(shape, dtype=np.float32)), current)
        current = ["readout"]
    else:
        notes.append(
            LossyItem(
                last,
                "the graph's output is the last layer's output per step",
                "streamsnn's anytime output is its running sum (graph metadata readout: sum); "
                "use readout=integrator for a nir.I that sums inside the graph",
            )
        )
    add("output", nir.Output(output_type=np.array(shape)), current)
    meta = {
        "format": FORMAT,
        "dt": DT,
        "time_unit": "one streamsnn step",
        "discretisation": "forward Euler, one step per dt",
        "readout": "sum" if readout == "per_step" else "integrated",
        "input_shape": np.array(net.input_shape, dtype=np.int64),
        "n_classes": net.n_classes,
        "pooling": pooling,
        "reset": ", ".join(
            sorted({f"{type(n).__name__}: {_RESETS.get(type(n).__name__, '?')}" for n in net.neurons})
        ),
        "lossy": "\n".join(item.line() for item in lossy) or "none",
        **(metadata or {}),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    return NIRExport(graph, lossy, notes)


def _conv(conv: nn.Conv2d, hw: tuple[int, ...], factor: float) -> nir.Conv2d:
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise NIRExportError(f"{conv}: only numeric zero padding is exported")
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    return nir.Conv2d(
        input_shape=hw,
        weight=_array(conv.weight.detach() * factor),
        stride=tuple(conv.stride),
        padding=tuple(conv.padding),
        dilation=tuple(conv.dilation),
        groups=conv.groups,
        bias=_array(bias),
    )


def write(export: NIRExport, path: Path | str, allow_lossy: bool = False) -> Path:
    """Write ``export`` as a NIR (HDF5) file; ``LossyExportError`` if it is lossy and
    ``allow_lossy`` is not set (nothing is written then)."""
    if export.lossy and not allow_lossy:
        source = export.graph.metadata.get("source")
        raise LossyExportError(export.lossy, f"the NIR export of {source}" if source else "the NIR export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(path, export.graph)
    return path
