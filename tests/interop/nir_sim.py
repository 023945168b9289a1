"""An independent simulation of a NIR graph's equations for the export tests (written from NIR's
documented node equations, not from the exporter): forward Euler at dt = 1, a node's inputs
summed, one step at a time.

``honour_metadata``: neurons follow the ``streamsnn_*`` metadata the exporter writes (initial
membrane, subtractive reset, firing at v ≥ θ) instead of NIR's (V0 = 0, reset to v_reset, v > θ).
"""

from __future__ import annotations

import nir
import numpy as np
import torch
import torch.nn.functional as F


def _order(graph: nir.NIRGraph) -> list[str]:
    inputs = {name: [s for s, d in graph.edges if d == name] for name in graph.nodes}
    order: list[str] = []
    while len(order) < len(graph.nodes):
        ready = [n for n in graph.nodes if n not in order and all(s in order for s in inputs[n])]
        assert ready, "a cycle"
        order += ready
    return order


def simulate(
    graph: nir.NIRGraph, xs: torch.Tensor, honour_metadata: bool = False, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Outputs per step (T×N×K, not summed) of ``graph`` on inputs T×N×C×H×W, in ``dtype``."""
    order = _order(graph)
    inputs = {name: [s for s, d in graph.edges if d == name] for name in graph.nodes}
    t64 = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    state: dict[str, torch.Tensor] = {}
    outs = []
    for t in range(xs.shape[0]):
        values: dict[str, torch.Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            x = xs[t].to(dtype) if isinstance(node, nir.Input) else sum(values[s] for s in inputs[name])
            if isinstance(node, nir.Input | nir.Output):
                y = x
            elif isinstance(node, nir.Conv2d):
                y = F.conv2d(
                    x, t64(node.weight), t64(node.bias), tuple(node.stride), tuple(node.padding),
                    tuple(node.dilation), node.groups,
                )  # fmt: skip
            elif isinstance(node, nir.Affine):
                y = x @ t64(node.weight).T + t64(node.bias)
            elif isinstance(node, nir.Linear):
                y = x @ t64(node.weight).T
            elif isinstance(node, nir.Scale):
                y = x * t64(node.scale)
            elif isinstance(node, nir.Flatten):
                y = x.flatten(1 + node.start_dim)
            elif isinstance(node, nir.SumPool2d):
                k = tuple(int(v) for v in node.kernel_size)
                y = F.avg_pool2d(x, k, tuple(int(v) for v in node.stride)) * float(np.prod(k))
            elif isinstance(node, nir.AvgPool2d):
                y = F.avg_pool2d(
                    x, tuple(int(v) for v in node.kernel_size), tuple(int(v) for v in node.stride)
                )
            elif isinstance(node, nir.I):
                state[name] = state.get(name, torch.zeros_like(x)) + t64(node.r) * x
                y = state[name]
            elif isinstance(node, nir.IF | nir.LIF):
                theta = t64(node.v_threshold)
                v0 = t64(node.metadata["streamsnn_v0"]) if honour_metadata else torch.zeros_like(theta)
                v = state.get(name, v0.expand_as(x).clone())
                if isinstance(node, nir.IF):
                    v = v + t64(node.r) * x
                else:  # τ dv/dt = (v_leak − v) + R I, one Euler step of dt = 1
                    tau = t64(node.tau)
                    v = v + (t64(node.v_leak) - v + t64(node.r) * x) / tau
                fires_ge = (
                    honour_metadata and str(node.metadata.get("streamsnn_fires_at")) == "v >= threshold"
                )
                z = (v >= theta if fires_ge else v > theta).to(dtype)
                subtract = honour_metadata and str(node.metadata.get("streamsnn_reset")) == "subtract"
                state[name] = v - z * theta if subtract else torch.where(z > 0, t64(node.v_reset), v)
                y = z
            else:
                raise AssertionError(f"the test simulation has no {type(node).__name__}")
            values[name] = y
        outs.append(values[next(n for n, v in graph.nodes.items() if isinstance(v, nir.Output))])
    return torch.stack(outs)
