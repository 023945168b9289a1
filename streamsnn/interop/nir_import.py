"""Read a NIR graph (the Neuromorphic Intermediate Representation, PyPI ``nir``) into a
``SpikingNetwork`` that the operator steps like any other model.

NIR describes neurons in continuous time; a streamsnn network steps in discrete time, so the
import takes its discretisation as options (``NirOptions``, a pipeline's ``model.nir``): the time
step ``dt``, the integration rule and the reset. Every neuron fires at ``v > v_threshold`` (NIR's
rule) and starts from a state of 0. Per step, with input current I (held over the step):

- ``euler`` (forward Euler, as snnTorch exports with dt = 1e-4): ``v ← v + dt/τ·(v_leak − v + R·I)``;
  IF: ``v ← v + dt·R·I``; CubaLIF/CubaLI first ``I ← I + dt/τ_syn·(w_in·x − I)``, then v with the
  new I. A dt above a time constant makes Euler unstable: refused.
- ``exponential`` (exact for an input held over the step, as Sinabs steps with dt = 1):
  ``v ← a·v + (1 − a)·(v_leak + R·I)`` with ``a = exp(−dt/τ)``; IF as with Euler. CubaLIF/CubaLI are
  refused (their coupled exact solution is not per-variable).
- reset ``value``: a spiking neuron's ``v ← v_reset`` (NIR's rule); ``subtract``: ``v ← v − v_threshold``
  (what Sinabs' IAF/LIF do, though its NIR export states no reset).

Exact semantics (``semantics: streamsnn``, the default): a neuron node that carries streamsnn's
``streamsnn_*`` metadata (written by ``streamsnn export``, ``streamsnn.interop.nir_export``) is built
as the neuron it was, not by NIR's equations: ``IFNeuron`` (soft reset, fires at ``v ≥ θ``, initial
membrane ``streamsnn_v0``), ``QFFSNeuron`` (also ``streamsnn_z_max``), ``LIFNeuron`` (NIR's LIF,
exact, checked); ``dt`` and the encoder then come from the graph's metadata when not given. Such
metadata that contradicts itself or the node is a ``NirImportError`` naming the node and the key.
``semantics: nir`` ignores it and reads the graph as any NIR reader does.

Mapped nodes: Input, Output, Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d (no padding),
SumPool2d, Scale, Threshold, IF, I, LIF, LI, CubaLIF, CubaLI, Delay of 0. Sums of two branches
become ``Fork``/``Merge`` when one branch is the identity or one stateless layer (a residual
block). Everything else (recurrent loops, other delays, subgraphs, other fan-outs, unknown node
types) is a ``NirImportError`` naming the node and, where one is at fault, the parameter: never an
approximation. The network's read-out is ``SpikingNetwork.readout``: spike counts of a spiking last
layer, the current membrane of a leaky-integrator last layer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from streamsnn.interop.semantics import EXACT, FORMAT_PREFIX
from streamsnn.options import Options
from streamsnn.snn.checkpoint import LoadedModel, save_checkpoint
from streamsnn.snn.models import build_model
from streamsnn.snn.network import Fork, Merge, Scale, Threshold
from streamsnn.snn.neurons import CurrentNeuron, IFNeuron, LeakyNeuron, QFFSNeuron, SpikingNeuron
from streamsnn.snn.spec import layer_specs

RULES = {
    "euler": "forward Euler: v ← v + dt/τ·(v_leak − v + R·I); IF v ← v + dt·R·I; a current first",
    "exponential": "exact for an input held over dt: v ← a·v + (1 − a)·(v_leak + R·I), a = exp(−dt/τ); "
    "IF v ← v + dt·R·I",
}
RESET_RULES = {"value": "v ← v_reset after a spike", "subtract": "v ← v − v_threshold after a spike"}


class NirImportError(ValueError):
    """A NIR file or graph that cannot be imported exactly; the message names the file, the node
    and, where one is at fault, the parameter."""


class NirOptions(Options):
    """How a NIR graph (continuous time) becomes a network that steps (discrete time)."""

    dt: PositiveFloat | None = Field(
        None,
        description="the time step in the graph's time unit (required, but for streamsnn's own exports: "
        "snnTorch exports with 1e-4, Sinabs with 1)",
    )
    integration: Literal["euler", "exponential"] = Field(
        "euler",
        description="euler: v += dt/τ·(v_leak − v + R·I) (snnTorch); exponential: exact for an input "
        "held over dt, decay exp(−dt/τ) (Sinabs)",
    )
    reset: Literal["value", "subtract"] = Field(
        "value",
        description="after a spike: value: v ← v_reset (NIR's rule); subtract: v ← v − v_threshold "
        "(Sinabs' IAF and LIF)",
    )
    input_shape: list[PositiveInt] | None = Field(
        None, description="C, H, W of one step when the graph's Input node gives no shape"
    )
    semantics: Literal["streamsnn", "nir"] = Field(
        "streamsnn",
        description="streamsnn: neuron nodes with streamsnn_* metadata (written by streamsnn export) "
        "step as the exported neurons did (soft reset, v ≥ θ, V0, QFFS), dt from the graph if not given; "
        "nir: NIR's equations only, as other readers",
    )


def discretisation(
    options: NirOptions, exact: dict[str, str] | None = None, neurons: int = 0
) -> dict[str, Any]:
    """The discretisation ``options`` choose, as stated in a checkpoint and a report; ``exact``:
    the nodes built as the exported streamsnn neurons (node → neuron), which follow their own rule,
    of ``neurons`` neuron layers in all."""
    out = {
        "from": "nir",
        "semantics": "streamsnn" if exact else "nir",
        "dt": options.dt,
        "integration": options.integration,
        "rule": RULES[options.integration],
        "reset": options.reset,
        "reset_rule": RESET_RULES[options.reset],
        "fires": "v > v_threshold",
        "initial_state": 0.0,
    }
    if exact:
        out["exact"] = exact
        out["nir_rule_neurons"] = max(neurons - len(exact), 0)
        out["exact_rule"] = (
            "the exporter's exact semantics (streamsnn_* node metadata): IF/QFFS v ← v + x, fire at "
            "v ≥ θ, v ← v − z·θ, start at streamsnn_v0; LIF as NIR's"
        )
    return out


def _graph_metadata(graph: Any, options: NirOptions, where: str) -> tuple[NirOptions, dict[str, Any]]:
    """``options`` with the graph's ``dt`` when it was written by ``streamsnn export`` and
    ``semantics`` is streamsnn and no dt was given; and the input spec the graph states
    (encoder, rate unit)."""
    meta = dict(getattr(graph, "metadata", None) or {})
    if options.semantics != "streamsnn" or not str(meta.get("format", "")).startswith(FORMAT_PREFIX):
        return options, {}
    spec = {k: meta[k] for k in ("encoder", "rate_unit_us") if meta.get(k) not in (None, "", 0, 0.0)}
    spec = {k: v.item() if isinstance(v, np.generic) else v for k, v in spec.items()}
    if options.dt is None and "dt" in meta:
        dt = np.asarray(meta["dt"], dtype=np.float64)
        if dt.size != 1 or not np.isfinite(dt).all() or float(dt.reshape(-1)[0]) <= 0:
            raise NirImportError(f"{where}: graph metadata 'dt': {meta['dt']!r} is not a positive time step")
        options = options.model_copy(update={"dt": float(dt.reshape(-1)[0])})
    return options, spec


def import_nir(source: str | Path | Any, options: NirOptions | None = None) -> LoadedModel:
    """A NIR file (``.nir``) or ``nir.NIRGraph`` as a loaded model: ``.snn()`` is the network,
    ``.input`` its input spec, ``.discretisation`` how it steps. ``NirImportError`` says what
    cannot be imported."""
    options = options or NirOptions()
    graph, path = _read(source)
    where = str(path)
    options, spec = _graph_metadata(graph, options, where)
    if options.dt is None:
        raise NirImportError(
            f"{where}: NIR is continuous-time: give the time step dt (model.nir.dt, --dt; snnTorch "
            "exports with dt = 1e-4, Sinabs with 1)"
        )
    reader = _Reader(graph, options, where)
    layers, shape = reader.layers()
    fixed = [k for k, v in reader.exact.items() if not v.startswith("LIF")]
    leaky = [k for k, v in reader.exact.items() if v.startswith("LIF")]
    for key, nodes in (("reset", fixed), ("integration", leaky if options.integration != "euler" else [])):
        if nodes and key in options.model_fields_set:
            raise NirImportError(
                f"{where}: model.nir.{key} / --{key} '{getattr(options, key)}': node '{nodes[0]}' carries "
                f"the exporter's exact semantics (streamsnn_* metadata), which fix its {key}; set "
                f"model.nir.semantics: nir (--semantics nir) to read the graph under NIR's rules with this "
                f"{key}"
            )
    ann = nn.Sequential(*layers).eval()
    return LoadedModel(
        ann,
        {"shape": list(shape), "from": "nir", **spec},
        {},
        path,
        {},
        discretisation(options, reader.exact, sum(isinstance(m, SpikingNeuron) for m in layers)),
    )


def convert_nir(
    source: str | Path | Any, output: str | Path, options: NirOptions | None = None
) -> LoadedModel:
    """``import_nir`` written as a streamsnn checkpoint at ``output`` (loaded safely like any
    other, with the discretisation stated in it); returns the imported model."""
    model = import_nir(source, options)
    if len(model.input_shape) != 3:
        raise NirImportError(
            f"{model.path}: input: shape {list(model.input_shape)}; a checkpoint's model takes C×H×W per "
            "step, as streamsnn's sources give (model.nir.input_shape / --input-shape if the graph's Input "
            "node has no shape)"
        )
    arch = {"name": "spiking_network", "layers": layer_specs(model.ann)}
    build_model(arch)  # the checkpoint rebuilds
    weights = copy.deepcopy(model.ann).float()  # a checkpoint's weights are float32
    save_checkpoint(
        Path(output), weights, arch, model.input, {}, {"nir": str(model.path)}, model.discretisation
    )
    return model


def _read(source: str | Path | Any) -> tuple[Any, Path]:
    import nir

    if isinstance(source, nir.NIRGraph):
        return copy.deepcopy(source), Path("<NIRGraph>")  # type inference writes into the graph
    if isinstance(source, nir.NIRNode):
        raise NirImportError(f"expected a NIR graph, got a single {type(source).__name__} node")
    path = Path(source)
    if not path.exists():
        raise NirImportError(f"NIR file not found: {path}")
    try:
        graph = nir.read(path)
    except OSError as err:  # not HDF5
        raise NirImportError(f"{path}: not a readable NIR file ({err})") from None
    except Exception as err:  # nir's own checks (they name the nodes), or a file laid out otherwise
        unknown = _unknown_node(path)
        if unknown:
            raise NirImportError(f"{path}: {unknown}") from None
        raise NirImportError(f"{path}: not a valid NIR graph ({type(err).__name__}: {err})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NirImportError(f"{path}: holds a single {type(graph).__name__} node, not a graph")
    return graph, path


def _unknown_node(path: Path) -> str | None:
    """The first node of the HDF5 file at ``path`` whose type NIR does not know, said in a
    sentence (None: none found, or not readable that far)."""
    import h5py
    import nir

    def find(group: Any, prefix: str) -> str | None:
        for name, node in group.items():
            kind = node["type"][()] if "type" in node else None
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind == "NIRGraph" and "nodes" in node:
                found = find(node["nodes"], f"{prefix}{name}.")
                if found:
                    return found
            elif not isinstance(getattr(nir, str(kind), None), type):
                return f"node '{prefix}{name}': unknown node type {kind!r}"
        return None

    try:
        with h5py.File(path, "r") as f:
            return find(f["node"]["nodes"], "")
    except Exception:  # not HDF5, or not laid out as NIR writes it
        return None


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value, np.float64)


def _tensor(value: Any) -> torch.Tensor:
    return torch.as_tensor(_array(value))


def _ints(value: Any, n: int) -> tuple[int, ...]:
    flat = [int(v) for v in np.atleast_1d(np.asarray(value))]
    return tuple(flat * n) if len(flat) == 1 else tuple(flat)


class _Reader:
    """One import: the graph checked, ordered and mapped node by node."""

    def __init__(self, graph: Any, options: NirOptions, where: str) -> None:
        self.graph, self.options, self.where = graph, options, where
        self.exact: dict[str, str] = {}  # node → the streamsnn neuron it was built as

    def fail(self, message: str) -> NirImportError:
        return NirImportError(f"{self.where}: {message}")

    # -- structure ------------------------------------------------------------------------
    def layers(self) -> tuple[list[nn.Module], tuple[int, ...]]:
        import nir

        nodes, edges = self.graph.nodes, [tuple(e) for e in self.graph.edges]
        for src, dst in edges:
            for end in (src, dst):
                if end not in nodes:
                    raise self.fail(f"edge {src} → {dst}: no node '{end}' in the graph")
        for name, node in nodes.items():
            if isinstance(node, nir.NIRGraph):
                raise self.fail(f"node '{name}': a subgraph (e.g. a recurrent layer); not supported")
            if type(node).__name__ not in _MAPPERS:
                raise self.fail(
                    f"node '{name}': node type {type(node).__name__} is not supported (supported: "
                    f"{', '.join(sorted(_MAPPERS))})"
                )
        inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
        outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise self.fail(
                f"expected one Input and one Output node, found inputs {inputs or 'none'} and outputs "
                f"{outputs or 'none'}"
            )
        self.succ: dict[str, list[str]] = {k: [] for k in nodes}
        self.pred: dict[str, list[str]] = {k: [] for k in nodes}
        for src, dst in edges:
            self.succ[src].append(dst)
            self.pred[dst].append(src)
        self._check_acyclic()
        self.input, self.output = inputs[0], outputs[0]
        self._infer_types()
        self._visited: set[str] = set()
        order, reached = self._walk(self.input)
        if reached is not None:
            raise self.fail(f"node '{reached}': sums inputs that do not come from one fork")
        missing = sorted(set(nodes) - set(self._visited))
        if missing:
            raise self.fail(f"node '{missing[0]}': not on the path from input '{self.input}' to output")
        layers = self._modules(order)
        shape = self._shape(self.input, "input")
        out_shape = self._shape(self.output, "input")
        if len(out_shape) != 1:
            raise self.fail(
                f"output '{self.output}': shape {list(out_shape)}; streamsnn reads a vector of K class "
                "outputs (end the graph with Flatten and Affine)"
            )
        return layers, shape

    def _check_acyclic(self) -> None:
        """A cycle is refused, naming its nodes (NIR needs a Delay on a loop; streamsnn steps no
        recurrent connection at all)."""
        import nir

        done: set[str] = set()
        path: list[str] = []

        def visit(n: str) -> None:
            path.append(n)
            for m in self.succ[n]:
                if m in path:
                    loop = [*path[path.index(m) :], m]
                    text = " → ".join(loop)
                    delays = [k for k in loop if isinstance(self.graph.nodes[k], nir.Delay)]
                    if delays:
                        raise self.fail(
                            f"node '{m}': recurrent loop {text} (through Delay '{delays[0]}'); recurrent "
                            "connections are not supported"
                        )
                    raise self.fail(f"node '{m}': cycle {text} without a Delay: the graph has no order")
                if m not in done:
                    visit(m)
            path.pop()
            done.add(n)

        for n in self.graph.nodes:
            if n not in done:
                visit(n)

    def _infer_types(self) -> None:
        import nir

        given = self.options.input_shape
        node = self.graph.nodes[self.input]
        if not _known(node.input_type):
            if given is None:
                raise self.fail(
                    f"input '{self.input}': the graph gives no shape; give it (model.nir.input_shape, "
                    "--input-shape)"
                )
            self.graph.nodes[self.input] = nir.Input(input_type=np.array(given))
        elif given is not None and list(self._shape(self.input, "input")) != list(given):
            raise self.fail(
                f"input '{self.input}': the graph's shape {list(self._shape(self.input, 'input'))} is not "
                f"model.nir.input_shape {list(given)}"
            )
        try:
            self.graph.infer_types()
        except Exception as err:  # nir raises ValueError, AssertionError, IndexError...
            raise self.fail(f"type inference (shapes) failed: {type(err).__name__}: {err}") from None
        for name, n in self.graph.nodes.items():
            if not _known(n.input_type) or not _known(n.output_type):
                raise self.fail(
                    f"node '{name}': no shape after type inference (an input shape: model.nir.input_shape)"
                )

    def _shape(self, name: str, port: str) -> tuple[int, ...]:
        node = self.graph.nodes[name]
        types = node.input_type if port == "input" else node.output_type
        return tuple(int(v) for v in np.asarray(next(iter(types.values()))).reshape(-1))

    def _walk(self, start: str) -> tuple[list[Any], str | None]:
        """Nodes from ``start`` in order, with ("fork", key) and ("merge", key, shortcut) items,
        until the output (None) or a node that sums this branch with another (returned)."""
        items: list[Any] = []
        n = start
        while True:
            self._visited.add(n)
            if n == self.output:
                return items, None
            if n != self.input:
                items.append(n)
            outs = self.succ[n]
            if not outs:
                raise self.fail(f"node '{n}': its output goes nowhere (no path to output '{self.output}')")
            if len(outs) == 1:
                if len(self.pred[outs[0]]) > 1:
                    return items, outs[0]
                n = outs[0]
                continue
            if len(outs) > 2:
                raise self.fail(
                    f"node '{n}': feeds {len(outs)} nodes ({', '.join(outs)}); streamsnn maps a fork into "
                    "two branches that sum again (a residual block)"
                )
            body, shortcut, join = self._residual(n, outs)
            items += [("fork", n), *body, ("merge", n, shortcut)]
            self._visited.update(x for x in [shortcut] if x is not None)
            if len(self.pred[join]) != 2:
                raise self.fail(f"node '{join}': sums {len(self.pred[join])} inputs; streamsnn adds two")
            n = join

    def _residual(self, fork: str, outs: list[str]) -> tuple[list[Any], str | None, str]:
        for long, short in ((outs[0], outs[1]), (outs[1], outs[0])):
            if len(self.pred[short]) > 1:
                shortcut, join = None, short  # an identity shortcut
            elif (
                len(self.succ[short]) == 1
                and len(self.pred[self.succ[short][0]]) > 1
                and type(self.graph.nodes[short]).__name__ in _STATELESS
            ):
                shortcut, join = short, self.succ[short][0]
            else:
                continue
            if long == join:
                continue
            body, reached = self._walk(long)
            if reached == join:
                return body, shortcut, join
        raise self.fail(
            f"node '{fork}': its branches {outs[0]} and {outs[1]} do not form a residual block (one branch "
            "the identity or a single stateless layer, summed with the other)"
        )

    # -- nodes ----------------------------------------------------------------------------
    def _modules(self, order: list[Any]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for item in order:
            if isinstance(item, tuple) and item[0] == "fork":
                layers.append(Fork(item[1]))
            elif isinstance(item, tuple):
                _, key, shortcut = item
                layers.append(Merge(key, nn.Identity() if shortcut is None else self._module(shortcut)))
            else:
                module = self._module(item)
                if module is not None:
                    layers.append(module)
        if not any(isinstance(m, SpikingNeuron) for m in layers):
            raise self.fail("the graph has no neuron node (IF, LIF, LI, CubaLIF...): nothing steps in time")
        return layers

    def _module(self, name: str) -> nn.Module | None:
        node = self.graph.nodes[name]
        return _MAPPERS[type(node).__name__](self, name, node)

    def param(self, name: str, node: Any, attr: str, shape: tuple[int, ...]) -> np.ndarray:
        """Parameter ``attr`` of ``node`` as float64, checked to fit the node's ``shape``."""
        value = _array(getattr(node, attr))
        try:
            return np.broadcast_to(value, shape).copy()
        except ValueError:
            raise self.fail(
                f"node '{name}' ({type(node).__name__}): {attr} has shape {list(value.shape)}, the node "
                f"{list(shape)}"
            ) from None

    def finite(self, name: str, node: Any, attr: str, value: np.ndarray, positive: bool = False) -> None:
        if not np.all(np.isfinite(value)) or (positive and np.any(value <= 0)):
            what = "positive and finite" if positive else "finite"
            raise self.fail(f"node '{name}' ({type(node).__name__}): {attr} must be {what}")

    def membrane(
        self, name: str, node: Any, tau_attr: str, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """decay, gain and leak of ``τ·dv/dt = (v_leak − v) + R·I`` over one step."""
        dt = self.options.dt
        tau = self.param(name, node, tau_attr, shape)
        self.finite(name, node, tau_attr, tau, positive=True)
        r, v_leak = self.param(name, node, "r", shape), self.param(name, node, "v_leak", shape)
        self.finite(name, node, "r", r)
        self.finite(name, node, "v_leak", v_leak)
        if self.options.integration == "euler":
            ratio = dt / tau
            if ratio.max() > 1:
                raise self.fail(
                    f"node '{name}' ({type(node).__name__}): {tau_attr} down to {tau.min():.4g} is below "
                    f"dt = {dt:g}: forward Euler is unstable there (a smaller dt, or integration: "
                    "exponential)"
                )
            return 1 - ratio, ratio * r, ratio * v_leak
        a = np.exp(-dt / tau)
        return a, (1 - a) * r, (1 - a) * v_leak

    def spiking(self, name: str, node: Any, shape: tuple[int, ...]) -> dict[str, Any]:
        threshold = self.param(name, node, "v_threshold", shape)
        self.finite(name, node, "v_threshold", threshold)
        v_reset = (
            self.param(name, node, "v_reset", shape) if getattr(node, "v_reset", None) is not None else 0
        )
        return {
            "threshold": torch.as_tensor(threshold),
            "v_reset": torch.as_tensor(np.asarray(v_reset, np.float64)),
            "reset": self.options.reset,
        }


def _known(types: Any) -> bool:
    return (
        isinstance(types, dict)
        and bool(types)
        and all(v is not None and np.size(v) > 0 for v in types.values())
    )


def _node_shape(reader: _Reader, name: str) -> tuple[int, ...]:
    return reader._shape(name, "input")


def _affine(reader: _Reader, name: str, node: Any) -> nn.Module:
    weight = _array(node.weight)
    if weight.ndim != 2:
        raise reader.fail(
            f"node '{name}' ({type(node).__name__}): weight has {weight.ndim} dimensions, not 2"
        )
    bias = getattr(node, "bias", None)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight))
        if bias is not None:
            layer.bias.copy_(_tensor(reader.param(name, node, "bias", (weight.shape[0],))))
    return layer


def _conv(reader: _Reader, name: str, node: Any) -> nn.Module:
    weight = _array(node.weight)
    dims = 1 if type(node).__name__ == "Conv1d" else 2
    if weight.ndim != dims + 2:
        raise reader.fail(
            f"node '{name}' ({type(node).__name__}): weight has {weight.ndim} dimensions, not {dims + 2}"
        )
    groups = int(np.asarray(node.groups))
    padding = node.padding if isinstance(node.padding, str) else _ints(node.padding, dims)
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    try:
        layer = conv(
            weight.shape[1] * groups,
            weight.shape[0],
            weight.shape[2:],
            _ints(node.stride, dims),
            padding,
            _ints(node.dilation, dims),
            groups,
            bias=True,
            dtype=torch.float64,
        )
    except (ValueError, RuntimeError) as err:
        raise reader.fail(f"node '{name}' ({type(node).__name__}): {err}") from None
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight))
        layer.bias.copy_(_tensor(reader.param(name, node, "bias", (weight.shape[0],))))
    return layer


def _pool(reader: _Reader, name: str, node: Any) -> nn.Module:
    padding = _ints(node.padding, 2)
    summed = type(node).__name__ == "SumPool2d"
    if not summed and any(padding):
        raise reader.fail(
            f"node '{name}' (AvgPool2d): padding {list(padding)}: NIR does not say whether padded zeros "
            "count in the average"
        )
    kernel = _ints(node.kernel_size, 2)
    return nn.AvgPool2d(kernel, _ints(node.stride, 2), padding, divisor_override=1 if summed else None)


def _flatten(reader: _Reader, name: str, node: Any) -> nn.Module:
    start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
    # NIR has no batch axis; streamsnn's layers have one in front
    return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)


def _scale(reader: _Reader, name: str, node: Any) -> nn.Module:
    shape = _node_shape(reader, name)
    return Scale(torch.as_tensor(reader.param(name, node, "scale", shape)), torch.float64)


def _threshold(reader: _Reader, name: str, node: Any) -> nn.Module:
    shape = _node_shape(reader, name)
    return Threshold(torch.as_tensor(reader.param(name, node, "threshold", shape)), torch.float64)


def _delay(reader: _Reader, name: str, node: Any) -> nn.Module | None:
    if np.any(_array(node.delay) != 0):
        raise reader.fail(
            f"node '{name}' (Delay): delay {np.unique(_array(node.delay))[:4].tolist()}: delays are not "
            "supported"
        )
    return nn.Identity()


def _streamsnn_neuron(reader: _Reader, name: str, node: Any) -> nn.Module | None:
    """The neuron a node's ``streamsnn_*`` metadata describes (``semantics: streamsnn``): an
    ``IFNeuron`` or ``QFFSNeuron``, or None for none (or a LIF, which NIR's LIF already is, once
    checked). ``NirImportError`` names the node and the key of metadata that does not fit."""
    meta = dict(getattr(node, "metadata", None) or {})
    keys = sorted(k for k in meta if k.startswith("streamsnn_"))
    if reader.options.semantics != "streamsnn" or not keys:
        return None
    kind = type(node).__name__

    def bad(key: str, text: str) -> NirImportError:
        return reader.fail(f"node '{name}' ({kind}): metadata {key}: {text} (semantics: nir ignores it)")

    neuron = meta.get("streamsnn_neuron")
    neuron = neuron.decode() if isinstance(neuron, bytes) else neuron
    if neuron not in EXACT:
        raise bad("streamsnn_neuron", f"{neuron!r} is not one of {', '.join(EXACT)}")
    want = "LIF" if neuron == "LIFNeuron" else "IF"
    if kind != want:
        raise bad("streamsnn_neuron", f"a {neuron} is written as a NIR {want} node, not {kind}")
    for key, expected in EXACT[neuron].items():
        value = meta.get(key)
        value = value.decode() if isinstance(value, bytes) else value
        if value != expected:
            raise bad(key, f"{value!r}; a {neuron} has {expected!r}")
    if "streamsnn_z_max" in meta and neuron != "QFFSNeuron":
        raise bad("streamsnn_z_max", f"a spike budget for a {neuron}, which has no negative spikes")
    shape = _node_shape(reader, name)
    theta = reader.param(name, node, "v_threshold", shape)
    if not np.all(np.isfinite(theta)) or np.any(theta <= 0):
        raise reader.fail(f"node '{name}' ({kind}): v_threshold must be positive and finite for a {neuron}")
    if "streamsnn_v0" not in meta:
        raise bad("streamsnn_v0", "missing (the initial membrane)")
    try:
        v0 = np.broadcast_to(_array(meta["streamsnn_v0"]), shape) / theta
    except ValueError:
        raise bad(
            "streamsnn_v0", f"shape {list(np.shape(meta['streamsnn_v0']))}, the node {list(shape)}"
        ) from None
    if not np.all(np.isfinite(v0)) or np.any(v0 < 0) or np.any(v0 > 1):
        raise bad("streamsnn_v0", f"V0/θ from {v0.min():.4g} to {v0.max():.4g}, not in [0, 1]")
    if neuron == "LIFNeuron":
        if np.any(v0 != 0):
            raise bad("streamsnn_v0", "a LIF's initial membrane other than 0 is not supported")
        reader.exact[name] = "LIFNeuron (NIR's LIF: reset to 0, fires at v > θ)"
        return None
    gain = reader.options.dt * reader.param(name, node, "r", shape)
    if np.any(gain != 1):
        raise reader.fail(
            f"node '{name}' ({kind}): a {neuron} steps v ← v + x, NIR's IF at dt·r = 1; here dt·r = "
            f"{gain.reshape(-1)[0]:g} (dt {reader.options.dt:g}): use the graph's dt, or semantics: nir"
        )
    threshold, fraction = (
        torch.as_tensor(a.reshape(-1)[0] if np.all(a == a.flat[0]) else a) for a in (theta, v0)
    )
    text = f"θ {_show(theta)}, V0 {_show(v0)}·θ"
    if neuron == "QFFSNeuron":
        z_max = np.asarray(meta.get("streamsnn_z_max", "missing"))
        try:
            z = float(z_max.item()) if z_max.size == 1 else -1.0
        except (TypeError, ValueError):
            z = -1.0
        if z < 1 or not z.is_integer():
            raise bad("streamsnn_z_max", f"{z_max.tolist()!r}; a QFFSNeuron takes a whole budget ≥ 1")
        z = int(z)
        reader.exact[name] = f"QFFSNeuron ({text}, Z_max {z})"
        return QFFSNeuron(threshold, fraction, z_max=z, dtype=torch.float64)
    reader.exact[name] = f"IFNeuron ({text})"
    return IFNeuron(threshold, fraction, dtype=torch.float64)


def _show(a: np.ndarray) -> str:
    return f"{a.flat[0]:.4g}" if np.all(a == a.flat[0]) else f"per neuron {a.min():.4g}..{a.max():.4g}"


def _if(reader: _Reader, name: str, node: Any) -> nn.Module:
    exact = _streamsnn_neuron(reader, name, node) if type(node).__name__ == "IF" else None
    if exact is not None:
        return exact
    shape = _node_shape(reader, name)
    r = reader.param(name, node, "r", shape)
    reader.finite(name, node, "r", r)
    fires = type(node).__name__ == "IF"
    kwargs = reader.spiking(name, node, shape) if fires else {}
    gain = torch.as_tensor(reader.options.dt * r)
    return LeakyNeuron(
        torch.ones(shape, dtype=torch.float64), gain, 0.0, fires=fires, dtype=torch.float64, **kwargs
    )


def _leaky(reader: _Reader, name: str, node: Any) -> nn.Module:
    if type(node).__name__ == "LIF":
        _streamsnn_neuron(reader, name, node)  # checked; NIR's LIF is what it says
    shape = _node_shape(reader, name)
    decay, gain, leak = (torch.as_tensor(v) for v in reader.membrane(name, node, "tau", shape))
    fires = type(node).__name__ == "LIF"
    kwargs = reader.spiking(name, node, shape) if fires else {}
    return LeakyNeuron(decay, gain, leak, fires=fires, dtype=torch.float64, **kwargs)


def _current(reader: _Reader, name: str, node: Any) -> nn.Module:
    shape = _node_shape(reader, name)
    if reader.options.integration != "euler":
        raise reader.fail(
            f"node '{name}' ({type(node).__name__}): integration '{reader.options.integration}' is exact for "
            "one variable, not for the coupled current and membrane; use integration: euler"
        )
    dt = reader.options.dt
    tau_syn = reader.param(name, node, "tau_syn", shape)
    reader.finite(name, node, "tau_syn", tau_syn, positive=True)
    if (dt / tau_syn).max() > 1:
        raise reader.fail(
            f"node '{name}' ({type(node).__name__}): tau_syn down to {tau_syn.min():.4g} is below "
            f"dt = {dt:g}: forward Euler is unstable there"
        )
    w_in = reader.param(name, node, "w_in", shape)
    decay, gain, leak = (torch.as_tensor(v) for v in reader.membrane(name, node, "tau_mem", shape))
    fires = type(node).__name__ == "CubaLIF"
    kwargs = reader.spiking(name, node, shape) if fires else {}
    syn_decay, syn_gain = torch.as_tensor(1 - dt / tau_syn), torch.as_tensor(dt / tau_syn * w_in)
    return CurrentNeuron(syn_decay, syn_gain, decay, gain, leak, fires=fires, dtype=torch.float64, **kwargs)


def _none(reader: _Reader, name: str, node: Any) -> None:
    return None


_MAPPERS: dict[str, Callable[[_Reader, str, Any], nn.Module | None]] = {
    "Input": _none,
    "Output": _none,
    "Affine": _affine,
    "Linear": _affine,
    "Conv1d": _conv,
    "Conv2d": _conv,
    "Flatten": _flatten,
    "AvgPool2d": _pool,
    "SumPool2d": _pool,
    "Scale": _scale,
    "Threshold": _threshold,
    "Delay": _delay,
    "IF": _if,
    "I": _if,
    "LIF": _leaky,
    "LI": _leaky,
    "CubaLIF": _current,
    "CubaLI": _current,
}
# what may be a residual block's shortcut: no state
_STATELESS = {
    "Affine",
    "Linear",
    "Conv1d",
    "Conv2d",
    "AvgPool2d",
    "SumPool2d",
    "Scale",
    "Threshold",
    "Flatten",
}
