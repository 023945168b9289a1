"""Evaluation of exit policies: every policy replayed on collected outputs decides as ``run`` does,
sample by sample; SEENN's AET."""

import json

import numpy as np
import pytest
import torch

from streamsnn.cli import main
from streamsnn.config import load_pipeline
from streamsnn.lab.calibrate import calibrate, collect
from streamsnn.lab.evaluate import aet, empirical_aet, evaluate, replay, row
from streamsnn.lab.policy_training import first_slice_inputs, save_policy
from streamsnn.policies import EXIT_POLICIES
from streamsnn.policies.calibration import CALIBRATION_FORMAT, Calibration
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.snn.models import build_model

QUIET = ["source.limit=40", "runtime.progress=false", "sinks=[]", "report.path=null"]
# 500 events per slice: digits-dvs samples of 11 to 15 slices, so exits at 15 steps and fixed
# steps beyond a sample's length end at its last slice (end_of_sample)
UNEVEN = [*QUIET, "slicing={event_count: 500}"]


def test_aet_equals_the_papers_formula_on_a_worked_example():
    # 4 samples, T = 3. Correct at steps: s0 all; s1 from step 2; s2 only at step 1; s3 never.
    correct = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=bool)
    c = correct.sum(0)  # c_1 = 2, c_2 = 2, c_3 = 2
    by_hand = (c[0] + 2 * (c[1] - c[0]) + 3 * (c[2] - c[1]) + (4 - c[2]) * 3) / 4
    assert by_hand == pytest.approx(2.0)
    assert aet(correct) == pytest.approx(by_hand)
    assert empirical_aet(correct) == pytest.approx((1 + 2 + 1 + 3) / 4)


@pytest.fixture(scope="module")
def pipeline(root):
    return root / "pipelines" / "digits_dvs.yaml"


@pytest.fixture(scope="module")
def collected(pipeline):
    """The test split collected at full length once per pipeline variant (--set overrides)."""
    cache = {}

    def get(*overrides):
        if overrides not in cache:
            cache[overrides] = collect(load_pipeline(pipeline, list(overrides)), "test", progress=False)
        return cache[overrides]

    return get


@pytest.fixture(scope="module")
def calibration(pipeline, tmp_path_factory):
    """Dynamic Confidence calibrated on val (the uneven slicing), saved."""
    cal, _, _ = calibrate(load_pipeline(pipeline, UNEVEN), "val", resolution=1e-3, progress=False)
    return cal.save(tmp_path_factory.mktemp("cal") / "calibration.json")


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory):
    """An untrained SEENN-II policy network for digits-dvs inputs (2×34×34); one of its
    candidate step counts is beyond every sample's length."""
    torch.manual_seed(0)
    arch = {"name": "resnet8", "in_channels": 2, "size": 34, "classes": 4, "activation": "relu"}
    path = tmp_path_factory.mktemp("policy") / "policy.pt"
    save_policy(path, build_model(arch), arch, (2, 34, 34), [2, 5, 9, 20])
    return path


def decisions(outcomes):
    return [(o.sample, o.steps, o.cls, o.reason) for o in sorted(outcomes, key=lambda o: o.sample)]


def assert_replay_equals_run(pipeline, data, overrides, inputs=None):
    cfg = load_pipeline(pipeline, overrides)
    result = run_pipeline(build_pipeline(cfg))
    exits = replay(EXIT_POLICIES.build(cfg.policy.exit), data, inputs)
    replayed = list(
        zip(data.samples.tolist(), exits.steps.tolist(), exits.classes.tolist(), exits.reasons, strict=True)
    )
    assert replayed == decisions(result.outcomes)
    r = row("configured", cfg.policy.exit, data, exits, data.steps)
    assert r.accuracy == pytest.approx(result.report["accuracy"], abs=1e-12)
    assert r.mean_steps == pytest.approx(result.report["mean_steps"], abs=1e-12)
    return exits


@pytest.mark.parametrize(
    ("alpha", "exit_cfg", "reasons"),
    [
        ("15", "{type: fixed, steps: 6}", {"max_steps"}),
        ("15", "{type: fixed, steps: 20}", {"end_of_sample"}),  # longer than every sample
        ("15", "{type: confidence, threshold: 0.85, max_steps: 15}", {"confident", "end_of_sample"}),
        ("15", "{type: confidence, threshold: 0.7, max_steps: 8}", {"confident", "max_steps"}),
        ("15", "{type: confidence, threshold: 0.9}", {"confident", "end_of_sample"}),
        (
            "15",
            "{type: confidence, threshold: 0.5, max_steps: 4, score: entropy}",
            {"confident", "max_steps"},
        ),
        ("15", "{type: confidence, threshold: 0.6, score: entropy}", {"confident"}),
        ("t", "{type: confidence, threshold: 0.99, max_steps: 14}", {"confident", "end_of_sample"}),
        ("t", "{type: confidence, threshold: 0.95}", {"confident", "end_of_sample"}),
        ("t", "{type: confidence, threshold: 0.8, score: entropy}", {"confident", "end_of_sample"}),
        ("t", "{type: confidence, threshold: 0.8, max_steps: 6, score: entropy}", {"confident", "max_steps"}),
        (
            "15",
            "{type: dynamic_confidence, threshold: 0.6, alpha: 15, temperature: 1.2, max_steps: 5}",
            {"confident", "max_steps"},
        ),
        ("t", "{type: dynamic_confidence, threshold: 0.7, alpha: 10}", {"confident"}),
        ("15", "{type: deadline, input_ms: 120}", {"input_deadline"}),
        ("15", "{type: deadline, input_ms: 400}", {"end_of_sample"}),  # longer than every sample
        ("15", "{type: deadline, max_steps: 7}", {"max_steps"}),
        ("15", "{type: deadline, input_ms: 150, max_steps: 7}", {"input_deadline", "max_steps"}),
        ("15", "{type: oracle}", {"correct", "end_of_sample"}),
        ("t", "{type: oracle, max_steps: 4}", {"correct", "max_steps"}),
    ],
)
def test_every_exit_policy_replayed_decides_as_run_per_sample(pipeline, collected, alpha, exit_cfg, reasons):
    overrides = [*UNEVEN, f"model.alpha={alpha}"]
    data = collected(*overrides)
    assert sorted(set(data.lengths.tolist())) == [11, 12, 13, 14, 15]  # uneven: ends before T
    exits = assert_replay_equals_run(pipeline, data, [*overrides, f"policy.exit={exit_cfg}"])
    assert set(exits.reasons) == reasons  # the rules this case is about decided


@pytest.mark.parametrize(
    "options",
    [
        "",
        ", threshold: 0.95",
        ", max_steps: 8",
        ", threshold: 0.5, alpha: 5, temperature: 2.0, max_steps: 12",
    ],
)
def test_dynamic_confidence_from_a_calibration_file_with_overrides(pipeline, collected, calibration, options):
    exit_cfg = f"{{type: dynamic_confidence, calibration: {calibration}{options}}}"
    exits = assert_replay_equals_run(pipeline, collected(*UNEVEN), [*UNEVEN, f"policy.exit={exit_cfg}"])
    assert "confident" in exits.reasons


def test_policy_net_replayed_decides_as_run(pipeline, collected, policy_file):
    overrides = [*UNEVEN, f"policy.exit={{type: policy_net, weights: {policy_file}}}"]
    inputs, _ = first_slice_inputs(build_pipeline(load_pipeline(pipeline, overrides)))
    exits = assert_replay_equals_run(pipeline, collected(*UNEVEN), overrides, inputs)
    assert set(exits.reasons) == {"policy", "end_of_sample"}


def test_evaluate_rows_and_the_configured_policy(pipeline, calibration, policy_file, tmp_path):
    """``evaluate`` builds every row from a real policy: SEENN-I with the pipeline's own options
    (here entropy, α = t and max_steps 12), the configured exit as a row of its own, SEENN-II
    from the configured policy network; each row's exits are those of ``run``."""
    confidence = "{type: confidence, threshold: 0.8, max_steps: 12, score: entropy}"
    seenn = [*UNEVEN, "model.alpha=t", f"policy.exit={confidence}"]
    ev = evaluate(load_pipeline(pipeline, seenn), "test", calibration, progress=False)
    assert not ev.calibrated
    methods = [r.method for r in ev.rows]
    assert methods[0] == "fixed T=15" and methods[-1] == "oracle (first correct step)"
    assert "SEENN-I (c=0.8, entropy)" in methods
    assert "configured: confidence threshold=0.8 max_steps=12 score=entropy" in methods
    for method, config in [
        ("SEENN-I", confidence),
        ("configured", confidence),
        ("Dynamic Confidence", f"{{type: dynamic_confidence, calibration: {calibration}}}"),
        ("fixed T", "{type: fixed, steps: 15}"),
        ("oracle", "{type: oracle, max_steps: 15}"),
    ]:
        r = next(r for r in ev.rows if r.method.startswith(method))
        run = run_pipeline(build_pipeline(load_pipeline(pipeline, [*seenn, f"policy.exit={config}"])))
        assert list(zip(r.exits.steps.tolist(), r.exits.reasons, strict=True)) == [
            (o.steps, o.reason) for o in sorted(run.outcomes, key=lambda o: o.sample)
        ], method
        assert r.accuracy == pytest.approx(run.report["accuracy"], abs=1e-12)

    net = [*UNEVEN, f"policy.exit={{type: policy_net, weights: {policy_file}}}"]
    ev = evaluate(load_pipeline(pipeline, net), "test", calibration, progress=False)
    methods = [r.method for r in ev.rows]
    assert "SEENN-II (policy network)" in methods and "SEENN-I (c=0.9)" in methods
    seenn_ii, configured = ev.rows[methods.index("SEENN-II (policy network)")], ev.rows[-2]
    assert configured.method.startswith("configured: policy_net weights=")
    run = run_pipeline(build_pipeline(load_pipeline(pipeline, net)))
    expected = [o.steps for o in sorted(run.outcomes, key=lambda o: o.sample)]
    assert seenn_ii.exits.steps.tolist() == configured.exits.steps.tolist() == expected


def test_evaluate_refuses_a_wall_time_deadline(pipeline, tmp_path, capsys):
    """Wall time computed cannot be replayed from collected outputs: refused before any work,
    with an error naming the field."""
    code = main(
        [
            "evaluate",
            str(pipeline),
            "--set",
            "policy.exit={type: deadline, compute_ms: 5, max_steps: 10}",
            "--calibration",
            str(tmp_path / "none.json"),
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "policy.exit.compute_ms" in err and "cannot be replayed" in err and "Traceback" not in err
    assert not (tmp_path / "none.json").exists()


def test_evaluate_checks_the_policy_network_before_any_work(pipeline, tmp_path, capsys, monkeypatch):
    """A missing or refused --policy-net (or configured policy network) is an error before
    anything runs: no calibration on val is written, no recording is even generated (the
    digits-dvs cache stays empty); a configured policy's other files are checked before the
    collection."""
    from tests.snn.test_checkpoint import RunsCode

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("STREAMSNN_CACHE", str(cache))
    evil = tmp_path / "evil.pt"
    torch.save({"format": "streamsnn-checkpoint/1", "arch": RunsCode(tmp_path / "ran")}, evil)
    calibration = tmp_path / "none.json"
    base = ["evaluate", str(pipeline), "--calibration", str(calibration), "--no-progress"]
    cases = [
        (["--policy-net", str(tmp_path / "none.pt")], f"policy network: weights file not found: {tmp_path}"),
        (["--policy-net", str(evil)], f"policy network: {evil}: refused: the safe loader"),
        (["--set", f"policy.exit={{type: policy_net, weights: {evil}}}"], f"{evil}: refused"),
    ]
    for args, error in cases:
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert error in err and "Traceback" not in err and "weights_only" not in err
    # with a calibration there, the rows are built (their files read) before collecting
    Calibration(
        CALIBRATION_FORMAT, "digits-dvs", "val", 15, 15.0, 1.0, 0.9, 1e-4, 0.0, None, 1, 1, 7, 0.5, []
    ).save(calibration)
    args = ["--set", f"policy.exit={{type: dynamic_confidence, calibration: {tmp_path / 'other.json'}}}"]
    assert main([*base, *args]) == 2
    assert "other.json: not a readable calibration file" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and list(cache.iterdir()) == []


def test_cli_evaluate_equals_cli_run(pipeline, calibration, tmp_path, capsys):
    """``streamsnn evaluate``'s row for the configured policy holds, per sample, what
    ``streamsnn run`` decides with the same pipeline."""
    sets = []
    for s in ["source.limit=30", "slicing={event_count: 500}", "model.alpha=t"]:
        sets += ["--set", s]
    sets += ["--set", "policy.exit={type: confidence, threshold: 0.9, score: entropy}", "--no-progress"]
    assert main(["run", str(pipeline), *sets, "--set", "sinks=[]", "--report", str(tmp_path / "r.json")]) == 0
    out = tmp_path / "eval"
    args = ["--calibration", str(calibration), "--output-dir", str(out)]
    assert main(["evaluate", str(pipeline), *sets, *args]) == 0
    stdout = capsys.readouterr().out
    assert "configured: confidence threshold=0.9 score=entropy" in stdout
    evaluation = json.loads((out / "evaluation.json").read_text())
    configured = next(r for r in evaluation["rows"] if r["method"].startswith("configured"))
    runs = [json.loads(line) for line in (tmp_path / "r_samples.jsonl").read_text().splitlines()]
    runs.sort(key=lambda o: o["sample"])
    assert evaluation["samples"] == [o["sample"] for o in runs]
    assert configured["exit_steps"] == [o["steps"] for o in runs]
    assert configured["exit_reasons"] == [o["reason"] for o in runs]
    assert "end_of_sample" in configured["exit_reasons"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert configured["accuracy"] == pytest.approx(report["accuracy"])
    assert configured["mean_steps"] == pytest.approx(report["mean_steps"])


def test_the_exit_steps_png_has_a_panel_per_policy_and_merges_equal_ones(pipeline, calibration):
    """exit_steps.png: one panel per distinct policy (the configured exit, here SEENN-I's own
    options, shares SEENN-I's panel and point), bars of whole steps, right and wrong stacked, and
    no translucent overlap; the titles name pipeline and split."""
    from streamsnn.lab.evaluate import build_policies, comparison, evaluate_policies, evaluation_figures
    from streamsnn.policies.calibration import load_calibration

    cfg = load_pipeline(pipeline, UNEVEN)
    data = collect(cfg, "test", progress=False)
    rows, _ = evaluate_policies(
        data, build_policies(comparison(cfg, load_calibration(calibration), str(calibration))), 15
    )
    figures = evaluation_figures(data, rows, "digits-dvs on test")
    assert sorted(figures) == ["accuracy_vs_steps.png", "confidence.png", "exit_steps.png"]
    panels = figures["exit_steps.png"].axes
    titles = [ax.get_title(loc="left") for ax in panels]
    assert len(panels) == 3 and titles[0].startswith("SEENN-I (c=0.85) = configured: mean")
    assert titles[1].startswith("Dynamic Confidence") and titles[2].startswith("oracle")
    for ax, r in zip(panels, [rows[1], rows[2], rows[-1]], strict=True):
        assert sum(p.get_height() for p in ax.patches) == len(data.labels)  # every sample once
        assert all(p.get_alpha() in (None, 1) for p in ax.patches)
        assert all(float(t).is_integer() for t in ax.get_xticks())
        assert f"mean {r.mean_steps:.2f}" in ax.get_title(loc="left")
    assert "digits-dvs on test" in figures["exit_steps.png"]._suptitle.get_text()
    legend = [t.get_text() for t in figures["accuracy_vs_steps.png"].axes[0].get_legend().get_texts()]
    assert legend[1] == "SEENN-I (c=0.85) = configured" and len(legend) == 4


def test_evaluate_shows_its_stages(pipeline, calibration, capsys):
    evaluate(load_pipeline(pipeline, UNEVEN[:1] + UNEVEN[2:]), "test", calibration, progress=True)
    err = capsys.readouterr().err.replace("\r", "\n")
    stages = [line.split("]: ", 1)[1] for line in err.splitlines() if line.startswith("evaluate [")]
    assert len(stages) == 2 and stages[0].startswith("running digits_dvs on the test split at full length")
    assert stages[1] == "replaying 5 exit policies on the collected outputs of 40 samples"
    assert "digits_dvs: " in err and "/40 [" in err  # the run's bar
