"""The zmq sink's event frames (``frame.<stream>``) with real sockets on 127.0.0.1: no frame work
without a subscriber to them, the image's counts, the rate bound, and a live pipeline's frames,
threshold and counters on the feed."""

import base64
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from streamsnn.config import load_pipeline
from streamsnn.events import EVENT_DTYPE, Packet, Sensor
from streamsnn.prediction import Prediction
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sinks.zeromq import FramesConfig, ZmqSink, ZmqSinkConfig
from streamsnn.subscriber import Subscriber

SENSOR = Sensor("digits_dvs", 34, 34)


def packet(xs, ys, ps, t0=0, stream="cam0"):
    events = np.zeros(len(xs), EVENT_DTYPE)
    events["t"] = t0 + np.arange(len(xs))
    events["x"], events["y"], events["p"] = xs, ys, ps
    return Packet(stream, None, events, end_of_sample=False)


def until(check, timeout_s=30.0, step=None):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        if step:
            step()
        time.sleep(0.01)


def frames_sink(rate_hz=100.0, size=17):
    return ZmqSink(
        ZmqSinkConfig(address="tcp://127.0.0.1:*", frames=FramesConfig(rate_hz=rate_hz, size=size))
    )


def test_no_frame_is_built_while_no_one_subscribes_to_frames():
    sink = frames_sink()
    predictions_only = Subscriber(sink.endpoint)
    try:
        until(lambda: sink.subscribers >= 1)  # a subscriber is there, but not to frames
        for i in range(200):
            sink.write_packet(packet([1, 2], [3, 4], [1, 0], t0=i * 10), SENSOR)
        assert (sink.frame_subscribers, sink.frame_packets, sink.frames_sent) == (0, 0, 0)
        framed = Subscriber(sink.endpoint, topics=["frame."])
        until(lambda: sink.frame_subscribers == 1)
        got = []

        def write_and_read():
            sink.write_packet(packet([1], [1], [1]), SENSOR)
            msg = framed.receive(timeout_s=0.01)
            if msg is not None:
                got.append(msg)

        until(lambda: got, step=write_and_read)
        assert got[0].kind == "frame" and sink.frame_packets > 0
        framed.close()
        until(lambda: sink.frame_subscribers == 0)
        built = sink.frame_packets
        for _ in range(50):
            sink.write_packet(packet([1], [1], [1]), SENSOR)
        assert sink.frame_packets == built  # the last one left: no frame work again
    finally:
        predictions_only.close()
        sink.close()


def test_a_frame_counts_on_and_off_events_per_block_at_a_bounded_rate():
    sink = frames_sink(rate_hz=5.0, size=17)  # 34×34 → 17×17, 2×2 pixels per block
    sub = Subscriber(sink.endpoint, topics=["frame."])
    try:
        until(lambda: sink.frame_subscribers == 1)
        sink.write_packet(
            packet([0, 1, 1, 33, 40], [0, 1, 0, 33, 2], [1, 1, 1, 0, 1]), SENSOR
        )  # x=40: outside
        msg = sub.receive(timeout_s=10)
        data = msg.data
        assert (data["width"], data["height"], data["scale"], data["events"]) == (17, 17, 2, 4)
        on, off = np.frombuffer(data["on"], np.uint8), np.frombuffer(data["off"], np.uint8)
        assert on[0] == 3 and on.sum() == 3 and off[16 * 17 + 16] == 1 and off.sum() == 1
        # as fast as it can write, the sink sends at most rate_hz frames a second (per stream)
        start, sent = time.monotonic(), sink.frames_sent
        while time.monotonic() - start < 1.0:
            sink.write_packet(packet([5], [5], [0]), SENSOR)
        elapsed = time.monotonic() - start
        assert 1 <= sink.frames_sent - sent <= elapsed * 5 + 1
    finally:
        sub.close()
        sink.close()


def test_a_live_pipeline_publishes_frames_its_threshold_and_its_counters(root):
    cfg = load_pipeline(
        root / "pipelines" / "udp_live.yaml",
        [
            "source={type: digits_dvs, live: true, scenario: back_to_back, limit: 4}",
            "sinks=[{type: zmq, address: 'tcp://127.0.0.1:*', wait_for_subscribers: 1, heartbeat_s: 0.2, "
            "frames: {rate_hz: 20, size: 64}}]",
            "report.path=null",
            "runtime.progress=false",
        ],
    )
    pipe = build_pipeline(cfg)
    sub = Subscriber(pipe.sinks[0].endpoint, topics=["pred.", "frame."], heartbeats=True)
    messages = []

    def collect():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (messages and messages[-1].kind == "summary"):
            msg = sub.receive(timeout_s=0.2)
            if msg is not None:
                messages.append(msg)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    run_pipeline(pipe)
    reader.join(130)
    sub.close()
    kinds = {m.kind for m in messages}
    assert kinds == {"prediction", "frame", "heartbeat", "summary"}, kinds
    frames = [m.data for m in messages if m.kind == "frame"]
    streams = {m.stream for m in messages if m.kind == "prediction"}
    assert {f["stream"] for f in frames} == streams and all(f["width"] == 34 == f["height"] for f in frames)
    assert sum(f["events"] for f in frames) > 0
    controls = [m.data for m in messages if m.kind in ("heartbeat", "summary")]
    assert all(c["threshold"] == 0.9 for c in controls)
    summary = controls[-1]
    assert set(summary["counters"]) == {
        "dropped_slices",
        "skipped_slices",
        "late_events",
        "out_of_bounds_events",
    }
    assert summary["counters"]["dropped_slices"] == summary["report"]["dropped_slices"]


@pytest.mark.parametrize("as_json", [False, True])
def test_subscribe_prints_frames_as_lines_and_as_json(as_json):
    sink = frames_sink(rate_hz=50)
    cmd = [sys.executable, "-m", "streamsnn.cli", "subscribe", sink.endpoint, "--topic", "frame."]
    cmd += ["--topic", "pred.", "--count", "1", *(["--json"] if as_json else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: sink.frame_subscribers == 1 and sink.subscribers == 1)
        until(
            lambda: sink.frames_sent >= 3,
            step=lambda: sink.write_packet(packet([0, 1], [0, 0], [1, 0]), SENSOR),
        )
        sink.write(Prediction("cam0", 0, 1, 0, 20_000, 4, 0.97, [0.0] * 10, None, True, "confident"))
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        sink.close()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) >= 2 and "Traceback" not in err
    if as_json:
        frames = [json.loads(line) for line in lines if json.loads(line)["kind"] == "frame"]
        assert frames and base64.b64decode(frames[0]["on"])[0] >= 1 and frames[0]["topic"] == "frame.cam0"
    else:
        assert lines[0].startswith("cam0 frame: ") and "17×17 (blocks of 2×2 pixels)" in lines[0]
