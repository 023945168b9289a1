"""NIR export: real files written and read back with nir, stepped by an independent simulation of
NIR's equations (tests/interop/nir_sim.py) and by Sinabs' NIR reader, on the digits test split."""

from __future__ import annotations

import nir
import pytest
import torch
from torch import nn

from streamsnn.interop.nir_export import LossyExportError, NIRExportError, to_nir, write
from streamsnn.interop.nir_import import NirOptions, import_nir
from streamsnn.lab.export import digits_inputs, fidelity, reader_outputs
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.convert import convert, fold_spiking
from streamsnn.snn.models import build_model
from streamsnn.snn.neurons import LIFNeuron
from tests.interop.nir_sim import simulate


def _round_trip(net, tmp_path, **options) -> nir.NIRGraph:
    path = write(to_nir(net, **options), tmp_path / "net.nir", allow_lossy=True)
    return nir.read(path)


def _lif_net() -> nn.Module:
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        LIFNeuron(threshold=0.3, decay=0.75),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        LIFNeuron(threshold=0.3, decay=0.75),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 10),
    )
    for m in seq:
        if isinstance(m, nn.BatchNorm2d):  # BN statistics that folding must honour
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return fold_spiking(seq.eval(), (2, 20, 20))


def test_lif_network_exports_exactly(tmp_path):
    """A directly trained LIF network (hard reset, v > θ, V0 = 0) is what NIR's LIF says under
    forward Euler: no lossy item, written without the flag, the same outputs at every step."""
    net = _lif_net()
    export = to_nir(net)
    assert export.lossy == []
    graph = nir.read(write(export, tmp_path / "lif.nir"))
    xs = (torch.rand(12, 6, 2, 20, 20, generator=torch.Generator().manual_seed(1)) < 0.3).float() * 2
    _, outs, spikes = net.run(xs, net.init_state(6))
    assert spikes.sum() > 0  # the network spikes on this input
    torch.testing.assert_close(simulate(graph, xs).cumsum(0), outs, rtol=1e-5, atol=1e-5)
    integrated = _round_trip(net, tmp_path, readout="integrator")  # the sum inside the graph (nir.I)
    torch.testing.assert_close(simulate(integrated, xs), outs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("readout", ["per_step", "integrator"])
def test_lif_network_reimports_identically(readout, tmp_path):
    """Exported, written, re-imported by streamsnn's NIR reader (dt = 1, Euler, NIR's reset): the
    same anytime outputs at every step."""
    net = _lif_net()
    path = write(to_nir(net, readout=readout), tmp_path / "lif.nir")
    back = import_nir(path, NirOptions(dt=1.0)).snn()
    xs = (torch.rand(10, 4, 2, 20, 20, generator=torch.Generator().manual_seed(4)) < 0.3).float() * 2
    _, outs, spikes = net.run(xs, net.init_state(4))
    _, again, _ = back.run(xs, back.init_state(4))
    assert spikes.sum() > 0
    torch.testing.assert_close(again, outs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["digits_frames", "digits_dvs"])
def test_shipped_models_reimport(name, tmp_path):
    """The QCFS-converted digits models re-imported by streamsnn's reader under NIR's rules
    (``semantics: nir``; the exact read-back: tests/interop/test_nir_import_exact.py): with a
    subtractive reset they are the original with V0 = 0 at every step (V0 is the one loss); with
    NIR's reset to v_reset they differ more (the soft-reset item)."""
    model = load_checkpoint(f"builtin:{name}")
    path = write(to_nir(model.snn()), tmp_path / "m.nir", allow_lossy=True)
    xs, _ = digits_inputs(model, 40, None)
    v0_zero = model.snn(v0=0.0)
    _, expected, _ = v0_zero.run(xs, v0_zero.init_state(40))
    subtract = import_nir(path, NirOptions(dt=1.0, reset="subtract", semantics="nir")).snn()
    _, got, _ = subtract.run(xs, subtract.init_state(40))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    value = import_nir(path, NirOptions(dt=1.0, semantics="nir")).snn()
    _, hard, _ = value.run(xs, value.init_state(40))
    assert (hard - expected).abs().max() > 1


@pytest.mark.parametrize("name", ["digits_frames", "digits_dvs"])
def test_shipped_models_round_trip(name, tmp_path):
    """QCFS-converted IF (soft reset, V0 = θ/2): a reader that honours the nodes' streamsnn
    metadata gets the original per step (float32 rounding only); with NIR's own equations the
    listed lossy items change the outputs."""
    model = load_checkpoint(f"builtin:{name}")
    net = model.snn()
    xs, _labels = digits_inputs(model, 40, None)
    _, outs, _ = net.run(xs, net.init_state(xs.shape[1]))
    for pooling in ("sum", "avg"):
        graph = _round_trip(net, tmp_path, pooling=pooling)
        kinds = {type(n).__name__ for n in graph.nodes.values()}
        assert ("SumPool2d" in kinds) == (pooling == "sum") and ("AvgPool2d" in kinds) == (pooling == "avg")
        exact = simulate(graph, xs, honour_metadata=True).cumsum(0)
        torch.testing.assert_close(exact, outs, rtol=1e-5, atol=1e-4)
        assert torch.equal(exact.argmax(-1), outs.argmax(-1))
    strict = simulate(graph, xs).cumsum(0)
    assert (strict - outs).abs().max() > 1  # hard reset and V0 = 0: not the same network
    meta = graph.metadata
    assert (
        list(meta["input_shape"]) == list(model.input_shape) and meta["readout"] == "sum" and meta["dt"] == 1
    )


def test_lossy_export_needs_the_flag(tmp_path):
    net = load_checkpoint("builtin:digits_frames_2bit").snn("qffs")
    export = to_nir(net)
    out = tmp_path / "qffs.nir"
    with pytest.raises(LossyExportError) as err:
        write(export, out)
    assert not out.exists()
    text = str(err.value)
    assert "--lossy" in text and "1_qffsneuron" in text and "4_qffsneuron" in text
    assert "negative spikes" in text and "soft reset" in text and "V0" in text
    write(export, out, allow_lossy=True)
    assert nir.read(out).nodes["1_qffsneuron"].metadata["streamsnn_z_max"] == 3


def test_unexportable_layer_is_named():
    net = convert(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), (1, 2, 2))
    net.layers[0] = nn.Flatten(start_dim=2)
    with pytest.raises(NIRExportError, match="layer 0"):
        to_nir(net)


def test_residual_network_exports(tmp_path):
    """Fork/Merge as two edges into one node (NIR sums them), the identity shortcut as nir.Scale."""
    torch.manual_seed(2)
    ann = build_model({"name": "resnet8", "in_channels": 1, "size": 8, "classes": 4, "theta": 1.0}).eval()
    net = convert(ann, (1, 8, 8))
    graph = _round_trip(net, tmp_path)
    assert any(isinstance(n, nir.Scale) for n in graph.nodes.values())
    assert any(sum(d == name for _, d in graph.edges) == 2 for name in graph.nodes)
    xs = torch.rand(6, 5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    _, outs, _ = net.run(xs, net.init_state(5))
    torch.testing.assert_close(
        simulate(graph, xs, honour_metadata=True).cumsum(0), outs, rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    ("name", "samples", "least"), [("digits_frames", 120, 0.95), ("digits_dvs", 60, 0.8)]
)
def test_sinabs_agrees_as_the_report_predicts(name, samples, least, tmp_path):
    """Sinabs (sinabs.nir.from_nir) loads the export from the file; the fidelity measured on the
    first samples of the test split predicts its agreement on the next ones."""
    model = load_checkpoint(f"builtin:{name}")
    net = model.snn()
    graph = _round_trip(net, tmp_path)
    xs, labels = digits_inputs(model, 2 * samples, None)
    _, outs, _ = net.run(xs, net.init_state(xs.shape[1]))
    read = reader_outputs(graph, xs, "sinabs")
    first, second = slice(0, samples), slice(samples, 2 * samples)
    predicted = fidelity(outs[:, first], read[:, first], labels[first], "sinabs")
    held_out = fidelity(outs[:, second], read[:, second], labels[second], "sinabs")
    assert predicted.final_agreement >= least
    assert abs(held_out.final_agreement - predicted.final_agreement) <= 0.08
    assert predicted.max_abs_diff[-1] > 0  # V0, multi-spikes and the floor at −θ: not exact
    assert len(predicted.agreement) == xs.shape[0]
