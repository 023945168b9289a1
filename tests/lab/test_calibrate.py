import json

import numpy as np
import pytest
import torch

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.lab.calibrate import (
    Scan,
    calibrate,
    choose_threshold,
    naive_scan,
    pareto_front,
    threshold_grid,
    threshold_scan,
)
from streamsnn.policies.calibration import load_calibration
from streamsnn.runtime import build_pipeline, run_pipeline


def random_traces(n=300, t_n=12, seed=0):
    rng = np.random.default_rng(seed)
    conf = np.clip(np.cumsum(rng.uniform(-0.05, 0.2, (n, t_n)), axis=1), 0, 1)
    correct = rng.random((n, t_n)) < np.linspace(0.5, 0.95, t_n)
    return conf, correct


def test_linear_scan_equals_the_naive_scan_at_every_threshold():
    conf, correct = random_traces()
    conf[:5] = np.round(conf[:5], 2)  # confidences exactly on grid points: strictness matters
    fast = threshold_scan(conf, correct, 0.01)
    slow = naive_scan(conf, correct, threshold_grid(0.01))
    np.testing.assert_allclose(fast.mean_steps, slow.mean_steps, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.accuracy, slow.accuracy, rtol=0, atol=1e-12)


def test_exit_steps_never_decrease_with_the_threshold():
    conf, correct = random_traces(seed=1)
    scan = threshold_scan(conf, correct, 1e-3)
    assert np.all(np.diff(scan.mean_steps) >= -1e-12)
    assert scan.mean_steps[0] >= 1 and scan.mean_steps[-1] == conf.shape[1]  # c = 1: never confident
    assert scan.accuracy[-1] == pytest.approx(correct[:, -1].mean())


def test_pareto_front_and_choice():
    scan = Scan(
        thresholds=np.array([0.1, 0.2, 0.3, 0.4, 0.5]),
        mean_steps=np.array([1.0, 2.0, 2.0, 3.0, 4.0]),
        accuracy=np.array([0.80, 0.90, 0.92, 0.92, 0.93]),
    )
    assert pareto_front(scan).tolist() == [0, 2, 4]  # 0.2 and 0.4 are dominated
    assert choose_threshold(scan, full_accuracy=0.92) == 2  # lowest steps with no loss
    assert choose_threshold(scan, full_accuracy=0.93, tolerance=0.011) == 2
    assert choose_threshold(scan, full_accuracy=0.92, target_saving=0.2, steps=4) == 3  # conservative


def hand_built_calibration(tmp_path, **fields):
    data = {
        "format": "streamsnn-calibration/1",
        "pipeline": "p",
        "split": "val",
        "steps": 4,
        "alpha": 4.0,
        "temperature": 1.0,
        "threshold": 0.5,
        "resolution": 1e-4,
        "tolerance": 0.0,
        "target_saving": None,
        "accuracy_full_T": 1.0,
        "accuracy": 1.0,
        "mean_steps": 2.0,
        "saving": 0.5,
        "front": [],
    }
    data.update(fields)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    return path


def test_calibration_files_are_checked(tmp_path):
    assert load_calibration(hand_built_calibration(tmp_path)).threshold == 0.5
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not a readable calibration file"):
        load_calibration(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a streamsnn calibration file"):
        load_calibration(bad)


def test_calibration_never_uses_the_test_split(root):
    cfg = load_pipeline(root / "pipelines" / "digits_frames.yaml")
    with pytest.raises(ValueError, match="never looks at the test split"):
        calibrate(cfg, "test")


def test_calibrate_on_val_then_dynamic_confidence_on_test(root, tmp_path):
    cfg = load_pipeline(
        root / "pipelines" / "digits_frames.yaml", ["source.limit=60", "runtime.progress=false"]
    )
    cal, _, data = calibrate(cfg, "val", resolution=1e-3, progress=False, target_saving=0.5)
    assert data.outputs.shape == (60, 16, 10) and 0 < cal.temperature < 20 and cal.alpha == 16
    assert cal.accuracy >= cal.accuracy_full_T and cal.mean_steps <= 8 + 1e-9
    coarse, _, _ = calibrate(cfg, "val", resolution=0.1, collected=data, progress=False)
    fine, _, _ = calibrate(cfg, "val", resolution=1e-4, collected=data, progress=False)
    assert abs(coarse.saving - fine.saving) < 0.05  # robust to the scan resolution
    path = cal.save(tmp_path / "cal.json")
    run_cfg = load_pipeline(
        root / "pipelines" / "digits_frames.yaml",
        [
            "source.limit=60",
            "runtime.progress=false",
            "sinks=[]",
            "report.path=null",
            f"policy.exit={{type: dynamic_confidence, calibration: {path}}}",
        ],
    )
    report = run_pipeline(build_pipeline(run_cfg)).report
    assert report["samples"] == 60 and report["mean_steps"] < 16
    assert set(report["exit_reasons"]) <= {"confident", "max_steps"}


def test_oracle_is_refused_on_a_live_source(root):
    cfg = load_pipeline(
        root / "pipelines" / "digits_dvs.yaml",
        ["source={type: digits_dvs, live: true, limit: 1}", "policy.exit={type: oracle}"],
    )
    with pytest.raises(ConfigError, match=r"policy\.exit: 'oracle' needs labels"):
        build_pipeline(cfg)


def test_evaluate_matches_the_runtime_and_writes_table_and_plots(root, tmp_path):
    import subprocess
    import sys

    from streamsnn.lab.calibrate import collect
    from streamsnn.lab.evaluate import evaluate_policies
    from streamsnn.lab.policy_training import first_slice_inputs, save_policy
    from streamsnn.policies.calibration import load_calibration
    from streamsnn.policies.policy_net import PolicyNetExit, PolicyNetExitConfig
    from streamsnn.snn.models import build_model

    torch.manual_seed(0)
    arch = {"name": "resnet8", "in_channels": 1, "size": 16, "classes": 16, "activation": "relu"}
    policy_path = tmp_path / "policy.pt"
    save_policy(policy_path, build_model(arch), arch, (1, 16, 16), list(range(1, 17)))
    sets = ["--set", "source.limit=48", "--set", "runtime.progress=false"]
    cal_path, out_dir = tmp_path / "cal.json", tmp_path / "eval"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamsnn.cli",
            "evaluate",
            "pipelines/digits_frames.yaml",
            *sets,
            "--calibration",
            str(cal_path),
            "--output-dir",
            str(out_dir),
            "--target-saving",
            "0.5",
            "--policy-net",
            str(policy_path),
            "--no-progress",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "calibrating on val" in proc.stderr and cal_path.exists()  # chosen on val, not test
    for name in ("table.txt", "evaluation.json", "accuracy_vs_steps.png", "exit_steps.png", "confidence.png"):
        assert (out_dir / name).stat().st_size > 100
    for method in ("Dynamic Confidence", "SEENN-I ", "SEENN-II", "oracle", "energy µJ"):
        assert method in proc.stdout

    cal = load_calibration(cal_path)
    cfg = load_pipeline(
        root / "pipelines" / "digits_frames.yaml", ["source.limit=48", "runtime.progress=false"]
    )
    policy_steps = PolicyNetExit(PolicyNetExitConfig(weights=str(policy_path))).choose(
        first_slice_inputs(build_pipeline(cfg))[0]
    )
    data = collect(cfg, "test", steps=cal.steps, progress=False)
    rows, summary = evaluate_policies(data, 0.9, 16.0, cal, policy_steps)
    oracle = rows[-1]
    assert oracle.mean_steps <= min(r.mean_steps for r in rows) and oracle.accuracy >= max(
        r.accuracy for r in rows
    )
    assert summary["empirical_aet"] == pytest.approx(oracle.mean_steps)
    assert summary["ann_energy_uj"] > 0 and rows[0].energy_uj > 0
    for method, exit_cfg in [
        ("Dynamic", f"{{type: dynamic_confidence, calibration: {cal_path}}}"),
        ("SEENN-II", f"{{type: policy_net, weights: {policy_path}}}"),
    ]:
        run_cfg = load_pipeline(
            root / "pipelines" / "digits_frames.yaml",
            [
                "source.limit=48",
                "runtime.progress=false",
                "runtime.count_operations=true",
                "sinks=[]",
                "report.path=null",
                f"policy.exit={exit_cfg}",
            ],
        )
        report = run_pipeline(build_pipeline(run_cfg)).report  # the same policy, slice by slice
        r = next(r for r in rows if r.method.startswith(method))
        assert report["mean_steps"] == pytest.approx(r.mean_steps)
        assert report["accuracy"] == pytest.approx(r.accuracy)
        assert report["energy_uj_per_sample"] == pytest.approx(r.energy_uj, rel=1e-5)
