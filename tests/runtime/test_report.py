"""The run report as a user reads it: a stream run's outcomes named decisions (table, JSON, the
subscriber's summary line), and report.png drawn from real runs."""

import json

import numpy as np
import pytest

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.runtime.report import SampleOutcome, report_figure, report_table, write_report


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
    assert title.startswith("digits-frames (digits_frames): exit confidence (threshold 0.9")
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
