import json

import numpy as np
import pytest
import torch

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.lab.calibrate import (
    Collected,
    Scan,
    calibrate,
    choose_threshold,
    confidences,
    dynamic_confidence_scan,
    format_calibration,
    pareto_front,
    threshold_scan,
)
from streamsnn.lab.evaluate import replay
from streamsnn.policies import EXIT_POLICIES
from streamsnn.policies.calibration import load_calibration
from streamsnn.policies.exit import DynamicConfidenceExitConfig
from streamsnn.runtime import build_pipeline, run_pipeline


def random_traces(n=300, t_n=12, seed=0):
    rng = np.random.default_rng(seed)
    conf = np.clip(np.cumsum(rng.uniform(-0.05, 0.2, (n, t_n)), axis=1), 0, 1)
    correct = rng.random((n, t_n)) < np.linspace(0.5, 0.95, t_n)
    return conf, correct


def synthetic_collection(n=200, t_n=10, k=4, seed=0):
    """Accumulated outputs that grow towards each label, some samples shorter than T and some
    longer, and some steps with all outputs equal: a confidence of exactly 1/k = 0.25, a
    threshold of the grid (strictness matters)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1.0, (n, t_n, k)) + 0.6 * np.eye(k)[labels][:, None, :]
    outputs = np.cumsum(logits, axis=1)
    outputs[rng.random((n, t_n)) < 0.1] = 0.0
    lengths = rng.integers(t_n // 2, t_n + 3, n)
    for i, length in enumerate(lengths):
        outputs[i, length:] = outputs[i, min(length, t_n) - 1]  # kept after the sample's end
    zeros = np.zeros((n, t_n))
    return Collected(
        outputs=outputs,
        labels=labels,
        lengths=lengths,
        input_latency_ms=zeros,
        streams=["s"] * n,
        samples=np.arange(n),
        alpha=1.0,
        ann_logits=np.zeros((0, k)),
        spikes=zeros,
        neurons=1,
        energy_uj=zeros,
        ann_energy_uj=0.0,
    )


def replayed_per_threshold(data, alpha, temperature, thresholds):
    """The Dynamic Confidence policy itself, replayed on ``data`` once per threshold."""
    rows = []
    for c in thresholds:
        config = DynamicConfidenceExitConfig(
            type="dynamic_confidence", threshold=c, alpha=alpha, temperature=temperature, max_steps=data.steps
        )
        exits = replay(EXIT_POLICIES.build(config), data)
        rows.append((exits.steps.mean(), (exits.classes == data.labels).mean()))
    return np.array(rows)


def test_linear_scan_equals_the_policy_replayed_at_every_threshold():
    data = synthetic_collection()
    assert (data.lengths < data.steps).any() and (data.lengths > data.steps).any()
    assert (confidences(data, 1.0) == 0.25).any()  # confidences exactly on grid points
    scan = dynamic_confidence_scan(data, 4.0, 1.5, 1 / 64)
    slow = replayed_per_threshold(data, 4.0, 1.5, scan.thresholds)
    np.testing.assert_allclose(scan.mean_steps, slow[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(scan.accuracy, slow[:, 1], rtol=0, atol=1e-12)


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
    scan = dynamic_confidence_scan(data, cal.alpha, cal.temperature, 0.02)
    slow = replayed_per_threshold(data, cal.alpha, cal.temperature, scan.thresholds)
    np.testing.assert_allclose(scan.mean_steps, slow[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(scan.accuracy, slow[:, 1], rtol=0, atol=1e-12)
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

    from streamsnn.lab.evaluate import evaluate
    from streamsnn.lab.policy_training import save_policy
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
    assert "calibrated on val" in proc.stderr and cal_path.exists()  # chosen on val, not test
    for name in ("table.txt", "evaluation.json", "accuracy_vs_steps.png", "exit_steps.png", "confidence.png"):
        assert (out_dir / name).stat().st_size > 100
    for method in (
        "Dynamic Confidence",
        "SEENN-I ",
        "SEENN-II",
        "configured: confidence",
        "oracle",
        "energy µJ",
    ):
        assert method in proc.stdout

    cfg = load_pipeline(
        root / "pipelines" / "digits_frames.yaml", ["source.limit=48", "runtime.progress=false"]
    )
    ev = evaluate(cfg, "test", cal_path, str(policy_path), progress=False)
    rows, summary = ev.rows, ev.summary
    assert json.loads((out_dir / "evaluation.json").read_text())["rows"][2]["exit_steps"] == (
        rows[2].exits.steps.tolist()
    )
    oracle = rows[-1]
    assert oracle.mean_steps <= min(r.mean_steps for r in rows) and oracle.accuracy >= max(
        r.accuracy for r in rows
    )
    assert summary["empirical_aet"] == pytest.approx(oracle.mean_steps)  # samples of equal length
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


def test_the_calibration_png_draws_a_one_point_front_and_names_it(root, tmp_path):
    """On the frames model every no-loss threshold exits at step 1: a Pareto front of one point,
    drawn as a point (a line through one point draws nothing) and named so in the legend."""
    from streamsnn.lab.calibrate import scan_figure, write_calibration

    cfg = load_pipeline(
        root / "pipelines" / "digits_frames.yaml", ["source.limit=60", "runtime.progress=false"]
    )
    cal, scan, _ = calibrate(cfg, "val", resolution=1e-3, progress=False)
    assert len(cal.front) == 1
    ax = scan_figure(scan, cal).axes[0]
    front = next(line for line in ax.get_lines() if line.get_label().startswith("Pareto front"))
    assert front.get_label() == "Pareto front (1 point)" and front.get_marker() == "o"
    assert [t.get_text() for t in ax.get_legend().get_texts()][1] == "Pareto front (1 point)"
    low, high = ax.get_ylim()
    assert low <= 100 * scan.accuracy.min() and high - low < 15  # the thresholds fill the axes
    assert "digits_frames on val" in ax.get_title()
    _, png = write_calibration(cal, scan, tmp_path / "calibration.json")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibrate_shows_its_stages(root, capsys):
    cfg = load_pipeline(root / "pipelines" / "digits_frames.yaml", ["source.limit=24"])
    calibrate(cfg, "val", resolution=1e-3, progress=True)
    err = capsys.readouterr().err.replace("\r", "\n")
    stages = [line.split("]: ", 1)[1] for line in err.splitlines() if line.startswith("calibrate [")]
    assert stages == [
        "running digits_frames on the val split at full length, keeping every step's output; "
        "then the quantised ANN on each sample's mean input",
        "fitting the temperature, scanning 1,001 thresholds on 24 samples × 16 steps",
    ]
    assert "digits_frames: " in err and "/24 [" in err  # the run's bar in between
    calibrate(cfg, "val", resolution=1e-3, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("front", "says"), [([[0.5, 2.0, 1.0]], "1 point"), ([[0.4, 3, 1], [0.5, 2, 0.9]], "2 points")]
)
def test_the_calibration_text_counts_the_front_in_words(tmp_path, front, says):
    cal = load_calibration(hand_built_calibration(tmp_path, front=front))
    scan = Scan(np.array([0.5]), np.array([2.0]), np.array([1.0]))
    assert format_calibration(cal, scan).endswith(f"Pareto front: {says}")
