import gc
import itertools
import json
import threading
import time
import tracemalloc
from collections import defaultdict

import pytest

from streamsnn.config import ConfigError, PipelineConfig, load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.runtime.runner import Runner
from streamsnn.sinks import Sink
from streamsnn.sources.digits import DigitsDVS, DigitsDVSSourceConfig


def config(root, *overrides, base="digits_dvs.yaml"):
    return load_pipeline(
        root / "pipelines" / base, ["runtime.progress=false", "sinks=[]", "report.path=null", *overrides]
    )


def run(cfg: PipelineConfig):
    return run_pipeline(build_pipeline(cfg))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_end_to_end_one_final_per_sample(root, tmp_path):
    out = tmp_path / "preds.jsonl"
    cfg = config(root, "source.limit=24", "runtime.batch_size=8", f"sinks=[{{type: jsonl, path: {out}}}]")
    result = run(cfg)
    preds = read_jsonl(out)
    by_sample = defaultdict(list)
    for p in preds:
        by_sample[p["sample"]].append(p)
    assert sorted(by_sample) == list(range(24))
    for sample, ps in by_sample.items():
        steps = [p["step"] for p in ps]
        assert steps == list(range(1, len(ps) + 1)), sample  # in order, no gaps
        assert [p["final"] for p in ps] == [False] * (len(ps) - 1) + [True]
        last = ps[-1]
        assert last["reason"] in ("confident", "max_steps", "end_of_sample")
        assert last["reason"] != "confident" or last["confidence"] > 0.85
        assert all(p["input_latency_ms"] == pytest.approx(20.0 * p["step"]) for p in ps)
        compute = [p["compute_latency_ms"] for p in ps]
        assert all(b > a for a, b in itertools.pairwise(compute))
        assert abs(sum(last["probs"]) - 1) < 1e-4 and last["class"] == max(
            range(10), key=last["probs"].__getitem__
        )
    report = result.report
    finals = [ps[-1] for ps in by_sample.values()]
    assert report["samples"] == 24
    assert report["accuracy"] == pytest.approx(sum(p["class"] == p["label"] for p in finals) / 24)
    assert report["mean_steps"] == pytest.approx(sum(p["step"] for p in finals) / 24)
    assert report["max_steps"] == max(p["step"] for p in finals)
    assert report["mean_steps_full_T"] == 15
    for key in ("input_latency_ms", "compute_latency_ms", "e2e_latency_ms"):
        assert report[key]["p50"] <= report[key]["p99"]
    assert report["accuracy_full_T"] is not None and report["accuracy_ann"] is not None


def test_decisions_do_not_depend_on_batching_chunking_or_full_t(root):
    base = ("source.limit=20", "model.dtype=float64")
    one = run(config(root, *base, "runtime.batch_size=1")).outcomes
    many = run(config(root, *base, "runtime.batch_size=7")).outcomes
    chunked = run(config(root, *base, "runtime.batch_size=7", "runtime.chunk=4")).outcomes
    lean = run(config(root, *base, "runtime.batch_size=7", "runtime.full_t=false"))
    lean_chunked = run(config(root, *base, "runtime.batch_size=3", "runtime.chunk=6", "runtime.full_t=false"))
    key = lambda o: (o.sample, o.cls, o.steps, o.reason)  # noqa: E731
    decisions = sorted(map(key, one))
    for other in (many, chunked, lean.outcomes, lean_chunked.outcomes):
        assert sorted(map(key, other)) == decisions
    full = lambda outcomes: sorted((o.sample, o.cls_full_t, o.steps_full_t) for o in outcomes)  # noqa: E731
    assert full(one) == full(many) == full(chunked)
    skipped = sum(15 - o.steps for o in lean.outcomes)
    assert lean.report["skipped_slices"] == lean_chunked.report["skipped_slices"] == skipped > 0
    # a subset of samples at full T would be biased: no full-T accuracy without full_t
    assert lean.report["accuracy_full_T"] is None and lean.report["mean_steps_full_T"] == 15
    by_sample = {o.sample: o for o in lean.outcomes}
    for o in lean_chunked.outcomes:  # the chunk's later steps are paid before its predictions
        if o.steps % 6:
            assert o.compute_latency_ms > 0 and by_sample[o.sample].steps == o.steps


def test_fixed_policy_runs_every_sample_to_t(root):
    result = run(config(root, "source.limit=6", "policy.exit={type: fixed, steps: 15}"))
    assert [o.steps for o in result.outcomes] == [15] * 6
    assert {o.reason for o in result.outcomes} == {"max_steps"}
    assert result.report["accuracy"] == result.report["accuracy_full_T"]


def test_realtime_replay_waits_for_sensor_time(root):
    started = time.monotonic()
    result = run(
        config(
            root,
            "source.limit=2",
            "runtime.batch_size=2",
            "runtime.realtime=true",
            "policy.exit={type: fixed, steps: 15}",
        )
    )
    elapsed = time.monotonic() - started
    assert elapsed >= 0.3  # 15 slices of 20 ms each
    for o in result.outcomes:
        assert o.input_latency_ms == pytest.approx(300.0)
        assert o.e2e_latency_ms < 200  # right after its slice was complete, not after a 300 ms backlog


def test_frame_source_with_direct_and_poisson_input(root):
    direct = run(config(root, "source.limit=16", base="digits_frames.yaml"))
    assert direct.report["samples"] == 16 and direct.report["accuracy"] >= 0.9
    assert all(o.input_latency_ms == 0 for o in direct.outcomes)  # the frame arrived at once
    poisson_args = ("source.limit=16", "encoder.type=poisson", "policy.exit={type: fixed, steps: 16}")
    poisson, again = (run(config(root, *poisson_args, base="digits_frames.yaml")) for _ in range(2))
    assert [o.cls for o in poisson.outcomes] == [o.cls for o in again.outcomes]  # seeded


class SlowSink(Sink):
    def __init__(self, delay):
        self.delay, self.seen = delay, 0
        self.got: list[tuple] = []  # (stream, sample, step, final, reason)

    def write(self, pred):
        self.seen += 1
        self.got.append((pred.stream, pred.sample, pred.step, pred.final, pred.reason))
        time.sleep(self.delay)


def assert_accounted(got: list[tuple], outcomes) -> None:
    """Every prediction a live stream emitted (``got``: stream, sample, step, final, reason)
    belongs to one decision (its ``sample``) and one state (reset on exit): decision k's are its
    steps 1…s, the last one final, as its outcome says. Two ways a prediction is not a step of a
    decision: a stream that ends with no slice left to step closes its decision by emitting its
    newest prediction again, as the final one (``end_of_stream``); and after a stream's last
    decision, non-final predictions of one it never closed (the gate refused its end) remain."""
    preds = defaultdict(list)
    for stream, sample, step, final, reason in got:
        preds[stream, sample].append((step, final, reason))
    decided = defaultdict(dict)
    for o in outcomes:
        decided[o.stream][o.sample] = o
    for stream, decisions in decided.items():
        assert sorted(decisions) == list(range(len(decisions))), stream
        for k, o in decisions.items():
            ps = preds.pop((stream, k))
            steps = [step for step, _, _ in ps]
            assert [p for p in ps if p[1]] == [ps[-1]] == [(o.steps, True, o.reason)], (stream, k)
            again = o.reason == "end_of_stream" and steps == [*range(1, o.steps + 1), o.steps]
            assert again or steps == list(range(1, o.steps + 1)), (stream, k, steps)
    for (stream, sample), ps in preds.items():  # left: the open decision at a stream's end
        assert sample == len(decided[stream]) and not any(final for _, final, _ in ps), (stream, sample)


def test_live_stream_resets_on_exit_and_keeps_deciding(root):
    cfg = config(
        root,
        "source={type: digits_dvs, split: test, limit: 3, live: true, packet_us: 2000}",
        "runtime.batch_size=1",
    )
    result = run(cfg)
    decisions = result.outcomes
    assert len(decisions) >= 3  # 900 ms of stream, a fresh decision after every exit
    assert [o.sample for o in decisions] == list(range(len(decisions)))
    assert all(o.steps <= 15 for o in decisions)
    assert result.report["dropped_slices"] == 0


def test_live_stream_drops_oldest_when_behind_and_counts(root):
    cfg = config(
        root,
        "source={type: digits_dvs, split: test, limit: 2, live: true, packet_us: 1000}",
        "slicing={time_window_us: 2000}",
        "runtime.queue_size=2",
        "runtime.batch_size=1",
    )
    pipe = build_pipeline(cfg)
    slow = SlowSink(0.03)  # 30 ms per prediction, slices come every 2 ms
    pipe.sinks.append(slow)
    result = run_pipeline(pipe)
    assert result.report["dropped_slices"] > 50
    assert slow.seen == result.report["predictions"]  # everything emitted was delivered
    # and is accounted for, however far behind the stream's end found the loop (under load it
    # may have stepped every slice left: the stream's newest prediction is then emitted again
    # as its final one, one prediction more than the decisions' steps)
    assert_accounted(slow.got, result.outcomes)


def test_the_end_of_a_stream_is_never_dropped_for_a_slice(root):
    """Live streams whose slices are dropped while the loop is behind (queue of 1, slow sink):
    the markers of each stream's end and of the source's are kept, so every stream closes and
    the run ends (a dropped end left a stream open and the loop waiting for it forever)."""
    sources = ", ".join(
        f"{{type: digits_dvs, live: true, packet_us: 2000, limit: 1, offset: {o}}}" for o in (0, 5, 9)
    )
    cfg = config(root, f"source={{type: streams, sources: [{sources}]}}", "runtime.queue_size=1")
    pipe = build_pipeline(cfg)
    slow = SlowSink(0.02)
    pipe.sinks.append(slow)
    done: list = []
    runner = threading.Thread(target=lambda: done.append(run_pipeline(pipe)), daemon=True)
    runner.start()
    runner.join(120)
    assert done, "the run did not end"
    result = done[0]
    assert result.report["dropped_slices"] > 0
    assert {o.stream for o in result.outcomes} == {f"digits-dvs/test/live#{i}" for i in range(3)}
    assert slow.seen == result.report["predictions"]
    assert_accounted(slow.got, result.outcomes)
    last = {stream: final for stream, _, _, final, _ in slow.got}
    assert all(last.values()), last  # each stream's open decision closed at its end


def test_mismatched_parts_are_config_errors(root):
    with pytest.raises(ConfigError, match=r"encoder\.type: 'direct' does not fit source 'digits_dvs'"):
        build_pipeline(config(root, "encoder.type=direct"))
    with pytest.raises(ConfigError, match="expects input 2×34×34 but source 'digits_frames' gives 1×16×16"):
        build_pipeline(
            config(root, base="digits_frames.yaml").model_copy(update={"model": config(root).model})
        )
    with pytest.raises(ConfigError, match=r"model\.weights: no shipped weights 'builtin:nope'"):
        build_pipeline(config(root, "model.weights=builtin:nope"))
    with pytest.raises(ConfigError, match="frame sources take n_time_bins"):
        build_pipeline(config(root, "slicing={time_window_us: 1000}", base="digits_frames.yaml"))


class FailingSource(DigitsDVS):
    """digits-dvs that hits an unreadable recording after its first sample."""

    def __iter__(self):
        for packet in super().__iter__():
            yield packet
            raise ValueError("recording 1: truncated at byte 1234")


def test_a_failing_source_stops_the_run_with_its_error_after_flushing(root, tmp_path):
    out = tmp_path / "p.jsonl"
    pipe = build_pipeline(config(root, "source.limit=3", f"sinks=[{{type: jsonl, path: {out}}}]"))
    pipe.source = FailingSource(DigitsDVSSourceConfig(split="test", limit=3))
    with pytest.raises(ValueError, match="truncated at byte 1234"):
        run_pipeline(pipe)
    text = out.read_text()  # the sink was closed: whatever was emitted is on disk as whole lines
    assert text == "" or text.endswith("\n")
    assert all(json.loads(x)["sample"] == 0 for x in text.splitlines())


class FailingSink(Sink):
    """Fails at its 20th prediction."""

    def __init__(self):
        self.written = 0

    def write(self, pred):
        self.written += 1
        if self.written == 20:
            raise OSError("disk full: predictions.jsonl")


def test_a_failing_sink_is_named_and_left_out_while_the_others_and_the_report_finish(root, tmp_path):
    """The sink's error is kept with its name, the sink gets nothing more, the run does not hang on
    it, and the other sink gets every prediction."""
    out = tmp_path / "p.jsonl"
    overrides = ("source.limit=40", "runtime.batch_size=4", "runtime.queue_size=1")
    pipe = build_pipeline(config(root, *overrides, f"sinks=[{{type: jsonl, path: {out}}}]"))
    failing = FailingSink()
    pipe.sinks = [failing, *pipe.sinks]
    results = []
    worker = threading.Thread(target=lambda: results.append(run_pipeline(pipe)), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the run hung after its sink failed"
    report = results[0].report
    assert report["sink_errors"] == ["sinks[0] (FailingSink): disk full: predictions.jsonl"]
    assert failing.written == 20  # never called again
    finals = [p for p in read_jsonl(out) if p["final"]]
    assert report["samples"] == len(finals) == 40 and not report["interrupted"]


def test_periodic_reset_closes_open_decisions_on_a_live_stream(root):
    cfg = config(
        root,
        "source={type: digits_dvs, split: test, limit: 2, live: true, packet_us: 2000}",
        "policy.exit={type: confidence, threshold: 1.0}",  # never confident
        "policy.reset={type: periodic, every_steps: 5}",
        "runtime.batch_size=1",
    )
    result = run(cfg)
    reasons = [o.reason for o in result.outcomes]
    assert reasons.count("period") >= 5 and all(o.steps <= 5 for o in result.outcomes)
    assert all(o.steps == 5 for o in result.outcomes if o.reason == "period")


def test_decaying_reset_keeps_deciding_without_hard_resets(root):
    cfg = config(
        root,
        "source={type: digits_dvs, split: test, limit: 2, live: true, packet_us: 2000}",
        "policy.exit={type: fixed, steps: 4}",
        "policy.reset={type: decay, factor: 0.5}",
        "runtime.batch_size=1",
    )
    result = run(cfg)
    assert len(result.outcomes) >= 6 and all(o.steps <= 4 for o in result.outcomes)
    assert [o.sample for o in result.outcomes] == list(range(len(result.outcomes)))


def test_torch_threads_are_set_for_the_run_and_restored(root, monkeypatch):
    import torch

    from streamsnn.runtime.runner import run_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert run_threads(None) == 3  # every core but one: the source and sink threads take it
    assert run_threads(2) == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert run_threads(None) == 1
    before = torch.get_num_threads()
    seen = []
    cfg = config(root, "source.limit=4", "runtime.threads=1")
    pipe = build_pipeline(cfg)
    step = pipe.operator.step
    pipe.operator.step = lambda *a: seen.append(torch.get_num_threads()) or step(*a)
    report = run_pipeline(pipe).report
    assert set(seen) == {1} and report["torch_threads"] == 1
    assert torch.get_num_threads() == before


def test_ranges_of_a_split_replayed_apart_give_the_whole_replay(root):
    """offset + limit shard a replay: the shards' per-sample decisions, numbered as in the split,
    are those of one replay of the whole range."""

    def decisions(*overrides):
        result = run(config(root, "runtime.batch_size=8", *overrides))
        return {
            o.sample: (o.label, o.cls, o.steps, o.reason, o.cls_full_t, o.cls_ann) for o in result.outcomes
        }

    whole = decisions("source.limit=20")
    shards = [
        decisions(f"source.offset={start}", f"source.limit={n}") for start, n in ((0, 7), (7, 7), (14, 6))
    ]
    assert [sorted(s) for s in shards] == [list(range(0, 7)), list(range(7, 14)), list(range(14, 20))]
    assert {k: v for s in shards for k, v in s.items()} == whole


def test_a_stream_run_keeps_its_memory_bounded_and_its_outcomes_on_disk(root, tmp_path):
    """A stream run keeps nothing per decision in memory: a digits-dvs stream played unpaced with
    a decision every slice (5,400 of them). Between its 1,500th and 5,000th decision the objects
    alive (those the garbage collector tracks: any kept outcome, prediction or dict is one or
    more) did not grow by 1,000 (kept outcomes: two each), nor did Python's traced memory by
    1 MB; every decision is in the per-sample file, written as it was made."""
    cfg = config(
        root,
        "source={type: digits_dvs, split: test, live: true, pace: false}",
        "policy.exit={type: fixed, steps: 1}",
        "runtime.batch_size=1",
    )
    samples = tmp_path / "report_samples.jsonl"
    alive: dict[int, tuple[int, int, int]] = {}  # decision → objects, traced bytes, lines on disk

    def sample(index: int, outcome) -> None:
        if index in (1_500, 5_000):
            gc.collect()
            lines = len(samples.read_text().splitlines())
            alive[index] = (len(gc.get_objects()), tracemalloc.get_traced_memory()[0], lines)

    tracemalloc.start()
    try:
        result = Runner(build_pipeline(cfg), on_outcome=sample, samples_path=samples).run()
    finally:
        tracemalloc.stop()
    assert result.report["samples"] == len(samples.read_text().splitlines()) >= 5_000
    (objects, traced, lines), (objects_later, traced_later, lines_later) = alive[1_500], alive[5_000]
    assert (lines, lines_later) == (1_501, 5_001)  # on disk as they were made
    assert objects_later - objects < 1_000 and traced_later - traced < 1 << 20, alive
    outcomes = list(result.outcomes)  # read back from the file
    assert len(outcomes) == result.report["samples"] and {o.steps for o in outcomes} == {1}
    assert result.report["samples_file"] == str(samples)
    labelled = [o for o in outcomes if o.label is not None]
    assert result.report["accuracy"] == sum(o.cls == o.label for o in labelled) / len(labelled)


def test_a_stream_run_killed_keeps_every_decision_made_as_whole_lines(root, tmp_path):
    """kill -9 during a live run: the per-sample file holds every decision written so far, each
    a whole JSON line."""
    import signal
    import subprocess
    import sys

    report = tmp_path / "report.json"
    samples = tmp_path / "report_samples.jsonl"
    args = ["run", "pipelines/digits_dvs.yaml", "--no-progress", "--report", str(report)]
    sets = ["source={type: digits_dvs, live: true, limit: 40, packet_us: 2000}", "sinks=[]"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamsnn.cli", *args, *(a for s in sets for a in ("--set", s))],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if samples.exists() and samples.read_bytes().count(b"\n") >= 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    text = samples.read_text()
    assert text.endswith("\n") and not report.exists()
    decisions = [json.loads(line) for line in text.splitlines()]
    assert len(decisions) >= 5 and [d["sample"] for d in decisions] == list(range(len(decisions)))


def test_a_full_disk_stops_the_per_sample_file_not_the_run(root, tmp_path, caplog):
    """The per-sample file on a full disk (/dev/full: every write fails with ENOSPC): the run
    goes on, its report counts every decision and says why the file stops."""
    samples = tmp_path / "report_samples.jsonl"
    samples.symlink_to("/dev/full")
    cfg = config(root, "source={type: digits_dvs, split: test, live: true, pace: false, limit: 3}")
    result = Runner(build_pipeline(cfg), samples_path=samples).run()
    assert result.report["samples"] >= 3 and len(result.outcomes) == 0
    assert "No space left on device" in result.report["samples_file_error"]
    assert "cannot write the per-sample outcomes" in caplog.text
