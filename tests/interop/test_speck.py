"""Speck / DYNAP-CNN constraints of a NIR export (streamsnn.interop.speck)."""

from __future__ import annotations

from torch import nn

from streamsnn.interop.nir_export import to_nir
from streamsnn.interop.speck import check_speck
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.convert import convert
from tests.interop.test_nir_export import _lif_net


def test_speck_check():
    """Sinabs' published DYNAP-CNN constraints, per node: the shipped frames model fits; what does
    not fit is named."""
    frames = load_checkpoint("builtin:digits_frames").snn()
    found = check_speck(to_nir(frames).graph)
    assert [f for f in found if f.kind == "violation"] == []
    dvs = check_speck(to_nir(load_checkpoint("builtin:digits_dvs").snn()).graph)
    assert any(
        f.node == "0_conv2d" and "neuron memory 128 Ki" in f.text for f in dvs if f.kind == "violation"
    )
    qffs = check_speck(to_nir(load_checkpoint("builtin:digits_frames_2bit").snn("qffs")).graph)
    assert {f.node for f in qffs if f.kind == "violation"} == {"1_qffsneuron", "4_qffsneuron"}
    avg = check_speck(to_nir(frames, pooling="avg").graph)
    assert any("average pooling" in f.text for f in avg if f.kind == "violation")
    big = convert(nn.Sequential(nn.Conv2d(1, 4, 17), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)), (1, 20, 20))
    violations = [f for f in check_speck(to_nir(big).graph) if f.kind == "violation"]
    assert [f.node for f in violations] == ["0_conv2d"] and "17×17 exceeds 16×16" in violations[0].text
    sixteen = convert(nn.Sequential(nn.Conv2d(1, 4, 16), nn.Flatten(), nn.Linear(4 * 5 * 5, 2)), (1, 20, 20))
    assert [f for f in check_speck(to_nir(sixteen).graph) if f.kind == "violation"] == []
    lif = [f for f in check_speck(to_nir(_lif_net()).graph) if f.kind == "violation"]
    assert {f.node for f in lif} == {"1_lifneuron", "4_lifneuron"} and "without leak" in lif[0].text
