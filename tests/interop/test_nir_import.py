"""NIR import: graphs written by snnTorch and Sinabs into real .nir files, read back and stepped
next to the exporter's own model on the same input; pipelines, convert, calibrate and evaluate
with a .nir model; malformed and unsupported graphs refused, naming the node."""

import itertools
import json
import math
import re

import h5py
import nir
import numpy as np
import pytest
import sinabs.layers as sinabs_layers  # installed by `make setup` (the Makefile says why without its pins)
import snntorch
import torch
import yaml
from sinabs.activation import SingleSpike
from sinabs.nir import to_nir
from snntorch import utils as snntorch_utils
from snntorch.export_nir import export_to_nir

from streamsnn.cli import main
from streamsnn.interop.nir_import import NirImportError, NirOptions, convert_nir, import_nir
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.neurons import LeakyNeuron

TOL = 1e-5  # the acceptance bound on any per-step difference (float32)


def leaky(shape, beta, **kwargs):
    """An snnTorch Leaky with per-neuron β and threshold (its NIR export needs the layer's shape)
    and reset to zero, which is what the export states (v_reset = 0)."""
    return snntorch.Leaky(
        beta=torch.full(shape, beta),
        threshold=torch.full(shape, 0.5),
        init_hidden=True,
        reset_mechanism="zero",
        **kwargs,
    )


def snntorch_net(size=8):
    torch.manual_seed(0)
    half = size // 2
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        leaky((4, size, size), 0.9),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * half * half, 10),
        leaky((10,), 0.8, output=True),
    )


def write_snntorch(net, path, size=8):
    graph = export_to_nir(net, torch.randn(1, 2, size, size), ignore_dims=[0])
    nir.write(path, graph)
    return path


def test_an_snntorch_network_steps_as_snntorch_does(tmp_path):
    """Conv + LIF + AvgPool + Linear + LIF from snnTorch's exporter, imported with its dt (1e-4,
    forward Euler, reset to v_reset): every step's output spikes are equal and both layers'
    membranes (snnTorch's after its reset) within 1e-5."""
    net = snntorch_net()
    path = write_snntorch(net, tmp_path / "snntorch.nir")
    imported = import_nir(path, NirOptions(dt=1e-4))
    assert imported.discretisation["dt"] == 1e-4 and imported.discretisation["reset"] == "value"
    ours = imported.snn()
    assert ours.readout == "sum"  # the output layer spikes: spike counts
    g = torch.Generator().manual_seed(1)
    xs = torch.rand(25, 3, 2, 8, 8, generator=g) * 2
    state = ours.init_state(3)
    snntorch_utils.reset(net)
    hidden, counts, worst = net[1], torch.zeros(3, 10), 0.0
    with torch.no_grad():
        for t in range(25):
            spikes, mem = net(xs[t])
            per_layer = ours.step_(xs[t], state)
            counts += spikes
            assert torch.equal(state.out, counts), t  # the read-out: the output spikes so far
            for theirs, layer in ((hidden.mem, state.layers[0]), (mem, state.layers[1])):
                after_reset = torch.where(
                    theirs > 0.5, torch.zeros(()), theirs
                )  # snnTorch resets a step later
                worst = max(worst, float((layer.v - after_reset).abs().max()))
            assert per_layer.sum() > 0 or t == 0
    assert worst <= TOL, worst
    assert 0 < counts.sum() < 25 * 30  # the output layer spikes, and not at every step
    # the discretisation matters: another rule gives other membranes
    other = import_nir(path, NirOptions(dt=1e-4, integration="exponential")).snn()
    other_state = other.init_state(3)
    other.run_(xs, other_state)
    assert float((other_state.layers[0].v - state.layers[0].v).abs().max()) > 1e-3


def spiking(layer):
    return isinstance(layer, LeakyNeuron) and layer.spiking


def test_snntorch_synaptic_layers_integrate_their_current_as_snntorch_does(tmp_path):
    """snnTorch's Synaptic exports as CubaLIF; with forward Euler at its dt the current and the
    membrane of both layers follow snnTorch's within 1e-5 at every step. (Its thresholds are out of
    reach here: Synaptic's reset zeroes the membrane a step late, after that step's input, which
    NIR's rule does not say; README.)"""
    torch.manual_seed(0)

    def synaptic(shape, **kwargs):
        alpha, beta = torch.full(shape, 0.7), torch.full(shape, 0.9)
        return snntorch.Synaptic(
            alpha=alpha, beta=beta, threshold=torch.full(shape, 1e9), init_hidden=True, **kwargs
        )

    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(2 * 4 * 4, 12),
        synaptic((12,)),
        torch.nn.Linear(12, 5),
        synaptic((5,), output=True),
    )
    path = tmp_path / "synaptic.nir"
    nir.write(path, export_to_nir(net, torch.randn(1, 2, 4, 4), ignore_dims=[0]))
    ours = import_nir(path, NirOptions(dt=1e-4)).snn()
    assert [type(n).__name__ for n in ours.neurons] == ["CurrentNeuron", "CurrentNeuron"]
    xs = torch.rand(20, 3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    snntorch_utils.reset(net)
    state, worst = ours.init_state(3), 0.0
    with torch.no_grad():
        for t in range(20):
            _, syn, mem = net(xs[t])
            ours.step_(xs[t], state)
            pairs = ((state.layers[0], net[2].syn, net[2].mem), (state.layers[1], syn, mem))
            for layer, their_i, their_v in pairs:
                worst = max(
                    worst, float((layer.i - their_i).abs().max()), float((layer.v - their_v).abs().max())
                )
    assert worst <= TOL, worst
    assert float(mem.abs().max()) > 1  # the dynamics ran


class SinabsNet(torch.nn.Module):
    """IAF → SumPool → LIF → Linear → ExpLeak (all Sinabs layers; single spikes, subtractive
    reset, the leaky integrator with its input normalised as NIR's LI with r = 1 says)."""

    def __init__(self, batch):
        super().__init__()
        torch.manual_seed(0)
        self.seq = torch.nn.Sequential(
            torch.nn.Conv2d(2, 4, 3, padding=1),
            sinabs_layers.IAFSqueeze(spike_fn=SingleSpike, batch_size=batch),
            sinabs_layers.SumPool2d(2),
            torch.nn.Conv2d(4, 4, 3, padding=1),
            sinabs_layers.LIFSqueeze(
                tau_mem=torch.full((4, 4, 4), 5.0),
                spike_threshold=torch.full((4, 4, 4), 0.1),
                spike_fn=SingleSpike,
                batch_size=batch,
            ),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 4 * 4, 10),
            sinabs_layers.ExpLeakSqueeze(tau_mem=torch.full((10,), 4.0), norm_input=True, batch_size=batch),
        )

    def forward(self, x):
        return self.seq(x)


def test_a_sinabs_network_steps_as_sinabs_does(tmp_path):
    """Sinabs' exporter (IF, LIF, LI, SumPool2d), imported with dt = 1, exponential integration and
    subtractive reset: every step's spikes of both spiking layers are equal and the LI read-out (its
    current membrane) is within 1e-5 of Sinabs' output."""
    b, t_n = 3, 25
    net = SinabsNet(b)
    graph = to_nir(net, torch.randn(b, 2, 8, 8))
    graph.infer_types()  # Sinabs writes conv nodes without shapes, which nir.write needs
    path = tmp_path / "sinabs.nir"
    nir.write(path, graph)
    options = NirOptions(dt=1, integration="exponential", reset="subtract")
    ours = import_nir(path, options).snn()
    assert ours.readout == "current"
    xs = torch.rand(b, t_n, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    theirs_spikes = {}
    hooks = [
        layer.register_forward_hook(
            lambda m, i, o, k=k: theirs_spikes.__setitem__(k, o.unflatten(0, (b, t_n)))
        )
        for k, layer in enumerate(net.seq)
        if k in (1, 4)
    ]
    for layer in net.seq:  # the export stepped the model once
        if hasattr(layer, "reset_states"):
            layer.reset_states()
    with torch.no_grad():
        theirs = net(xs.flatten(0, 1)).unflatten(0, (b, t_n)).transpose(0, 1)  # T×B×10
    for h in hooks:
        h.remove()
    ours_spikes = []
    state = ours.init_state(b)
    worst = 0.0
    for t in range(t_n):
        seen = []
        ours.step_(xs[:, t], state, lambda layer, x, z, seen=seen: spiking(layer) and seen.append(z.clone()))
        ours_spikes.append(seen)
        worst = max(worst, float((state.out - theirs[t]).abs().max()))
    for k, sinabs_k in enumerate((1, 4)):  # Sinabs' IAF and LIF; ours in the same order
        ours_t = torch.stack([steps[k] for steps in ours_spikes], 1)  # B×T×…
        assert torch.equal(ours_t, theirs_spikes[sinabs_k]), sinabs_k
        assert 0 < float(ours_t.sum()) < ours_t.numel()
    assert worst <= TOL, worst
    # Sinabs subtracts; NIR's own reset (to v_reset = 0) gives other outputs
    other = import_nir(path, NirOptions(dt=1, integration="exponential")).snn()
    outs, _ = other.run_(xs.transpose(0, 1), other.init_state(b))
    assert float((outs - theirs).abs().max()) > 1e-3


class Residual(torch.nn.Module):
    """Two residual blocks of Sinabs IAF layers: an identity shortcut, then a conv shortcut."""

    def __init__(self, batch):
        super().__init__()
        torch.manual_seed(4)
        conv = lambda: torch.nn.Conv2d(4, 4, 3, padding=1)  # noqa: E731
        iaf = lambda: sinabs_layers.IAFSqueeze(spike_fn=SingleSpike, batch_size=batch)  # noqa: E731
        self.c0, self.n0 = torch.nn.Conv2d(2, 4, 3, padding=1), iaf()
        self.c1, self.n1, self.c2, self.n2 = conv(), iaf(), conv(), iaf()
        self.c3, self.n3, self.c4, self.short, self.n4 = conv(), iaf(), conv(), conv(), iaf()
        self.fc = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        a = self.n0(self.c0(x))
        b = self.n2(self.c2(self.n1(self.c1(a))) + a)
        c = self.n4(self.c4(self.n3(self.c3(b))) + self.short(b))
        return self.fc(c.flatten(1))

    def graph(self):
        """The NIR graph of ``forward`` (nirtorch's tracer drops the sums), written node by node."""

        def conv(m):
            w = m.weight.detach().numpy()
            return nir.Conv2d(None, w, 1, 1, 1, 1, m.bias.detach().numpy())

        def iaf():
            return nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.ones((4, 8, 8)))

        nodes = {"input": nir.Input(np.array([2, 8, 8])), "output": nir.Output(np.array([10]))}
        nodes.update({k: conv(getattr(self, k)) for k in ("c0", "c1", "c2", "c3", "c4", "short")})
        nodes.update({k: iaf() for k in ("n0", "n1", "n2", "n3", "n4")})
        nodes["flat"] = nir.Flatten(np.array([4, 8, 8]), 0, -1)
        nodes["fc"] = nir.Affine(self.fc.weight.detach().numpy(), self.fc.bias.detach().numpy())
        chain = ["input", "c0", "n0", "c1", "n1", "c2", "n2", "c3", "n3", "c4", "n4", "flat", "fc", "output"]
        edges = [*itertools.pairwise(chain), ("n0", "n2"), ("n2", "short"), ("short", "n4")]
        return nir.NIRGraph(nodes, edges)


def test_residual_sums_map_onto_fork_and_merge(tmp_path):
    """A graph whose nodes sum two branches (an identity and a conv shortcut) steps as the Sinabs
    module it was written from (accumulated linear read-out within 1e-5 at every step)."""
    b, t_n = 2, 20
    net = Residual(b)
    path = tmp_path / "residual.nir"
    nir.write(path, net.graph())
    ours = import_nir(path, NirOptions(dt=1, reset="subtract")).snn()
    kinds = [type(m).__name__ for m in ours.layers]
    assert kinds.count("Fork") == 2 and kinds.count("Merge") == 2
    xs = torch.rand(b, t_n, 2, 8, 8, generator=torch.Generator().manual_seed(2)) * 2
    with torch.no_grad():
        theirs = net(xs.flatten(0, 1)).unflatten(0, (b, t_n)).transpose(0, 1).cumsum(0)
    outs, spikes = ours.run_(xs.transpose(0, 1), ours.init_state(b))
    assert float((outs - theirs).abs().max()) <= TOL and spikes.sum() > 0


def test_conv1d_and_lif_with_leak_resistance_and_reset_value_follow_nirs_equations(tmp_path):
    """A graph written here (Conv1d → LIF with v_leak, R and v_reset per neuron → Flatten → Affine →
    LI) against NIR's equations stepped in the test by forward Euler and by the exact rule."""
    g = torch.Generator().manual_seed(5)
    w, bias = (
        torch.randn(3, 2, 3, generator=g, dtype=torch.float64),
        torch.randn(3, generator=g, dtype=torch.float64),
    )
    shape = (3, 10)
    tau, r = (
        0.01 + 0.02 * torch.rand(shape, generator=g, dtype=torch.float64),
        1 + torch.rand(shape, generator=g),
    )
    v_leak, v_reset = 0.1 * torch.randn(shape, generator=g), -0.2 * torch.rand(shape, generator=g)
    fc = torch.randn(4, 30, generator=g, dtype=torch.float64)
    nodes = {
        "input": nir.Input(np.array([2, 10])),
        "conv": nir.Conv1d(None, w.numpy(), 1, 1, 1, 1, bias.numpy()),
        "lif": nir.LIF(
            tau.numpy(),
            r.double().numpy(),
            v_leak.double().numpy(),
            np.full(shape, 0.3),
            v_reset.double().numpy(),
        ),
        "flat": nir.Flatten(np.array(shape), 0, -1),
        "fc": nir.Affine(fc.numpy(), np.zeros(4)),
        "li": nir.LI(np.full(4, 0.02), np.ones(4), np.zeros(4)),
        "output": nir.Output(np.array([4])),
    }
    chain = ["input", "conv", "lif", "flat", "fc", "li", "output"]
    path = tmp_path / "conv1d.nir"
    nir.write(path, nir.NIRGraph(nodes, list(itertools.pairwise(chain))))
    xs = torch.rand(12, 2, 2, 10, generator=g, dtype=torch.float64) * 3
    for integration in ("euler", "exponential"):
        dt = 2e-3
        ours = import_nir(path, NirOptions(dt=dt, integration=integration)).snn(dtype=torch.float64)
        outs, spikes = ours.run_(xs, ours.init_state(2, torch.float64))
        a = 1 - dt / tau if integration == "euler" else torch.exp(-dt / tau)
        a_out = 1 - dt / 0.02 if integration == "euler" else math.exp(-dt / 0.02)
        v, out = torch.zeros(2, *shape, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
        for t in range(12):
            current = torch.nn.functional.conv1d(xs[t], w, bias, padding=1)
            v = a * v + (1 - a) * (v_leak + r * current)
            z = (v > 0.3).double()
            v = torch.where(z.bool(), v_reset.double(), v)
            out = a_out * out + (1 - a_out) * (z.flatten(1) @ fc.T)
            torch.testing.assert_close(outs[t], out, rtol=1e-12, atol=1e-12)
            assert torch.equal(spikes[t], z.flatten(1).sum(1))
        assert 0 < float(spikes.sum()) < 12 * 2 * 30


def test_the_operator_steps_an_imported_network_per_stream(tmp_path):
    """Current-based neurons (two state tensors) and an LI read-out in the operator's slots: a
    stream's outputs do not depend on which others share its batch, and a reset starts it afresh."""
    from streamsnn.snn.operator import SNNOperator

    n = 18
    nodes = {
        "input": nir.Input(np.array([2, 3, 3])),
        "flat": nir.Flatten(np.array([2, 3, 3]), 0, -1),
        "fc": nir.Affine(np.random.default_rng(0).normal(size=(6, n)), np.zeros(6)),
        "cuba": nir.CubaLIF(*(np.full(6, v) for v in (0.02, 0.01, 1.0, 0.0, 0.4))),
        "fc2": nir.Affine(np.random.default_rng(1).normal(size=(3, 6)), np.zeros(3)),
        "li": nir.LI(np.full(3, 0.01), np.ones(3), np.zeros(3)),
        "output": nir.Output(np.array([3])),
    }
    chain = ["input", "flat", "fc", "cuba", "fc2", "li", "output"]
    net = import_nir(nir.NIRGraph(nodes, list(itertools.pairwise(chain))), NirOptions(dt=1e-3)).snn()
    xs = torch.rand(8, 3, 2, 3, 3, generator=torch.Generator().manual_seed(3)) * 2
    alone = []
    for k in range(3):  # each stream by itself
        state, outs = net.init_state(1), []
        for t in range(8):
            state, _ = net.step(xs[t, k : k + 1], state)
            outs.append(state.out[0])
        alone.append(outs)
    op = SNNOperator(net, capacity=3, channels_last=False)
    for key in "abc":
        op.attach(key)
    for t in range(8):
        both = op.step(["a", "b"], xs[t, :2])
        single = op.step(["c"], xs[t, 2:])
        torch.testing.assert_close(both.output, torch.stack([alone[0][t], alone[1][t]]), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(single.output[0], alone[2][t], rtol=1e-6, atol=1e-6)
    assert float(both.spikes.sum()) > 0
    op.reset(["a"])
    again = op.step(["a"], xs[0, :1])
    torch.testing.assert_close(again.output[0], alone[0][0], rtol=1e-6, atol=1e-6)


def write_pipeline(tmp_path, weights, **model):
    spec = {
        "name": "nir_digits",
        "source": {"type": "digits_dvs", "split": "test", "limit": 16},
        "slicing": {"time_window_us": 20000},
        "encoder": {"type": "event_rate", "rate_unit_us": 100000},
        "model": {"weights": str(weights), "alpha": 1, **model},
        "policy": {"exit": {"type": "confidence", "threshold": 0.5, "max_steps": 15}},
        "runtime": {"batch_size": 8},
        "sinks": [],
        "report": {"path": str(tmp_path / "out" / "report.json")},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def digits_nir(tmp_path_factory):
    """An snnTorch network for the digits-dvs sensor (2×34×34), written as .nir."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(2, 4, 3, padding=1),
        leaky((4, 17, 17), 0.9),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 17 * 17, 10),
        leaky((10,), 0.8, output=True),
    )
    return write_snntorch(net, tmp_path_factory.mktemp("nir") / "digits.nir", size=34)


def test_streamsnn_run_with_a_nir_model_exits_early_and_reports_its_discretisation(
    digits_nir, tmp_path, capsys
):
    pipeline = write_pipeline(tmp_path, digits_nir, nir={"dt": 1e-4})
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    assert re.search(r"discretisation +dt 0\.0001, euler, reset value", capsys.readouterr().out)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["samples"] == 16 and report["discretisation"]["dt"] == 1e-4
    assert report["mean_steps"] < report["max_steps"] == 15  # early exits
    # the same model as a checkpoint written by `convert` runs the same
    checkpoint = tmp_path / "digits.pt"
    assert main(["convert", str(digits_nir), "--dt", "1e-4", "-o", str(checkpoint)]) == 0
    payload = torch.load(checkpoint, weights_only=True)
    assert payload["discretisation"]["integration"] == "euler" and payload["input"]["shape"] == [2, 34, 34]
    again = write_pipeline(tmp_path, checkpoint, nir={"dt": 1e-3})
    assert main(["run", str(again), "--no-progress"]) == 2  # a checkpoint's discretisation is its own
    assert "model.nir: imports a NIR graph" in capsys.readouterr().err
    again = write_pipeline(tmp_path, checkpoint)
    assert main(["run", str(again), "--no-progress"]) == 0
    rerun = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rerun["accuracy"] == report["accuracy"] and rerun["mean_steps"] == report["mean_steps"]
    assert rerun["discretisation"] == report["discretisation"]


def test_calibrate_and_evaluate_take_a_nir_model(digits_nir, tmp_path, capsys):
    pipeline = write_pipeline(tmp_path, digits_nir, nir={"dt": 1e-4})
    cal = tmp_path / "calibration.json"
    assert main(["calibrate", str(pipeline), "--no-progress", "--output", str(cal)]) == 0
    assert json.loads(cal.read_text())["temperature"] == 1.0  # no ANN to fit one on
    out = tmp_path / "evaluation"
    assert (
        main(
            ["evaluate", str(pipeline), "--no-progress", "--calibration", str(cal), "--output-dir", str(out)]
        )
        == 0
    )
    rows = json.loads((out / "evaluation.json").read_text())
    assert rows and "fixed T=15" in (out / "table.txt").read_text()


def test_a_pipeline_refuses_a_nir_model_without_dt_or_with_a_running_mean_of_a_membrane(
    digits_nir, tmp_path, capsys
):
    pipeline = write_pipeline(tmp_path, digits_nir)
    assert main(["run", str(pipeline), "--no-progress"]) == 2
    assert "model.weights: " in (err := capsys.readouterr().err) and "give the time step dt" in err
    lif_to_li = tmp_path / "li.nir"
    graph = nir.read(digits_nir)
    last = graph.nodes["5"]
    graph.nodes["5"] = nir.LI(tau=last.tau, r=last.r, v_leak=last.v_leak)
    nir.write(lif_to_li, graph)
    pipeline = write_pipeline(tmp_path, lif_to_li, nir={"dt": 1e-4}, alpha="t")
    assert main(["run", str(pipeline), "--no-progress"]) == 2
    assert "model.alpha: t" in capsys.readouterr().err


# -- malformed and unsupported graphs -------------------------------------------------------


def lif(n, tau=0.01):
    return nir.LIF(
        tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n)
    )


def chain_graph(*middle, shape=(2, 3, 3)):
    """input → Flatten → Affine → middle... → output, or the nodes and edges given."""
    n = int(np.prod(shape))
    nodes = {
        "input": nir.Input(np.array(shape)),
        "flat": nir.Flatten(np.array(shape), 0, -1),
        "fc": nir.Affine(np.ones((4, n)), np.zeros(4)),
        "output": nir.Output(np.array([4])),
    }
    names = []
    for i, node in enumerate(middle):
        nodes[f"m{i}"] = node
        names.append(f"m{i}")
    chain = ["input", "flat", "fc", *names, "output"]
    return nodes, list(itertools.pairwise(chain))


def written(tmp_path, nodes, edges, name="graph.nir"):
    path = tmp_path / name
    nir.write(path, nir.NIRGraph(nodes, edges, type_check=False))
    return path


def refused(source, match, **options):
    with pytest.raises(NirImportError, match=match):
        import_nir(source, NirOptions(dt=1e-3, **options))


def test_a_well_formed_chain_imports(tmp_path):
    """The base of the cases below imports, so each refusal is the one change it makes."""
    nodes, edges = chain_graph(lif(4))
    model = import_nir(written(tmp_path, nodes, edges), NirOptions(dt=1e-3))
    assert model.snn().n_classes == 4


def test_edges_to_missing_nodes_are_named(tmp_path):
    nodes, edges = chain_graph(lif(4))
    # in a file, nir's reader finds them (and names them); in a graph object, the importer does
    refused(
        written(tmp_path, nodes, [*edges, ("m0", "ghost")]),
        r"not a valid NIR graph .*destination node 'ghost'",
    )
    refused(
        nir.NIRGraph(nodes, [*edges, ("m0", "ghost")], type_check=False), r"edge m0 → ghost: no node 'ghost'"
    )
    del nodes["m0"]  # a node the edges still name
    refused(written(tmp_path, nodes, edges, "missing.nir"), r"not a valid NIR graph .*node 'm0'")
    refused(nir.NIRGraph(nodes, edges, type_check=False), r"edge fc → m0: no node 'm0'")


def test_wrong_shapes_are_named(tmp_path):
    nodes, edges = chain_graph(lif(5))  # 4 outputs of fc into 5 neurons
    refused(written(tmp_path, nodes, edges), r"type mismatch: fc\.output: \[\[4\]\] -> m0\.input: \[\[5\]\]")
    refused(
        nir.NIRGraph(nodes, edges, type_check=False), r"shapes\) failed: .*fc\.output: \[\[4\]\] -> m0\.input"
    )
    nodes, edges = chain_graph(lif(4))
    nodes["fc"] = nir.Affine(np.ones((4, 7)), np.zeros(4))  # takes 7, gets 18
    refused(written(tmp_path, nodes, edges, "b.nir"), r"flat\.output: \[\[18\]\] -> fc\.input: \[\[7\]\]")


def test_cycles_are_named_with_or_without_a_delay(tmp_path):
    nodes, edges = chain_graph(lif(4), nir.Affine(np.eye(4), np.zeros(4)))
    loop = [e for e in edges if e != ("m1", "output")] + [("m1", "m0"), ("m0", "output")]
    refused(written(tmp_path, nodes, loop), r"node '\w+': cycle .*m0.* without a Delay")
    nodes["m2"] = nir.Delay(np.full(4, 1e-3))
    loop = [e for e in loop if e != ("m1", "m0")] + [("m1", "m2"), ("m2", "m0")]
    refused(written(tmp_path, nodes, loop, "delay.nir"), r"recurrent loop .* \(through Delay 'm2'\)")


def test_unknown_node_types_and_unreadable_files_are_named(tmp_path):
    nodes, edges = chain_graph(lif(4))
    path = written(tmp_path, nodes, edges)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/m0/type"]
        f["node/nodes/m0/type"] = b"Izhikevich"
    refused(path, r"node 'm0': unknown node type 'Izhikevich'")
    garbage = tmp_path / "garbage.nir"
    garbage.write_bytes(b"not HDF5 at all" * 10)
    refused(garbage, r"garbage\.nir: not a readable NIR file")
    refused(tmp_path / "absent.nir", r"NIR file not found: .*absent\.nir")
    nodes, edges = chain_graph(
        nir.NIRGraph({"i": nir.Input(np.array([4])), "o": nir.Output(np.array([4]))}, [])
    )
    refused(nir.NIRGraph(nodes, edges, type_check=False), r"node 'm0': a subgraph")


@pytest.mark.parametrize(
    ("middle", "options", "match"),
    [
        (
            (lif(4, tau=1e-4),),
            {},
            r"node 'm0' \(LIF\): tau down to 0\.0001 is below dt = 0\.001: forward Euler",
        ),
        ((lif(4, tau=-1.0),), {"integration": "exponential"}, r"node 'm0' \(LIF\): tau must be positive"),
        ((nir.Delay(np.full(4, 2e-3)),), {}, r"node 'm0' \(Delay\): delay \[0\.002\]"),
        (
            (nir.CubaLIF(*(np.full(4, v) for v in (0.01, 0.01, 1.0, 0.0, 1.0))),),
            {"integration": "exponential"},
            r"node 'm0' \(CubaLIF\): integration 'exponential' .* use integration: euler",
        ),
        ((nir.Affine(np.eye(4), np.zeros(4)),), {}, r"no neuron node"),
    ],
)
def test_what_cannot_be_honoured_exactly_is_refused_naming_node_and_parameter(
    tmp_path, middle, options, match
):
    nodes, edges = chain_graph(*middle)
    refused(written(tmp_path, nodes, edges), match, **options)


def test_unsupported_structures_are_refused_naming_the_node(tmp_path, capsys):
    shape = (2, 4, 4)
    nodes = {
        "input": nir.Input(np.array(shape)),
        "pool": nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([1, 1])),
        "output": nir.Output(np.array([2, 3, 3])),
    }
    refused(
        nir.NIRGraph(nodes, [("input", "pool"), ("pool", "output")]), r"node 'pool' \(AvgPool2d\): padding"
    )
    nodes, edges = chain_graph(lif(4), lif(4), lif(4))
    both_stateful = [*edges[:3], ("fc", "m1"), ("m0", "m2"), ("m1", "m2"), ("m2", "output")]  # LIF ∥ LIF
    refused(
        written(tmp_path, nodes, both_stateful, "s.nir"), r"node 'fc': its branches m0 and m1 do not form"
    )
    nodes, edges = chain_graph(lif(4), lif(4))
    nodes["stray"] = nir.Affine(np.eye(4), np.zeros(4))  # no input: m0 sums it with the input's path
    refused(nir.NIRGraph(nodes, [*edges, ("stray", "m0")], type_check=False), r"node 'm0': sums inputs that")
    nodes, edges = chain_graph(lif(4), lif(4), lif(4))
    three = [*edges, ("fc", "m1"), ("fc", "m2")]  # fc feeds three nodes
    refused(written(tmp_path, nodes, three), r"node 'fc': feeds 3 nodes")
    nodes = {"input": nir.Input(np.array(shape)), "n": nir.IF(np.ones(shape), np.ones(shape))}
    nodes["output"] = nir.Output(np.array(shape))
    edges = [("input", "n"), ("n", "output")]
    refused(nir.NIRGraph(nodes, edges), r"output 'output': shape \[2, 4, 4\]; streamsnn reads a vector")
    nodes, edges = chain_graph(lif(4), shape=(18,))
    flat = written(tmp_path, nodes, edges, "flat.nir")  # imports (a Python user may feed it vectors)
    assert import_nir(flat, NirOptions(dt=1e-3)).input_shape == (18,)
    with pytest.raises(NirImportError, match=r"input: shape \[18\]; a checkpoint's model takes C×H×W"):
        convert_nir(flat, tmp_path / "flat.pt", NirOptions(dt=1e-3))
    pipeline = write_pipeline(tmp_path, flat, nir={"dt": 1e-3})
    assert main(["run", str(pipeline), "--no-progress"]) == 2
    assert "flat.nir expects input 18 but source 'digits_dvs' gives 2×34×34" in capsys.readouterr().err
    with pytest.raises(NirImportError, match="give the time step dt"):
        import_nir(written(tmp_path, *chain_graph(lif(4)), "nodt.nir"))
    nodes, edges = chain_graph(lif(4))
    nodes["input"], nodes["flat"] = nir.Input(None), nir.Flatten(None, 0, -1)  # no shapes
    unshaped = nir.NIRGraph(nodes, edges, type_check=False)
    refused(unshaped, r"input 'input': the graph gives no shape; give it \(model\.nir\.input_shape")
    assert import_nir(unshaped, NirOptions(dt=1e-3, input_shape=[2, 3, 3])).input_shape == (2, 3, 3)
    refused(
        written(tmp_path, *chain_graph(lif(4)), "shaped.nir"),
        r"shape \[2, 3, 3\] is not .* \[1, 3, 6\]",
        input_shape=[1, 3, 6],
    )


def test_convert_writes_a_checkpoint_that_states_its_discretisation(tmp_path, capsys):
    net = snntorch_net()
    path = write_snntorch(net, tmp_path / "net.nir")
    out = tmp_path / "net.pt"
    model = convert_nir(path, out, NirOptions(dt=1e-4))
    loaded = load_checkpoint(str(out))
    assert loaded.discretisation == model.discretisation and loaded.input["shape"] == [2, 8, 8]
    xs = torch.rand(6, 2, 2, 8, 8)
    a, b = model.snn(), loaded.snn()
    assert torch.equal(a.run_(xs, a.init_state(2))[0], b.run_(xs, b.init_state(2))[0])
    assert main(["convert", str(path), "-o", str(out)]) == 2
    assert "give the time step dt" in capsys.readouterr().err
    assert main(["convert", str(path), "--dt", "1e-4"]) == 2
    assert "-o OUT.pt" in capsys.readouterr().err
    assert main(["convert", "builtin:digits_frames", "--dt", "1", "-o", str(out)]) == 2
    assert (
        "--dt, --output: import a NIR graph (a .nir file), not builtin:digits_frames"
        in capsys.readouterr().err
    )
