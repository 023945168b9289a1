"""The run report as a user reads it: strict JSON, written whole or not at all (a full disk, a real
tmpfs); a stream run's outcomes named decisions (table, JSON, the subscriber's summary line), and
report.png drawn from real runs."""

import json
import os

import numpy as np
import pytest

from streamsnn.config import load_pipeline
from streamsnn.options import ConfigError
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.runtime.report import (
    OutcomeLog,
    SampleOutcome,
    build_report,
    report_figure,
    report_table,
    write_report,
)
from tests.small_disk import copied, fill, needs_small_disk, run_on_small_disk


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_the_report_of_no_sample_is_strict_json(tmp_path):
    written = write_report(
        build_report([], {"wall_s": float("nan"), "x": [float("inf")]}), [], tmp_path / "r.json"
    )
    assert [p.name for p in written] == ["r.json", "r_samples.jsonl"]
    report = strict_json((tmp_path / "r.json").read_text())
    assert report["samples"] == 0 and report["wall_s"] is None and report["x"] == [None]
    assert report["input_latency_ms"]["p50"] is None and report["accuracy"] is None
    assert (tmp_path / "r_samples.jsonl").read_text() == ""


@needs_small_disk
def test_report_files_on_a_full_disk_are_left_as_they_were(root, tmp_path):
    """The report's folder is a full tmpfs holding an earlier run's report: the run's JSONL (on
    another disk) is complete, the earlier report files are unchanged and no partial or
    temporary file is left; exit status 1 with an error naming the file."""
    disk, out = tmp_path / "disk", tmp_path / "p.jsonl"
    earlier = {"report.json": '{"samples": 1}\n', "report_samples.jsonl": '{"sample": 0}\n'}
    prepare = " && ".join(f"printf '%s' '{text}' > {name}" for name, text in earlier.items())
    args = ["run", "pipelines/digits_dvs.yaml", "--set", "sinks=[]", "--set", "source.limit=20"]
    args += ["--output", str(out), "--report", str(disk / "report.json"), "--no-progress"]
    done = run_on_small_disk(disk, 64, args, root, prepare=f"{prepare} && {fill(reserve_kb=4)}")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: report: cannot write {disk}/report" in done.stderr, done.stderr
    assert "No space left on device; the report's files are left as they were" in done.stderr
    left = {p.name: p.read_text() for p in copied(disk).iterdir() if p.name not in ("filler", "reserve")}
    assert left == earlier
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(p["final"] for p in preds) == 20


def test_a_per_sample_file_written_by_one_run_is_refused_to_another(tmp_path):
    """A stream run's per-sample file is locked while written: a second log on it (as a second
    run would open it) is refused naming the file and the process, and truncates nothing."""
    path = tmp_path / "report_samples.jsonl"
    first = OutcomeLog(path)
    outcome = SampleOutcome("s", 0, None, 1, 2, "confident", 20.0, 1.0, 1.0, 0)
    first.append(outcome)
    with pytest.raises(
        ConfigError, match=f"per-sample file: {path} is being written by process {os.getpid()}"
    ):
        OutcomeLog(path)
    first.close()
    assert [o.sample for o in first] == [0]


def run(root, pipeline, *overrides):
    cfg = load_pipeline(
        root / "pipelines" / pipeline,
        ["runtime.progress=false", "report.path=null", "sinks=[]", *overrides],
    )
    return run_pipeline(build_pipeline(cfg))


def rows(table):
    return {line[:26].strip(): line[26:].strip() for line in table.splitlines()}


def test_a_stream_run_reports_decisions_and_a_replay_samples(root, tmp_path):
    live = run(root, "digits_dvs.yaml", "source={type: digits_dvs, live: true, limit: 3}")
    replay = run(root, "digits_dvs.yaml", "source.limit=8")
    for result, unit, stream_run in ((live, "decisions", True), (replay, "samples", False)):
        written = write_report(result.report, result.outcomes, tmp_path / unit / "report.json")
        report = json.loads(written[0].read_text())
        assert report["stream_run"] is stream_run and report["decisions"] == report["samples"] >= 3
        table = rows(report_table(report))
        other = "samples" if stream_run else "decisions"
        assert table[unit] == str(report["samples"]) and other not in table
        assert f"{unit} per s" in table and f"spikes per {unit[:-1]}" in table
        assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert replay.report["samples"] == 8


def test_report_png_of_frames_shows_compute_latency_by_exit_step(root):
    result = run(root, "digits_frames.yaml", "source.limit=24")
    fig = report_figure(result.outcomes, result.report)
    exits, latency = fig.axes
    assert all(o.input_latency_ms == 0 for o in result.outcomes)
    assert latency.get_xlabel() == "exit step" and "input latency 0" in latency.get_title()
    title = fig._suptitle.get_text()
    assert title.startswith("digits_frames (digits_frames): exit confidence (threshold 0.9")
    assert title.endswith("24 samples")
    for axis in (exits.get_xticks(), exits.get_yticks(), latency.get_xticks()):
        assert all(float(t).is_integer() for t in axis)
    labels = [t.get_text() for t in exits.get_legend().get_texts()]
    right = sum(o.cls == o.label for o in result.outcomes)
    assert labels[0] == f"correct ({right})" and len(labels) == 1 + (right < 24)


def outcome(steps, label, cls=3, input_ms=20.0):
    return SampleOutcome(
        "udp/127.0.0.1:3333", 0, label, cls, steps, "confident", input_ms * steps, 1.0, 0.1, 0
    )


@pytest.mark.parametrize("labelled", [False, True])
def test_unlabelled_decisions_are_no_label_not_correct(labelled):
    """Decisions of an unlabelled live source (UDP) are grey 'no label', never green 'correct';
    with few decisions the count axis still has whole numbers only."""
    outcomes = [outcome(s, 3 if labelled else None) for s in (5, 6, 6)]
    if labelled:
        outcomes.append(outcome(7, 4))
    report = {"pipeline": "udp-live", "source": "udp", "policy": {"type": "confidence", "threshold": 0.9}}
    fig = report_figure(outcomes, {**report, "stream_run": True})
    exits, latency = fig.axes
    labels = [t.get_text() for t in exits.get_legend().get_texts()]
    assert labels == (["correct (3)", "wrong (1)"] if labelled else ["no label (3)"])
    colours = {tuple(np.round(p.get_facecolor()[:3], 3)) for p in exits.patches}
    grey = (0.498, 0.498, 0.498)
    assert (grey in colours) is not labelled
    assert all(float(t).is_integer() for t in exits.get_yticks())
    assert latency.get_xlabel().startswith("input latency")
    assert (
        fig._suptitle.get_text()
        == f"udp-live (udp): exit confidence (threshold 0.9), {len(outcomes)} decisions"
    )
