"""The shipped digits models exported to real .nir files (lossy under NIR's rules) and read back by
streamsnn's importer, which honours the exporter's ``streamsnn_*`` node metadata: the same per-step
outputs bit for bit on the digits test split, the same decisions through a pipeline; with
``semantics: nir`` NIR's own rules (different outputs); inconsistent metadata refused, naming the
node and the key."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from streamsnn.cli import main
from streamsnn.config import load_pipeline
from streamsnn.interop.nir_export import to_nir
from streamsnn.interop.nir_import import NirImportError, NirOptions, import_nir
from streamsnn.lab.export import digits_inputs, export_model
from streamsnn.runtime.build import build_pipeline
from streamsnn.runtime.run import run_pipeline
from streamsnn.snn.checkpoint import load_checkpoint
from tests.interop.test_nir_export import _lif_net

SHIPPED = [("digits_dvs", "qcfs"), ("digits_frames", "qcfs"), ("digits_frames_2bit", "qffs")]


def _export(name: str, conversion: str, path) -> tuple:
    """``streamsnn export builtin:NAME --to nir PATH --lossy --conversion C --samples 0``."""
    export_model(f"builtin:{name}", path, allow_lossy=True, samples=0, conversion=conversion, progress=False)
    model = load_checkpoint(f"builtin:{name}")
    return model, model.snn(conversion), path


@pytest.mark.parametrize(("name", "conversion"), SHIPPED)
def test_a_shipped_model_reimports_with_identical_per_step_outputs(name, conversion, tmp_path):
    model, net, path = _export(name, conversion, tmp_path / f"{name}.nir")
    back = import_nir(path)  # no dt given: the graph's; the nodes' streamsnn_* metadata honoured
    d = back.discretisation
    assert back.input == {**model.input, "from": "nir"}  # shape, encoder (and rate unit) from the graph
    assert d["semantics"] == "streamsnn" and d["dt"] == 1.0
    kind = "QFFSNeuron" if conversion == "qffs" else "IFNeuron"
    assert len(d["exact"]) == 2 and all(v.startswith(kind) for v in d["exact"].values())
    xs, _ = digits_inputs(model, 48, None)
    _, outs, spikes = net.run(xs, net.init_state(48))
    read = back.snn()
    _, got, got_spikes = read.run(xs, read.init_state(48))
    assert spikes.sum() > 0 and outs.dtype == got.dtype == torch.float32
    assert torch.equal(got, outs) and torch.equal(got_spikes, spikes)  # every step, bit for bit
    # the same file under NIR's own rules: reset to v_reset, v > θ, state 0 (and QFFS as IF)
    with pytest.raises(NirImportError, match="give the time step dt"):
        import_nir(path, NirOptions(semantics="nir"))  # NIR's rules ignore the exporter's dt too
    plain = import_nir(path, NirOptions(dt=1.0, semantics="nir"))
    assert plain.discretisation["semantics"] == "nir" and "exact" not in plain.discretisation
    nir_net = plain.snn()
    _, lossy, _ = nir_net.run(xs, nir_net.init_state(48))
    assert (lossy - outs).abs().max() > 1


def _decisions(result) -> list[tuple]:
    return [(o.sample, o.label, o.cls, o.steps, o.reason, o.cls_full_t) for o in result.outcomes]


@pytest.mark.parametrize(("name", "conversion"), SHIPPED)
def test_a_pipeline_with_the_export_decides_as_the_checkpoint(name, conversion, root, tmp_path):
    _, _, path = _export(name, conversion, tmp_path / f"{name}.nir")
    pipeline = root / "pipelines" / ("digits_dvs.yaml" if name == "digits_dvs" else "digits_frames.yaml")
    common = ["runtime.progress=false", "report.path=null", "sinks=[]", "source.limit=40"]
    if conversion == "qffs":  # QFFS decides within Z_max + depth steps (README's conversion table)
        common.append("policy.exit.max_steps=3")

    def run(weights: str) -> list[tuple]:
        cfg = load_pipeline(pipeline, [*common, f"model.weights={weights}", f"model.conversion={conversion}"])
        return _decisions(run_pipeline(build_pipeline(cfg)))

    original, exported = run(f"builtin:{name}"), run(str(path))
    assert len(original) == 40 and exported == original
    assert sum(d[1] == d[2] for d in original) >= 36  # decisions that mean something (≥ 90 % right)
    assert len({d[3] for d in original}) > 1 or conversion == "qffs"  # QCFS: exits at several steps


def _edited(tmp_path, node: str, **metadata) -> str:
    """The digits_frames_2bit export with ``node``'s metadata changed (None: the key removed)."""
    _, _, path = _export("digits_frames_2bit", "qffs", tmp_path / "qffs.nir")
    graph = nir.read(path)
    meta = graph.nodes[node].metadata
    for key, value in metadata.items():
        meta.pop(key) if value is None else meta.__setitem__(key, value)
    nir.write(tmp_path / "edited.nir", graph)
    return str(tmp_path / "edited.nir")


@pytest.mark.parametrize(
    ("node", "metadata", "message"),
    [
        ("1_qffsneuron", {"streamsnn_reset": "to zero"}, r"streamsnn_reset: 'to zero'; a QFFSNeuron has"),
        ("4_qffsneuron", {"streamsnn_v0": np.float32(3.0)}, r"streamsnn_v0: V0/θ from 2\.06.* \[0, 1\]"),
        ("1_qffsneuron", {"streamsnn_v0": np.float32(-0.1)}, r"streamsnn_v0: V0/θ from -0\.1.* \[0, 1\]"),
        ("1_qffsneuron", {"streamsnn_v0": None}, r"streamsnn_v0: missing"),
        ("1_qffsneuron", {"streamsnn_neuron": "IFNeuron"}, r"streamsnn_z_max: a spike budget for a IFNeuron"),
        ("1_qffsneuron", {"streamsnn_z_max": 0}, r"streamsnn_z_max: 0; a QFFSNeuron takes a whole"),
        ("4_qffsneuron", {"streamsnn_z_max": None}, r"streamsnn_z_max: 'missing'; a QFFSNeuron takes"),
        ("1_qffsneuron", {"streamsnn_neuron": "LIFNeuron"}, r"streamsnn_neuron: a LIFNeuron is written as"),
        ("4_qffsneuron", {"streamsnn_neuron": "Izhikevich"}, r"streamsnn_neuron: 'Izhikevich' is not one of"),
        ("4_qffsneuron", {"streamsnn_fires_at": "v > threshold"}, r"streamsnn_fires_at: 'v > threshold'"),
    ],
)  # fmt: skip
def test_inconsistent_metadata_is_named(node, metadata, message, tmp_path):
    path = _edited(tmp_path, node, **metadata)
    with pytest.raises(NirImportError, match=rf"node '{node}' \(IF\): metadata {message}"):
        import_nir(path)
    import_nir(path, NirOptions(dt=1.0, semantics="nir"))  # NIR's rules ignore the metadata


def test_options_that_contradict_the_exact_semantics_are_refused(tmp_path, capsys):
    _, _, path = _export("digits_frames", "qcfs", tmp_path / "frames.nir")
    with pytest.raises(
        NirImportError, match=r"node '1_ifneuron' \(IF\): a IFNeuron steps v ← v \+ x.*dt·r = 2"
    ):
        import_nir(path, NirOptions(dt=2.0))
    with pytest.raises(
        NirImportError,
        match=r"model.nir.reset / --reset 'subtract': node '1_ifneuron' carries the exporter's",
    ):
        import_nir(path, NirOptions(reset="subtract"))
    # convert: no --dt needed for streamsnn's export, and the checkpoint steps as the original
    out = tmp_path / "frames.pt"
    assert main(["convert", str(path), "-o", str(out)]) == 0
    assert "2 neuron nodes with the exporter's exact semantics" in capsys.readouterr().out
    model, loaded = load_checkpoint("builtin:digits_frames"), load_checkpoint(str(out))
    assert loaded.discretisation["semantics"] == "streamsnn"
    xs, _ = digits_inputs(model, 16, None)
    a, b = model.snn(), loaded.snn()
    assert torch.equal(a.run(xs, a.init_state(16))[1], b.run(xs, b.init_state(16))[1])
    assert main(["convert", str(path), "--semantics", "nir", "-o", str(out)]) == 2
    assert "give the time step dt" in capsys.readouterr().err


def test_a_lif_export_reads_back_without_dt_and_refuses_another_integration(tmp_path):
    """A directly trained LIF network: NIR's LIF is exact; its metadata is checked, dt taken from the
    graph, and an integration other than the exporter's Euler is refused."""
    net = _lif_net()
    path = tmp_path / "lif.nir"
    nir.write(path, to_nir(net, metadata={"source": "test"}).graph)
    back = import_nir(path)
    assert back.discretisation["dt"] == 1.0 and set(back.discretisation["exact"]) == {
        "1_lifneuron",
        "4_lifneuron",
    }
    xs = (torch.rand(8, 3, 2, 20, 20, generator=torch.Generator().manual_seed(5)) < 0.3).float() * 2
    read = back.snn()
    _, outs, spikes = net.run(xs, net.init_state(3))
    assert spikes.sum() > 0
    torch.testing.assert_close(read.run(xs, read.init_state(3))[1], outs, rtol=1e-6, atol=1e-6)
    with pytest.raises(NirImportError, match=r"--integration 'exponential': node '1_lifneuron'"):
        import_nir(path, NirOptions(integration="exponential"))
