"""``streamsnn export MODEL --to nir OUT``: end to end in a subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import nir
import pytest

from streamsnn.lab.export import export_model

CLI = [sys.executable, "-m", "streamsnn.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_export_prints_lossy_items_fidelity_and_target(tmp_path):
    out = tmp_path / "frames.nir"
    done = _cli("export", "builtin:digits_frames", "--to", "nir", str(out), "--lossy", "--target", "speck",
                "--samples", "40")  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "lossy items (6):" in text and "1_ifneuron: initial membrane V0" in text
    assert "fidelity: 40 digits test samples, 16 steps" in text
    rows = [line.split() for line in text.splitlines() if line[:4].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 17)) and {len(r) for r in rows} == {9}
    assert "target speck: fits" in text
    assert "stepping the export with sinabs" in done.stderr  # progress
    graph = nir.read(out)
    assert graph.metadata["source"] == "builtin:digits_frames" and graph.metadata["conversion"] == "qcfs"
    report = json.loads(out.with_suffix(".fidelity.json").read_text())
    assert [f["reader"] for f in report["fidelity"]] == [
        "streamsnn",
        "streamsnn-nir",
        "streamsnn-subtract",
        "sinabs",
    ]
    for fid in report["fidelity"]:
        assert fid["samples"] == 40 and len(fid["max_abs_diff"]) == len(fid["agreement"]) == 16
        # the table prints what the JSON holds
        assert f"{fid['reader']}: last step agree {fid['final_agreement']:.1%}" in text
        assert [float(r[2 + 2 * report["fidelity"].index(fid)].rstrip("%")) / 100 for r in rows] == [
            pytest.approx(a, abs=5e-4) for a in fid["agreement"]
        ]
    assert report["lossy"][0].startswith("1_ifneuron")
    # streamsnn's own reader honours the exporter's metadata: the original at every step
    exact, nir_rules = report["fidelity"][:2]
    assert exact["max_abs_diff"] == [0.0] * 16 and exact["agreement"] == [1.0] * 16
    assert exact["exit_agreement"] == 1.0 and exact["exit_steps_reader"] == exact["exit_steps_original"]
    assert max(nir_rules["max_abs_diff"]) > 1  # NIR's own rules: the lossy items show


def test_a_v0_zero_export_is_exact_for_a_subtractive_reader(tmp_path):
    """With V0 = 0 the remaining lossy items (reset, tie) are honoured by a subtractive reader: the
    report measures no difference, while NIR's own reset still differs."""
    report = export_model(
        "builtin:digits_dvs", tmp_path / "dvs.nir", allow_lossy=True, samples=30, v0=0.0,
        readers=("streamsnn-subtract", "streamsnn-nir"), progress=False,
    )  # fmt: skip
    assert not any("V0" in item for item in report.lossy) and any("soft reset" in i for i in report.lossy)
    exact, strict = report.fidelity
    assert max(exact.max_abs_diff) < 1e-3 and min(exact.agreement) == 1.0
    assert max(strict.max_abs_diff) > 1
    meta = nir.read(tmp_path / "dvs.nir").metadata
    assert (
        meta["reset"] == "IFNeuron: subtract θ (soft), V0 in node metadata"
        and meta["source"] == "builtin:digits_dvs"
    )


def test_export_refusals(tmp_path):
    out = tmp_path / "x.nir"
    lossy = _cli("export", "builtin:digits_frames", "--to", "nir", str(out), "--samples", "0")
    assert lossy.returncode == 2 and lossy.stderr.startswith(
        "error: the NIR export of builtin:digits_frames is lossy"
    )
    assert "1_ifneuron" in lossy.stderr and "Traceback" not in lossy.stderr and not out.exists()
    big = _cli("export", "builtin:digits_dvs", "--to", "nir", str(out), "--lossy", "--target", "speck")
    assert big.returncode == 2 and "error: builtin:digits_dvs does not fit speck" in big.stderr
    assert "0_conv2d: kernel memory" in big.stderr and not out.exists()
    missing = _cli("export", "builtin:nope", "--to", "nir", str(out))
    assert missing.returncode == 2 and "error: no shipped weights 'builtin:nope'" in missing.stderr
    reader = _cli(
        "export", "builtin:digits_frames", "--to", "nir", str(out), "--lossy", "--readers", "snntorch"
    )
    assert reader.returncode == 2 and "error: reader: unknown snntorch" in reader.stderr and not out.exists()
    summed = _cli(
        "export", "builtin:digits_frames", "--to", "nir", str(out), "--lossy", "--readout", "integrator"
    )
    assert summed.returncode == 2 and "error: reader sinabs: Sinabs reads no I node" in summed.stderr
    assert not out.exists()
