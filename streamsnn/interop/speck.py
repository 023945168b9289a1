"""Does a NIR export fit SynSense's Speck / DYNAP-CNN? The published constraints, per node.

The constraints and where they are stated (all in the Sinabs package, version 3.1.3, the vendor's
own DYNAP-CNN tool chain, which the venv installs; no chip is needed to check them):

- ``sinabs/validate_memory_speck.py`` (class ``ValidateMapping``): kernels at most 16×16, at most
  1024 output channels, strides 1, 2, 4 or 8, pooling 1×1, 2×2 or 4×4; kernel memory
  ``c_in · 2^(⌈log2 k_h·k_w⌉ + ⌈log2 c_out⌉)`` and neuron memory ``c_out · 2^(⌈log2 h⌉ +
  ⌈log2 w⌉)`` words per layer.
- ``sinabs/backend/dynapcnn/chips/dynapcnn.py`` (``get_constraints``): nine cores with kernel
  memory 16, 16, 16, 32, 32, 64, 64, 16, 16 Ki words, neuron memory 64, 64, 64, 32, 32, 16, 16,
  16, 16 Ki words and 1024 biases each; a layer needs a core of its own.
- ``sinabs/backend/dynapcnn/dynapcnn_layer.py``: a layer is conv (a linear layer becomes a conv
  over its whole input) → ``IAFSqueeze`` (integrate-and-fire only; reset to zero or by
  subtraction) → sum pooling; square kernels and square pooling.
- ``sinabs/backend/dynapcnn/discretize.py``: weights and biases 8 bit, membrane and thresholds
  16 bit, one scale per layer shared by weights, bias and threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import nir
import numpy as np

MAX_KERNEL = 16
MAX_CHANNELS = 1024
STRIDES = (1, 2, 4, 8)
POOLING = (1, 2, 4)
KERNEL_MEMORY = (16, 16, 16, 32, 32, 64, 64, 16, 16)  # Ki words per core
NEURON_MEMORY = (64, 64, 64, 32, 32, 16, 16, 16, 16)
BIAS_MEMORY = 1024
WEIGHT_BITS = 8
STATE_BITS = 16
CORES = ", ".join(f"{k}/{n}" for k, n in zip(KERNEL_MEMORY, NEURON_MEMORY, strict=True))


@dataclass(frozen=True)
class Finding:
    """One constraint at one node: a ``violation`` (does not fit) or a ``note`` (fits, with a
    cost worth knowing)."""

    node: str
    kind: str
    text: str

    def line(self) -> str:
        return f"{self.kind}: {self.node}: {self.text}"


def _log2_up(n: float) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


def _order(graph: nir.NIRGraph) -> list[str]:
    """The graph's nodes from input to output (edges followed breadth-first)."""
    order, seen, frontier = [], set(), [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    while frontier:
        name = frontier.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        frontier += [dst for src, dst in graph.edges if src == name]
    return order


def _int8_note(name: str, weight: np.ndarray, bias: np.ndarray | None, theta: float | None) -> Finding | None:
    """Sinabs' discretisation: one scale per layer such that weights and bias fit 8 bits and the
    threshold 16 bits; the note says how many non-zero weights then round to zero."""
    limits = [(2 ** (WEIGHT_BITS - 1) - 1) / float(np.abs(weight).max() or 1.0)]
    if bias is not None and np.abs(bias).max() > 0:
        limits.append((2 ** (WEIGHT_BITS - 1) - 1) / float(np.abs(bias).max()))
    if theta:
        limits.append((2 ** (STATE_BITS - 1) - 1) / abs(theta))
    scale = min(limits)
    nonzero = weight[weight != 0]
    zeroed = float(np.mean(np.round(nonzero * scale) == 0)) if nonzero.size else 0.0
    if zeroed == 0:
        return None
    return Finding(
        name, "note", f"int8 weights (scale {scale:.4g}): {zeroed:.1%} of the non-zero weights round to 0"
    )


def check_speck(graph: nir.NIRGraph) -> list[Finding]:
    """What of ``graph`` (a streamsnn NIR export or any chain of conv/linear → IF → pooling)
    would not fit Speck, per node; an empty list of violations means it maps."""
    found: list[Finding] = []
    layers: list[tuple[str, int, int]] = []  # (node, kernel memory, neuron memory) per chip layer
    order = _order(graph)
    nodes = graph.nodes
    flat_in: tuple[int, ...] | None = None
    weighted = [n for n in order if isinstance(nodes[n], nir.Conv2d | nir.Affine | nir.Linear)]
    for name in order:
        node = nodes[name]
        if isinstance(node, nir.Conv2d):
            c_out, c_in, kh, kw = node.weight.shape
            if kh != kw:
                found.append(Finding(name, "violation", f"kernel {kh}×{kw} is not square"))
            if max(kh, kw) > MAX_KERNEL:
                found.append(
                    Finding(name, "violation", f"kernel {kh}×{kw} exceeds {MAX_KERNEL}×{MAX_KERNEL}")
                )
            if c_out > MAX_CHANNELS:
                found.append(Finding(name, "violation", f"{c_out} output channels exceed {MAX_CHANNELS}"))
            stride = tuple(int(s) for s in np.atleast_1d(node.stride))
            if any(s not in STRIDES for s in stride):
                found.append(Finding(name, "violation", f"stride {stride}: Speck strides are 1, 2, 4 or 8"))
            if int(np.max(node.dilation)) != 1 or node.groups != 1:
                found.append(Finding(name, "violation", "dilation or groups: Speck convolves densely"))
            out = node.output_type["output"]
            h, w = (int(out[1]), int(out[2])) if out is not None else (1, 1)
            layers.append(
                (
                    name,
                    c_in * 2 ** (_log2_up(kh * kw) + _log2_up(c_out)),
                    c_out * 2 ** (_log2_up(h) + _log2_up(w)),
                )
            )
            bias = node.bias
        elif isinstance(node, nir.Affine | nir.Linear):
            c_out, features = node.weight.shape
            c_in, kh, kw = flat_in if flat_in and int(np.prod(flat_in)) == features else (features, 1, 1)
            if max(kh, kw) > MAX_KERNEL:
                found.append(
                    Finding(
                        name, "violation", f"as a conv over its {kh}×{kw} input, kernel exceeds {MAX_KERNEL}"
                    )
                )
            if c_out > MAX_CHANNELS:
                found.append(Finding(name, "violation", f"{c_out} outputs exceed {MAX_CHANNELS} channels"))
            layers.append((name, c_in * 2 ** (_log2_up(kh * kw) + _log2_up(c_out)), c_out))
            bias = getattr(node, "bias", None)
        elif isinstance(node, nir.Flatten):
            shape = node.input_type["input"]
            flat_in = tuple(int(s) for s in shape) if shape is not None and len(shape) == 3 else None
            continue
        elif isinstance(node, nir.SumPool2d | nir.AvgPool2d):
            k = tuple(int(s) for s in np.atleast_1d(node.kernel_size))
            if isinstance(node, nir.AvgPool2d):
                found.append(
                    Finding(
                        name, "violation", "average pooling: Speck pools by summing (export with pooling=sum)"
                    )
                )
            if len(set(k)) != 1 or k[0] not in POOLING:
                found.append(Finding(name, "violation", f"pooling {k}: Speck pools 1×1, 2×2 or 4×4"))
            if tuple(int(s) for s in np.atleast_1d(node.stride)) != k:
                found.append(Finding(name, "violation", "pooling stride differs from its kernel"))
            continue
        elif isinstance(node, nir.IF):
            kind = node.metadata.get("streamsnn_neuron", "IFNeuron")
            if str(kind) == "QFFSNeuron":
                found.append(
                    Finding(
                        name,
                        "violation",
                        "negative spikes and a spike budget (QFFS): Speck's IAF has neither",
                    )
                )
            continue
        elif isinstance(node, nir.LIF | nir.CubaLIF | nir.LI | nir.CubaLI | nir.I):
            found.append(
                Finding(
                    name,
                    "violation",
                    f"{type(node).__name__}: Speck's neurons integrate and fire without leak",
                )
            )
            continue
        elif isinstance(node, nir.Input | nir.Output):
            continue
        else:
            found.append(Finding(name, "violation", f"{type(node).__name__}: no Speck layer for this node"))
            continue
        if bias is not None and np.size(bias) > BIAS_MEMORY:
            found.append(Finding(name, "violation", f"{np.size(bias)} biases exceed {BIAS_MEMORY}"))
        theta = _next_threshold(graph, name)
        note = _int8_note(name, np.asarray(node.weight), None if bias is None else np.asarray(bias), theta)
        if note:
            found.append(note)
        if name == weighted[-1] and theta is None:
            found.append(
                Finding(
                    name, "note", "the accumulating read-out spikes on chip: count its output spikes instead"
                )
            )
    found += _map_cores(layers)
    return found


def _next_threshold(graph: nir.NIRGraph, name: str) -> float | None:
    after = [dst for src, dst in graph.edges if src == name]
    for dst in after:
        node = graph.nodes[dst]
        if hasattr(node, "v_threshold"):
            return float(np.max(np.abs(node.v_threshold)))
    return None


def _map_cores(layers: list[tuple[str, int, int]]) -> list[Finding]:
    """Each layer on a core of its own whose kernel and neuron memories hold it (a matching)."""
    found = []
    fits = {}
    for name, kernel, neuron in layers:
        cores = [
            c
            for c in range(len(KERNEL_MEMORY))
            if kernel <= KERNEL_MEMORY[c] * 1024 and neuron <= NEURON_MEMORY[c] * 1024
        ]
        if not cores:
            found.append(
                Finding(
                    name,
                    "violation",
                    f"kernel memory {kernel / 1024:g} Ki and neuron memory {neuron / 1024:g} Ki words "
                    f"fit no core (cores hold kernel/neuron {CORES} Ki)",
                )
            )
        fits[name] = cores
    if len(layers) > len(KERNEL_MEMORY):
        found.append(
            Finding(layers[-1][0], "violation", f"{len(layers)} layers on {len(KERNEL_MEMORY)} cores")
        )
    elif not found and not _matching([fits[n] for n, _, _ in layers], set()):
        found.append(
            Finding(layers[-1][0], "violation", "the layers fit cores one by one but not all at once")
        )
    return found


def _matching(options: list[list[int]], used: set[int]) -> bool:
    if not options:
        return True
    return any(_matching(options[1:], used | {c}) for c in options[0] if c not in used)
