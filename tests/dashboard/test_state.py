"""The dashboard's store: what it keeps per stream is bounded however long the feed runs, and a
new run replaces the old one's summary."""

import json
import time

from streamsnn import wire
from streamsnn.dashboard.state import FINALS_KEPT, LATENCIES_KEPT, MAX_STREAMS, TRACE_KEPT, DashboardState
from streamsnn.prediction import Prediction
from streamsnn.subscriber import Message

STATS = {"gaps": 0, "malformed": 0}


def message(stream, sample, step, final, seq, label=None, run=1, cls=3):
    probs = [0.0] * 10
    probs[cls] = 0.95
    pred = Prediction(
        stream, sample, step, 0, 20_000, cls, 0.95, probs, label=label, final=final, reason="confident"
    )
    pred.e2e_latency_ms = float(seq % 7)
    payload = wire.prediction_payload(pred, "p", seq, time.time(), run=run)
    return Message(wire.prediction_topic(stream), payload)


def control(kind, body, run=1):
    body = {"last_seq": {}, "published": 0, **body, "run": run}
    return Message(kind, wire.control_payload(kind, "p", 1, time.time(), body))


def test_what_a_long_feed_leaves_is_bounded():
    state = DashboardState("tcp://127.0.0.1:1")
    seq = 0
    for sample in range(300):
        for step in range(1, 11):
            seq += 1
            state.feed(message("cam0", sample, step, step == 10, seq, label=3 if sample % 2 else 4), STATS)
    for step in range(1, TRACE_KEPT + 100):  # a decision that never comes
        seq += 1
        state.feed(message("cam0", 300, step, False, seq), STATS)
    snap = state.snapshot()
    cam = snap["streams"]["cam0"]
    assert len(cam["finals"]) == FINALS_KEPT and cam["finals"][0]["sample"] == 299
    assert (cam["decisions"], cam["labelled"], cam["right"]) == (300, 300, 150)
    assert cam["finals"][0]["correct"] is True and cam["finals"][1]["correct"] is False
    assert len(cam["trace"]) == TRACE_KEPT and cam["trace"][-1][0] == TRACE_KEPT + 99
    assert cam["decided"]["sample"] == 299 and cam["decided"]["exit_step"] == 10
    assert [p[0] for p in cam["decided"]["trace"]] == list(range(1, 11))
    e2e = snap["latency"]["e2e_latency_ms"]
    assert e2e["n"] == LATENCIES_KEPT and sum(e2e["bins"]) == LATENCIES_KEPT and e2e["max"] == 6.0
    json.dumps(snap)  # plain JSON types only
    for i in range(MAX_STREAMS + 5):
        state.feed(message(f"s{i}", 0, 1, False, 1), STATS)
    assert (
        len(state.snapshot()["streams"]) == MAX_STREAMS
        and state.snapshot()["health"]["streams_not_shown"] == 6
    )


def test_heartbeats_summaries_and_a_new_run():
    state = DashboardState("tcp://127.0.0.1:1")
    state.feed(
        control("heartbeat", {"subscribers": 1, "threshold": 0.8, "counters": {"late_events": 4}}), STATS
    )
    state.feed(control("summary", {"report": {"samples": 3}}), {"gaps": 2})
    snap = state.snapshot()
    assert snap["threshold"] == 0.8 and snap["health"]["late_events"] == 4 and snap["health"]["gaps"] == 2
    assert snap["summary"] == {"samples": 3}
    state.feed(message("cam0", 0, 1, False, 1, run=2), STATS)  # the publisher restarted
    assert state.snapshot()["summary"] is None and state.snapshot()["run"] == 2
