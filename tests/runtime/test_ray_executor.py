"""``executor: ray`` on a local Ray instance with 2 workers: the same per-sample predictions and
report as the local executor, and a worker killed mid-replay costs no sample and counts none twice."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections import defaultdict
from pathlib import Path

import pytest
import ray

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.runtime.ray_executor import run_on_ray

SAMPLES = 40
# outcome-derived report fields: equal to the local run's; the rest are timings and counters of
# the run itself (wall time, batch occupancy, latencies)
SAME = (
    *("samples", "labelled", "accuracy", "accuracy_full_T", "accuracy_ann", "mean_steps", "max_steps"),
    *("mean_steps_full_T", "step_saving", "exit_reasons", "spikes_per_sample", "policy", "pipeline"),
    *("dropped_slices", "skipped_slices", "out_of_bounds_events", "late_events", "source_stats"),
)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def config(root: Path, out: Path, *overrides: str):
    return load_pipeline(
        root / "pipelines" / "digits_dvs.yaml",
        [
            "runtime.progress=false",
            "report.path=null",
            f"source.limit={SAMPLES}",
            "runtime.batch_size=8",
            f"sinks=[{{type: jsonl, path: {out}}}]",
            "ray.samples_per_task=6",
            *overrides,
        ],
    )


def by_sample(path: Path) -> dict[int, list[tuple]]:
    """Each sample's predictions in step order: (step, class, final, reason, confidence)."""
    preds = defaultdict(list)
    for line in path.read_text().splitlines():
        p = json.loads(line)
        preds[p["sample"]].append((p["step"], p["class"], p["final"], p["reason"], p["confidence"]))
    return {s: sorted(ps) for s, ps in preds.items()}


def decisions(result) -> list[tuple]:
    return [(o.sample, o.label, o.cls, o.steps, o.reason, o.cls_full_t, o.cls_ann) for o in result.outcomes]


def assert_same_predictions(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected) == list(range(SAMPLES))
    for sample, preds in expected.items():
        assert [p[:4] for p in got[sample]] == [p[:4] for p in preds], sample
        assert [p[4] for p in got[sample]] == pytest.approx([p[4] for p in preds], abs=1e-5)


def test_ray_replay_gives_the_local_predictions_and_report(root, tmp_path, local_ray):
    local = run_pipeline(build_pipeline(config(root, tmp_path / "local.jsonl")))
    distributed = run_on_ray(build_pipeline(config(root, tmp_path / "ray.jsonl", "executor=ray")))
    assert decisions(distributed) == sorted(decisions(local))
    assert_same_predictions(by_sample(tmp_path / "ray.jsonl"), by_sample(tmp_path / "local.jsonl"))
    assert set(distributed.report) - {"workers_start_s"} == set(local.report)
    for key in SAME:
        assert distributed.report[key] == local.report[key], key
    assert distributed.report["workers"] == 2 and distributed.report["executor"] == "ray"
    assert ray.is_initialized()  # an instance the caller started is left running


class KillOneWorker:
    """A sink that kills one replay worker process (SIGKILL) when the first range arrives."""

    def __init__(self) -> None:
        self.killed: int | None = None

    def write(self, pred) -> None:
        if self.killed is None:
            self.killed = next(iter(worker_pids()))
            os.kill(self.killed, signal.SIGKILL)

    def close(self) -> None:
        pass


def worker_pids() -> list[int]:
    """Processes of this machine whose title Ray set to ``ray::ReplayWorker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::ReplayWorker"):
                pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_replay_loses_no_sample_and_counts_none_twice(root, tmp_path, local_ray):
    expected = run_pipeline(build_pipeline(config(root, tmp_path / "local.jsonl")))
    pipe = build_pipeline(config(root, tmp_path / "ray.jsonl", "executor=ray"))
    killer = KillOneWorker()
    pipe.sinks.append(killer)
    result = run_on_ray(pipe)
    assert killer.killed is not None and killer.killed not in worker_pids()
    assert [o.sample for o in result.outcomes] == list(range(SAMPLES))  # each exactly once
    assert decisions(result) == sorted(decisions(expected))
    assert_same_predictions(by_sample(tmp_path / "ray.jsonl"), by_sample(tmp_path / "local.jsonl"))
    assert result.report["accuracy"] == expected.report["accuracy"]


def test_ray_refuses_what_it_cannot_shard(root, tmp_path):
    live = config(root, tmp_path / "p.jsonl", "executor=ray", "source.live=true")
    with pytest.raises(ConfigError, match="shards a dataset replay by sample"):
        run_on_ray(build_pipeline(live))
    recorder = f"sinks=[{{type: record, path: {tmp_path}/r.aedat4}}]"
    record = config(root, tmp_path / "p.jsonl", "executor=ray", recorder)
    with pytest.raises(ConfigError, match=r"sinks\[0\]: record writes the events"):
        run_on_ray(build_pipeline(record))


def test_run_command_takes_executor_ray(root, tmp_path, local_ray, capsys):
    from streamsnn.cli import main

    report = tmp_path / "report.json"
    args = ["run", str(root / "pipelines" / "digits_dvs.yaml"), "--executor", "ray", "--no-progress"]
    args += ["--set", "source.limit=12", "--set", "ray.samples_per_task=4", "--set", "sinks=[]"]
    args += ["--report", str(report)]
    assert main(args) == 0
    written = json.loads(report.read_text())
    assert written["executor"] == "ray" and written["samples"] == 12 and written["workers"] == 2
    assert "accuracy (early exit)" in capsys.readouterr().out


def test_calibrate_and_evaluate_on_ray_equal_the_local_executor(root, tmp_path, local_ray):
    """Both collect per-step outputs through run_pipeline, so executor: ray shards them too: the
    same collected outputs, the same calibration and the same evaluation rows."""
    import numpy as np

    from streamsnn.calibrate import calibrate, collect
    from streamsnn.evaluate import evaluate_policies

    def chosen(*overrides):
        cfg = config(root, tmp_path / "unused.jsonl", "sinks=[]", *overrides)
        cal, _, val = calibrate(cfg, "val", resolution=1e-3, progress=False)
        test = collect(cfg, "test", steps=cal.steps, progress=False)
        rows, summary = evaluate_policies(test, 0.85, 15.0, cal)
        return cal, val, [(r.method, r.accuracy, r.mean_steps) for r in rows], summary

    local, distributed = chosen(), chosen("executor=ray")
    # the ANN reference runs per shard, in other batches: its logits, and so the fitted
    # temperature, agree to float rounding; threshold, accuracy, steps and front exactly
    cal = dataclasses.asdict(distributed[0])
    assert cal.pop("temperature") == pytest.approx(local[0].temperature, rel=1e-6)
    assert cal == {k: v for k, v in dataclasses.asdict(local[0]).items() if k != "temperature"}
    a, b = distributed[1], local[1]  # the collected validation outputs
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.spikes, b.spikes)
    # other batch companions: the last layer's matrix product may round the last bit otherwise
    np.testing.assert_allclose(a.outputs, b.outputs, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(a.ann_logits, b.ann_logits, rtol=1e-5, atol=1e-5)
    assert distributed[2] == local[2] and distributed[3] == local[3]


def test_workers_resolve_relative_paths_from_the_drivers_directory(root, tmp_path, local_ray, monkeypatch):
    import shutil

    shutil.copy(root / "streamsnn" / "assets" / "digits_dvs.pt", tmp_path / "weights.pt")
    monkeypatch.chdir(tmp_path)
    cfg = config(root, tmp_path / "p.jsonl", "executor=ray", "model.weights=weights.pt", "source.limit=8")
    result = run_pipeline(build_pipeline(cfg))
    assert [o.sample for o in result.outcomes] == list(range(8)) and result.report["executor"] == "ray"


def test_the_core_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys, streamsnn.cli, streamsnn.runtime, streamsnn.calibrate; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
