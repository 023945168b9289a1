"""``streamsnn export MODEL --to nir OUT``: end to end in a subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import nir

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
    assert "fidelity against sinabs, 40 test samples, 16 steps" in text
    rows = [line.split() for line in text.splitlines() if line[:4].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 17))
    assert "target speck: fits" in text
    assert "stepping the export with sinabs" in done.stderr  # progress
    graph = nir.read(out)
    assert graph.metadata["source"] == "builtin:digits_frames" and graph.metadata["conversion"] == "qcfs"
    report = json.loads(out.with_suffix(".fidelity.json").read_text())
    (fid,) = report["fidelity"]
    assert fid["samples"] == 40 and len(fid["max_abs_diff"]) == len(fid["agreement"]) == 16
    assert 0 <= fid["final_agreement"] <= 1 and report["lossy"][0].startswith("1_ifneuron")
    # the table prints what the JSON holds
    assert f"final: agree {fid['final_agreement']:.1%}" in text


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
