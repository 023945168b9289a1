"""The zmq sink with real sockets on 127.0.0.1: complete offline delivery, stalled and killed
subscribers, late joiners, heartbeats, configuration errors."""

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import zmq

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.prediction import Prediction
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sinks import Sink
from streamsnn.sinks.zeromq import ZmqSink, ZmqSinkConfig
from streamsnn.subscriber import Subscriber

ZMQ = "{type: zmq, address: 'tcp://127.0.0.1:*'"


def replay(root, *overrides, base="digits_dvs.yaml"):
    return load_pipeline(
        root / "pipelines" / base,
        ["runtime.progress=false", "report.path=null", "runtime.full_t=false", *overrides],
    )


class Collector(threading.Thread):
    """A Subscriber in a thread, keeping every message until the summary. With ``stall`` it stops
    reading right after the first message until ``resume`` is set; ``idle`` is set whenever it
    finds nothing to read."""

    def __init__(self, endpoint, stall=False, **options):
        super().__init__(daemon=True)
        self.sub = Subscriber(endpoint, **options)
        self.stall, self.resume, self.idle = stall, threading.Event(), threading.Event()
        self.messages, self.summary = [], None

    def run(self):
        deadline = time.monotonic() + 120
        while self.summary is None and time.monotonic() < deadline:
            msg = self.sub.receive(timeout_s=0.2)
            if msg is None:
                self.idle.set()
                continue
            self.idle.clear()
            if self.stall:
                self.resume.wait(60)
                self.stall = False
            if msg.kind == "summary":
                self.summary = msg
            else:
                self.messages.append(msg)
        self.sub.close()


def test_offline_replay_reaches_a_subscriber_completely_and_in_order(root, tmp_path):
    out = tmp_path / "preds.jsonl"
    cfg = replay(
        root,
        "source.limit=40",
        "runtime.batch_size=8",
        f"sinks=[{ZMQ}, hwm: 0, wait_for_subscribers: 1, top_k: 3}}, {{type: jsonl, path: '{out}'}}]",
    )
    pipe = build_pipeline(cfg)
    sink = pipe.sinks[0]
    assert sink.endpoint.startswith("tcp://127.0.0.1:")  # loopback by default
    collector = Collector(sink.endpoint, hwm=0)
    collector.start()
    result = run_pipeline(pipe)  # starts once the subscription has arrived
    collector.join(30)
    expected = [json.loads(line) for line in out.read_text().splitlines()]
    got = [m.data for m in collector.messages]
    assert len(got) == len(expected) > 40
    assert [g["seq"] for g in got] == list(range(1, len(got) + 1))  # one stream: one topic, no gap
    keys = ("sample", "step", "class", "final", "reason", "label", "t_end_us")
    assert [[g[k] for k in keys] for g in got] == [[e[k] for k in keys] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["confidence"] == pytest.approx(e["confidence"], abs=1e-6)  # (JSONL rounds to 6 digits)
        best = sorted(range(10), key=e["probs"].__getitem__, reverse=True)[:3]
        assert [c for c, _ in g["top_k"]] == best and g["probs"] is None
        assert g["v"] == 1 and g["publisher"] == sink.publisher and g["emit_time"] >= e["emit_time"]
    summary = collector.summary.data
    assert summary["published"] == len(got) + sink.heartbeats  # the summary itself is not counted
    assert summary["last_seq"] == {"pred.digits-dvs/test": len(got)}
    assert summary["report"]["samples"] == result.report["samples"] == 40
    assert summary["report"]["accuracy"] == result.report["accuracy"]
    assert collector.sub.stats["gaps"] == 0 and collector.sub.stats["missed"] == 0


class Resume(Sink):
    """A sink that, once the run is over (``finish``), lets a stalled collector read again and
    waits until it has read what its queues kept; the zmq sink after it then sends the summary."""

    def __init__(self, collector):
        self.collector = collector

    def write(self, pred):
        pass

    def finish(self, report):
        self.collector.idle.clear()
        self.collector.resume.set()
        assert self.collector.idle.wait(30)


def test_a_subscriber_that_stops_reading_costs_the_pipeline_nothing(root):
    args = (
        "source.limit=180",
        "policy.exit={type: fixed, steps: 16}",
        f"sinks=[{ZMQ}, hwm: 100, wait_for_subscribers: 1}}]",
    )
    wall = {}
    for case in ("reading", "stalled", "reading", "stalled"):  # interleaved: same machine state
        pipe = build_pipeline(replay(root, *args, base="digits_frames.yaml"))  # 2,880 predictions
        collector = Collector(pipe.sinks[0].endpoint, stall=case == "stalled", hwm=100)
        collector.start()
        pipe.sinks.insert(0, Resume(collector))
        result = run_pipeline(pipe)
        collector.join(30)
        assert result.report["samples"] == 180 and collector.summary is not None
        wall.setdefault(case, []).append(result.report["wall_s"])
        published = collector.summary.data["last_seq"]["pred.digits-frames/test"]
        assert len(collector.messages) + collector.sub.stats["missed"] == published == 180 * 16
    assert min(wall["stalled"]) < 1.5 * min(wall["reading"]) + 0.5, wall


def test_a_stalled_subscriber_sees_exactly_what_it_lost():
    """More than the zmq queues (100 each side) and loopback's socket buffers (several MB, ~20,000
    messages here) hold: the subscriber that stopped reading loses messages, and counts each."""
    sink = ZmqSink(ZmqSinkConfig(address="tcp://127.0.0.1:*", hwm=100, heartbeat_s=0.2, linger_s=10))
    stalled = Collector(sink.endpoint, stall=True, hwm=100)
    stalled.start()
    n = 60_000
    try:
        while sink.subscribers < 1:
            time.sleep(0.01)
        for step in range(1, n + 1):
            predict(sink, "cam0", step, final=step % 15 == 0)
        stalled.idle.clear()
        stalled.resume.set()
        assert stalled.idle.wait(30)  # it has read what its queues kept
    finally:
        sink.close()
    stalled.join(30)
    stats = stalled.sub.stats
    assert stalled.summary.data["last_seq"] == {"pred.cam0": n}
    assert stats["gaps"] >= 1 and 0 < stats["missed"] < n
    assert len(stalled.messages) + stats["missed"] == n  # every loss noticed, none counted twice
    seqs = [m.data["seq"] for m in stalled.messages]
    assert seqs == sorted(seqs) and sum(m.gap for m in stalled.messages) <= stats["missed"]


def test_a_killed_subscriber_leaves_the_pipeline_running(root, tmp_path):
    out = tmp_path / "preds.jsonl"
    cfg = replay(
        root,
        "source.limit=60",
        "runtime.batch_size=4",
        "runtime.realtime=true",  # 15 slices of 20 ms per digit: the run lasts a few seconds
        f"sinks=[{ZMQ}, wait_for_subscribers: 1}}, {{type: jsonl, path: '{out}'}}]",
    )
    pipe = build_pipeline(cfg)
    cli = [sys.executable, "-m", "streamsnn.cli", "subscribe", pipe.sinks[0].endpoint, "--json"]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []

    def read_then_die():
        for line in proc.stdout:
            lines.append(json.loads(line))
            if len(lines) == 20:
                proc.kill()  # mid-stream, without a goodbye
                return

    reader = threading.Thread(target=read_then_die, daemon=True)
    reader.start()
    result = run_pipeline(pipe)
    reader.join(10)
    assert proc.wait(10) != 0 and len(lines) == 20
    assert [line["seq"] for line in lines] == list(range(1, 21))
    assert result.report["samples"] == 60  # the run went on to the end
    assert len(out.read_text().splitlines()) == pipe.sinks[0].seq["pred.digits-dvs/test"]


def predict(sink, stream, step, final):
    sink.write(Prediction(stream, 0, step, 0, step * 20_000, step % 10, 0.9, [0.1] * 10, final=final))


def test_a_late_joiner_gets_the_last_final_per_stream_then_the_live_feed():
    sink = ZmqSink(ZmqSinkConfig(address="tcp://127.0.0.1:*", heartbeat_s=0.1))
    try:
        with Subscriber(sink.endpoint) as early:
            while sink.subscribers < 1:
                time.sleep(0.01)
            predict(sink, "cam0", 1, final=False)
            predict(sink, "cam0", 2, final=True)  # cam0's last value
            predict(sink, "cam0", 3, final=False)  # newer, but not final
            predict(sink, "cam1", 1, final=True)
            predict(sink, "cam1", 2, final=True)  # cam1's last value
            with Subscriber(sink.endpoint) as late:
                first = [late.receive(timeout_s=5) for _ in range(2)]
                assert sorted((m.stream, m.data["step"], m.cached) for m in first) == [
                    ("cam0", 2, True),
                    ("cam1", 2, True),
                ]
                predict(sink, "cam0", 4, final=True)
                live = late.receive(timeout_s=5)
                assert (live.stream, live.data["step"], live.cached, live.gap) == ("cam0", 4, False, 0)
                assert late.stats["missed"] == 0
            seen = []
            while (msg := early.receive(timeout_s=0.5)) is not None:
                seen.append((msg.stream, msg.data["step"]))
            # the early subscriber got everything once: the cache's repeats were dropped
            assert seen == [("cam0", 1), ("cam0", 2), ("cam0", 3), ("cam1", 1), ("cam1", 2), ("cam0", 4)]
            assert early.stats["duplicates"] == 2 and early.stats["missed"] == 0
    finally:
        sink.close()


def test_heartbeats_carry_the_newest_sequence_numbers():
    sink = ZmqSink(ZmqSinkConfig(address="tcp://127.0.0.1:*", heartbeat_s=0.1))
    try:
        with Subscriber(sink.endpoint, heartbeats=True) as sub:
            while sink.subscribers < 1:
                time.sleep(0.01)
            predict(sink, "cam0", 1, final=True)
            beats, started = [], time.monotonic()
            while len(beats) < 5:
                msg = sub.receive(timeout_s=2)
                assert msg is not None, "no heartbeat"
                if msg.kind == "heartbeat":
                    beats.append(msg)
            elapsed = time.monotonic() - started
        assert 0.25 < elapsed < 2.0  # about every 0.1 s
        assert beats[-1].data["last_seq"] == {"pred.cam0": 1} and beats[-1].data["subscribers"] == 1
        assert [b.data["seq"] for b in beats] == list(range(beats[0].data["seq"], beats[0].data["seq"] + 5))
    finally:
        sink.close()


def test_zmq_sink_configuration_errors(root):
    blocker = zmq.Context.instance().socket(zmq.PUB)
    blocker.bind("tcp://127.0.0.1:*")
    taken = blocker.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        with pytest.raises(ConfigError, match=rf"sinks\[0\] \(zmq\): cannot bind .*'{taken}'"):
            build_pipeline(replay(root, f"sinks=[{{type: zmq, address: '{taken}'}}]"))
    finally:
        blocker.close(linger=0)
    with pytest.raises(ConfigError, match=r"sinks\.0\.colour: unknown key"):
        replay(root, "sinks=[{type: zmq, colour: red}]")
    with pytest.raises(ConfigError, match=r"sinks\.0\.hwm: .*greater than or equal to 0"):
        replay(root, "sinks=[{type: zmq, hwm: -1}]")
    pipe = build_pipeline(
        replay(root, f"sinks=[{ZMQ}, wait_for_subscribers: 1, wait_timeout_s: 0.3}}]", "source.limit=2")
    )
    with pytest.raises(TimeoutError, match=r"0 of 1 subscriber\(s\) on tcp://127\.0\.0\.1:\d+ after 0\.3 s"):
        run_pipeline(pipe)


def test_a_subscriber_started_before_the_publisher_counts_every_message_it_did_not_get():
    """The subscriber waits on an address before the sink binds it; the sink publishes at once
    (ZeroMQ drops what comes before the subscription), then once subscribed: every message of
    the run is either received or counted missed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    collector = Collector(address, silence_s=0.2)
    sink = ZmqSink(ZmqSinkConfig(address=address, heartbeat_s=0.1))
    try:
        for step in range(1, 31):  # before the subscription can have arrived
            predict(sink, "cam0", step, final=step % 5 == 0)
        deadline = time.monotonic() + 30
        while sink.subscribers < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        for step in range(31, 61):
            predict(sink, "cam0", step, final=step % 5 == 0)
        collector.start()
    finally:
        sink.close()
    collector.join(60)
    assert collector.summary is not None and collector.summary.data["last_seq"] == {"pred.cam0": 60}
    live = [m for m in collector.messages if not m.cached]
    stats = collector.sub.stats
    assert len(live) + stats["missed"] == 60 and stats["reconnects"] == 0
    seqs = [m.data["seq"] for m in live]
    assert seqs == list(range(seqs[0], 61)) and stats["missed"] == seqs[0] - 1
