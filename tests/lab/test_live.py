"""The live benchmark: the scorer on hand-made timelines, ``evaluate --live`` end to end, and the
same scenario over a real UDP socket agreeing with the unpaced run."""

import json
import random

import numpy as np
import pytest

from streamsnn.cli import main
from streamsnn.config import load_pipeline
from streamsnn.lab.live import measure_live, scenario_config, score_live
from streamsnn.prediction import Prediction
from streamsnn.sources import DigitsDVS
from streamsnn.sources.scenarios import Segment

SLICE = 20_000
# noise, a 3, silence, two 7s back to back, a 2, noise, a 0 (never detected)
TIMELINE = [
    Segment(0, 100_000, "noise"),
    Segment(100_000, 400_000, "digit", 3, 0),
    Segment(400_000, 1_000_000, "silence"),
    Segment(1_000_000, 1_300_000, "digit", 7, 1),
    Segment(1_300_000, 1_600_000, "digit", 7, 2),
    Segment(1_600_000, 1_900_000, "digit", 2, 3),
    Segment(1_900_000, 2_000_000, "noise"),
    Segment(2_000_000, 2_300_000, "digit", 0, 4),
]
# (time µs, class, expected verdict, digit detected or repeated)
DECISIONS = [
    (99_000, 3, "false", None),  # just before the onset, on noise
    (100_000, 3, "false", None),  # at the onset: its slice saw none of the digit
    (250_000, 5, "wrong", None),  # wrong class while the 3 is in view
    (410_000, 3, "detection", 1),  # just after the offset, within one slice
    (415_000, 3, "repeat", 1),  # a second decision for the same digit
    (421_000, 3, "false", None),  # more than one slice after the offset: silence
    (700_000, 1, "false", None),  # on silence
    (1_310_000, 7, "detection", 3),  # the boundary of two 7s: the first is credited first...
    (1_315_000, 7, "detection", 4),  # ... then the second
    (1_500_000, 7, "repeat", 4),
    (1_610_000, 2, "detection", 5),  # the 2 is in view (and the second 7 within its slice)
    (1_615_000, 4, "wrong", None),
    (1_910_000, 2, "repeat", 5),  # after the 2, on noise, within one slice
    (1_950_000, 9, "false", None),
]


def final(t_us: int, cls: int, reason: str = "confident", final: bool = True, step: int = 5) -> Prediction:
    probs = [0.0] * 10
    probs[cls] = 0.9
    return Prediction(
        "s", 0, step, t_us - SLICE, t_us, cls, 0.9, probs, final=final, reason=reason, compute_latency_ms=2.0
    )


def decisions(offset: int = 0) -> list[Prediction]:
    preds = [final(t + offset, cls) for t, cls, _, _ in DECISIONS]
    preds += [
        final(2_300_000 + offset, 0, reason="end_of_stream"),  # the measurement ended the stream
        final(2_330_000 + offset, 0, reason="period"),  # beyond the timeline's end + one slice
        final(2_100_000 + offset, 0, final=False),  # not a decision
    ]
    return preds


def test_scorer_verdicts_and_figures_on_a_hand_made_timeline():
    score = score_live(TIMELINE, decisions(), SLICE)
    assert [(d.t_us, d.verdict, d.digit) for d in score.scored] == [(t, v, d) for t, _, v, d in DECISIONS]
    assert score.verdicts == {"detection": 4, "repeat": 3, "wrong": 2, "false": 5}
    assert (score.digits, score.detected, score.decisions, score.ignored) == (5, 4, 14, 2)
    assert score.detection_rate == pytest.approx(0.8)
    assert score.empty_s == pytest.approx(0.8)  # 0.1 s noise + 0.6 s silence + 0.1 s noise
    assert score.false_per_min == pytest.approx(5 / (0.8 / 60))
    assert score.wrong_pct == pytest.approx(100 * 7 / 14)  # wrong class or on empty input
    latencies = [310.0, 310.0, 15.0, 10.0]  # onset → detection of the 3, both 7s and the 2
    assert score.latency_ms["p50"] == pytest.approx(np.percentile(latencies, 50))
    assert score.latency_ms["p99"] == pytest.approx(np.percentile(latencies, 99))
    assert score.compute_ms == {"p50": 2.0, "p99": 2.0, "mean": 2.0}
    assert score.detections == {1: 3, 3: 7, 4: 8, 5: 10}


def test_scorer_aligns_clocks_and_ignores_the_order_given():
    expected = score_live(TIMELINE, decisions(), SLICE)
    preds = decisions(offset=123_456)
    random.Random(0).shuffle(preds)
    shifted = score_live(TIMELINE, preds, SLICE, offset_us=123_456)
    assert shifted.figures() == expected.figures()
    assert [(d.t_us, d.verdict) for d in shifted.scored] == [(d.t_us, d.verdict) for d in expected.scored]


def test_scorer_without_digits_empty_input_or_decisions():
    silence = [Segment(0, 60_000_000, "silence")]
    quiet = score_live(silence, [], SLICE)
    assert (quiet.detection_rate, quiet.wrong_pct, quiet.mean_steps) == (None, None, None)
    assert quiet.false_per_min == 0.0 and quiet.latency_ms["p50"] is None
    one = score_live(silence, [final(30_000_000, 1)], SLICE)
    assert one.verdicts["false"] == 1 and one.false_per_min == pytest.approx(1.0)
    digit = [Segment(0, 300_000, "digit", 4, 0)]
    missed = score_live(digit, [final(320_001, 4)], SLICE)  # later than one slice after the end
    assert missed.detected == 0 and missed.decisions == 0 and missed.ignored == 1
    assert missed.false_per_min is None  # no empty input to rate
    assert score_live(digit, [final(320_000, 4)], SLICE).detected == 1


PIPELINE = "pipelines/udp_live.yaml"


def test_evaluate_live_writes_table_json_and_timeline_png(root, tmp_path, capsys):
    out = tmp_path / "live"
    args = ["evaluate", str(root / PIPELINE), "--live", "--unpaced", "--split", "val", "--no-progress"]
    scenario = ["--scenario", "gaps", "--limit", "12", "--gap-max-ms", "400", "--output-dir", str(out)]
    assert main([*args, *scenario]) == 0
    table = capsys.readouterr().out
    assert "scenario gaps on val (12 digits" in table and "false decisions" in table
    doc = json.loads((out / "live_gaps_val.json").read_text())
    assert (out / "live_gaps_val.png").stat().st_size > 10_000
    assert (out / "live_gaps_val.txt").read_text().strip() == table.strip()
    src = DigitsDVS(scenario_config(None, split="val", scenario="gaps", limit=12, gap_max_ms=400))
    assert doc["timeline"] == [s.to_dict() for s in src.timeline()]
    assert doc["transport"] == "unpaced" and doc["offset_us"] == 0 and doc["slice_us"] == 20_000
    figures = doc["figures"]
    assert figures["digits"] == 12 and sum(figures["verdicts"].values()) == figures["decisions"] > 0
    assert figures["detected"] == sum(d["detected_by"] is not None for d in doc["digits"])
    assert [d["verdict"] for d in doc["decisions"]].count("detection") == figures["detected"]
    assert doc["run"]["dropped_slices"] == 0
    # nothing is timed in the decisions: played again, the same verdicts
    again = measure_live(load_pipeline(root / PIPELINE), src.config, unpaced=True)
    assert [(d.t_us, d.cls, d.verdict) for d in again.score.scored] == [
        (d["t_us"], d["cls"], d["verdict"]) for d in doc["decisions"]
    ]


def test_evaluate_live_refuses_what_it_does_not_take(root, capsys):
    pipeline = str(root / PIPELINE)
    cases = {
        ("--live", "--calibration", "c.json"): "--calibration: not with --live",
        ("--scenario", "gaps"): "--scenario: options of `evaluate --live`",
        ("--live", "--empty-s", "0"): "evaluate --live: empty_s: Input should be greater than 0",
        ("--live", "--scenario", "loop"): "evaluate --live: scenario: Input should be",
        ("--live", "--set", "slicing={event_count: 100}"): "give time_window_us",
    }
    for extra, message in cases.items():
        assert main(["evaluate", pipeline, "--split", "val", *extra]) == 2
        assert message in capsys.readouterr().err


def test_over_udp_the_same_scenario_scores_as_unpaced(root):
    """8 digits with gaps (~4 s), sent in real time by a process of its own over 127.0.0.1 to the
    pipeline's own UDP source: the timeline aligned on the first event's arrival puts every
    decision on the unpaced run's slice grid, and per digit the verdict (detected or not) is the
    unpaced run's for all digits but at most one (the issue's 2 pp on a full split); arrival
    stamps may move a few events into the next slice, so false decisions may differ by two."""
    cfg = load_pipeline(root / PIPELINE, ["source.port=0"])
    scenario = scenario_config(cfg, split="val", scenario="gaps", limit=8, gap_max_ms=500)
    unpaced = measure_live(cfg, scenario, unpaced=True)
    udp = measure_live(cfg, scenario)
    assert udp.transport == "udp" and udp.run["source_stats"]["events"] == len(DigitsDVS(scenario).events())
    assert udp.offset_us > 0  # stamped on arrival, after the source started reading
    grid = {d.t_us % SLICE for d in unpaced.score.scored}
    assert len(grid) == 1 and {d.t_us % SLICE for d in udp.score.scored} == grid

    def detected(run):
        return [i in run.score.detections for i, s in enumerate(run.segments) if not s.empty]

    assert unpaced.score.detected >= 5
    assert sum(a != b for a, b in zip(detected(unpaced), detected(udp), strict=True)) <= 1
    assert abs(unpaced.score.verdicts["false"] - udp.score.verdicts["false"]) <= 2
