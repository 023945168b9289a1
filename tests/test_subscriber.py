"""The Subscriber against hand-made publishers on 127.0.0.1: gaps, lag, bad frames, newer schema
versions, restarts. (The publisher side and full pipelines: tests/sinks/test_zeromq.py.)"""

import logging
import socket
import time

import msgpack
import pytest
import zmq

from streamsnn import wire
from streamsnn.prediction import Prediction
from streamsnn.subscriber import LagError, Subscriber
from streamsnn.wire import NewerSchemaError, WireError


def prediction(seq, stream="cam0", final=False, publisher="p1", emit_time=None, extra=()):
    pred = Prediction(stream, 0, seq, 0, 20_000 * seq, 3, 0.9, [0.1] * 10, final=final)
    payload = wire.prediction_payload(pred, publisher, seq, emit_time or time.time())
    return wire.pack(wire.prediction_topic(stream), payload + list(extra))


def heartbeat(seq, last_seq, publisher="p1"):
    body = {"last_seq": last_seq, "published": 0, "subscribers": 1}
    return wire.pack(
        wire.HEARTBEAT_TOPIC, wire.control_payload("heartbeat", publisher, seq, time.time(), body)
    )


class RawPublisher:
    """A bare PUB socket on a free loopback port, sending whatever frames a test gives it."""

    def __init__(self, port=None):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(f"tcp://127.0.0.1:{port or '*'}")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def joined(self, sub, publisher="p1"):
        """Send heartbeats until ``sub`` receives one (the subscription has arrived)."""
        sub.heartbeats = True
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.sock.send_multipart(heartbeat(1, {}, publisher=publisher))
            if sub.receive(timeout_s=0.05) is not None:
                break
        else:
            raise AssertionError("the subscriber never joined")
        while sub.receive(timeout_s=0.1) is not None:
            pass
        sub.heartbeats = False

    def close(self):
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def pub():
    p = RawPublisher()
    yield p
    p.close()


def drain(sub, timeout_s=0.5):
    out = []
    while (msg := sub.receive(timeout_s=timeout_s)) is not None:
        out.append(msg)
    return out


def test_gaps_in_the_sequence_and_at_the_tail_are_reported(pub, caplog):
    with Subscriber(pub.endpoint) as sub:
        pub.joined(sub)
        for seq in (1, 2, 5, 6):
            pub.sock.send_multipart(prediction(seq))
        pub.sock.send_multipart(heartbeat(1, {"pred.cam0": 9}))  # 7, 8, 9 never came
        got = drain(sub)
    assert [(m.data["seq"], m.gap) for m in got] == [(1, 0), (2, 0), (5, 2), (6, 0)]
    assert sub.stats["gaps"] == 2 and sub.stats["missed"] == 2 + 3
    assert "pred.cam0: 2 message(s) missed (seq 3-4)" in caplog.text
    assert "pred.cam0: 3 message(s) missed (seq 7-9)" in caplog.text


def test_malformed_frames_and_newer_schemas_are_clear_errors_and_it_keeps_going(pub, caplog):
    newer = wire.pack("pred.cam0", [2, *msgpack.unpackb(prediction(1)[1])[1:]])
    bad = [
        [b"pred.cam0", b"\xc1 not msgpack"],
        [b"pred.cam0", msgpack.packb([1, 2, 3])],
        [b"pred.cam0"],
        [b"pred.cam0", msgpack.packb({"v": 1, "kind": "prediction"})],
        [b"pred.cam0", msgpack.packb([1, "prediction", "p1", 1, time.time(), "cam0"])],
        newer,
        newer,
    ]
    with Subscriber(pub.endpoint) as sub:
        pub.joined(sub)
        for frames in [*bad, prediction(1)]:
            pub.sock.send_multipart(frames)
        got = drain(sub)
        assert [m.data["seq"] for m in got] == [1]  # the good one still came through
        assert sub.stats["malformed"] == 5 and sub.stats["newer_schema"] == 2
        text = caplog.text
        assert "payload is not msgpack" in text and "payload is 3 fields, not an array of at least 5" in text
        assert "expected 2 frames [topic, payload], got 1" in text
        assert "payload is a dict, not an array" in text
        assert "prediction has 6 fields, lacks sample, step, t_start_us" in text
        assert text.count("schema version 2 is newer than this subscriber's (1); upgrade streamsnn") == 1

        sub.on_error = "raise"
        pub.sock.send_multipart(newer)
        with pytest.raises(NewerSchemaError, match="schema version 2"):
            sub.receive(timeout_s=2)
        pub.sock.send_multipart(bad[0])
        with pytest.raises(WireError, match="not msgpack"):
            sub.receive(timeout_s=2)
        pub.sock.send_multipart(prediction(2))
        assert sub.receive(timeout_s=2).data["seq"] == 2  # still usable after raising


def test_lag_beyond_the_bound_is_counted_logged_once_or_raised(pub, caplog):
    with Subscriber(pub.endpoint, max_lag_s=0.5) as sub:
        pub.joined(sub)
        old = time.time() - 2.0
        for seq in (1, 2, 3):
            pub.sock.send_multipart(prediction(seq, emit_time=old))
        got = drain(sub)
        assert [m.lag_s > 1.9 for m in got] == [True] * 3
        assert sub.stats["lagging"] == 3 and caplog.text.count("behind the publisher") == 1
        sub.on_lag = "raise"
        pub.sock.send_multipart(prediction(4, emit_time=old))
        with pytest.raises(LagError, match="behind the publisher"):
            sub.receive(timeout_s=2)


def test_a_restarted_publisher_is_followed_on_the_same_address(caplog):
    caplog.set_level(logging.INFO, logger="streamsnn.subscriber")
    first = RawPublisher()
    port = int(first.endpoint.rsplit(":", 1)[1])
    with Subscriber(first.endpoint, silence_s=1.0) as sub:
        first.joined(sub, "run-1")
        first.sock.send_multipart(prediction(1, publisher="run-1"))
        first.sock.send_multipart(prediction(2, publisher="run-1"))
        assert [m.data["seq"] for m in drain(sub)] == [1, 2]
        first.close()
        second = RawPublisher(port)  # a new run on the same port: seq starts at 1 again
        try:
            second.joined(sub, "run-2")
            second.sock.send_multipart(prediction(1, publisher="run-2"))
            got = drain(sub)
        finally:
            second.close()
    assert [(m.data["publisher"], m.data["seq"], m.gap) for m in got] == [("run-2", 1, 0)]
    assert sub.stats["publisher_restarts"] == 1 and sub.stats["duplicates"] == 0
    assert "new publisher run-2" in caplog.text


def test_silence_makes_a_fresh_socket_and_data_flows_again(pub, caplog):
    with Subscriber(pub.endpoint, silence_s=0.3) as sub:
        pub.joined(sub)
        assert sub.receive(timeout_s=1.0) is None  # nothing, not even heartbeats
        assert sub.stats["reconnects"] >= 1 and "reconnecting" in caplog.text
        pub.joined(sub)
        pub.sock.send_multipart(prediction(1))
        assert sub.receive(timeout_s=2).data["seq"] == 1


def test_final_only_and_topic_prefixes(pub):
    with Subscriber(pub.endpoint, topics=["pred.cam1"], final_only=True) as sub:
        pub.joined(sub)
        for seq in (1, 2, 3):
            pub.sock.send_multipart(prediction(seq, stream="cam0", final=True))
            pub.sock.send_multipart(prediction(seq, stream="cam1", final=seq == 3))
        got = drain(sub)
    assert [(m.stream, m.data["seq"]) for m in got] == [("cam1", 3)]
    assert sub.stats["predictions"] == 3 and sub.stats["gaps"] == 0  # non-final ones counted, not shown


def test_unpack_checks_the_schema_and_names_the_fields():
    topic, payload = wire.unpack(prediction(7, extra=["a field of a later 1.x"]))
    data = wire.as_dict(payload)  # the appended field is ignored
    assert topic == "pred.cam0" and data["seq"] == 7 and data["probs"] == [0.1] * 10
    assert list(data) == [*wire.HEADER, *wire.PREDICTION_FIELDS] and data["class"] == 3
    with pytest.raises(WireError, match="unknown kind 'weather'"):
        wire.unpack([b"x", msgpack.packb([1, "weather", "p", 1, 0.0])])
    with pytest.raises(WireError, match=r"schema version \(field 0\) is '1', not an integer"):
        wire.unpack([b"x", msgpack.packb(["1", "heartbeat", "p", 1, 0.0, {}])])
    with pytest.raises(WireError, match="heartbeat has no map of fields after the header"):
        wire.unpack([b"x", msgpack.packb([1, "heartbeat", "p", 1, 0.0])])
    with pytest.raises(WireError, match="topic is not UTF-8"):
        wire.unpack([b"\xff\xfe", msgpack.packb([])])
    top = wire.prediction_payload(
        Prediction("c", 0, 1, 0, 1, 2, 0.5, [0.1, 0.2, 0.5, 0.2]), "p", 1, 0.0, top_k=2
    )
    named = wire.as_dict(top)
    assert named["probs"] is None and named["top_k"] == [[2, 0.5], [1, 0.2]]


def with_fields(**changes):
    """The frames of a prediction of cam0 (seq 1) with fields replaced by name."""
    topic, packed = prediction(1)
    payload = msgpack.unpackb(packed)
    for name, value in changes.items():
        payload[wire.PREDICTION.index(name)] = value
    return [topic, msgpack.packb(payload)]


def control(kind, **body):
    """A heartbeat's or summary's frames with ``body`` as its map (None drops a field)."""
    full = {"last_seq": {}, "published": 0, "subscribers": 1} if kind == "heartbeat" else {}
    full |= {"last_seq": {}, "published": 0, "report": {}} if kind == "summary" else {}
    full |= body
    payload = [1, kind, "p1", 1, time.time(), {k: v for k, v in full.items() if v is not None}]
    return wire.pack(wire.HEARTBEAT_TOPIC if kind == "heartbeat" else wire.SUMMARY_TOPIC, payload)


# well-framed messages with a field of the wrong type or value, and what the error says
WRONG_FIELDS = [
    (with_fields(seq="abc"), "pred.cam0: seq is 'abc', not an integer"),
    (with_fields(emit_time="now"), "pred.cam0: emit_time is 'now', not a number"),
    (with_fields(publisher=[1, 2]), "pred.cam0: publisher is [1, 2], not a string"),
    (heartbeat(1, {"pred.cam0": "x"}), "hb: last_seq maps 'pred.cam0' to 'x', not a topic to a seq"),
    (control("heartbeat", last_seq=[1, 2]), "hb: last_seq is [1, 2], not a map"),
    (with_fields(confidence="high"), "pred.cam0: confidence is 'high', not a number"),
    (control("summary", report="zz"), "summary: report is 'zz', not a map or nil"),
    (control("summary", published=None), "summary: summary lacks published"),
    (with_fields(seq=2**63), "pred.cam0: seq is 9223372036854775808, not in 1..2**63 - 1"),
    (with_fields(seq=0), "pred.cam0: seq is 0, not in 1..2**63 - 1"),
    (with_fields(seq=True), "pred.cam0: seq is True, not an integer"),
    (with_fields(emit_time=float("nan")), "pred.cam0: emit_time is nan, not a finite Unix time"),
    (with_fields(probs=[0.5, "a"]), "pred.cam0: probs holds [0.5, 'a'], not only numbers"),
    (
        with_fields(probs=None, top_k=[[1, "x"]]),
        "pred.cam0: top_k holds [1, 'x'], not a [class, probability]",
    ),
    (with_fields(probs=None, top_k=None), "pred.cam0: probs and top_k are both nil"),
    (with_fields(final="yes"), "pred.cam0: final is 'yes', not true or false"),
    (with_fields(label="3"), "pred.cam0: label is '3', not an integer or nil"),
    (with_fields(run="x"), "pred.cam0: run is 'x', not an integer or nil"),
    (control("heartbeat", run=1.5), "hb: run is 1.5, not an integer or nil"),
]


@pytest.mark.parametrize(("frames", "error"), WRONG_FIELDS)
def test_unpack_names_the_field_of_the_wrong_type(frames, error):
    with pytest.raises(WireError) as err:
        wire.unpack(frames)
    assert str(err.value).startswith(error)


def test_wrong_field_types_are_logged_counted_and_skipped(pub, caplog):
    """Each message of ``WRONG_FIELDS`` over a real socket: skipped with its reason, counted, and
    the valid predictions around them all delivered in order (none taken for a duplicate)."""
    with Subscriber(pub.endpoint, heartbeats=True) as sub:
        pub.joined(sub)
        for seq, (frames, _) in enumerate(WRONG_FIELDS, start=1):
            pub.sock.send_multipart(prediction(seq))
            pub.sock.send_multipart(frames)
        pub.sock.send_multipart(prediction(len(WRONG_FIELDS) + 1))
        got = drain(sub)
    assert [m.data["seq"] for m in got] == list(range(1, len(WRONG_FIELDS) + 2))
    assert all(isinstance(m.data["confidence"], float) for m in got)
    assert sub.stats["malformed"] == len(WRONG_FIELDS) and sub.stats["duplicates"] == 0
    assert sub.stats["gaps"] == sub.stats["seq_restarts"] == 0
    for _, error in WRONG_FIELDS:
        assert f"skipped a message: {error}" in caplog.text


def test_an_absurd_seq_does_not_poison_what_follows(pub, caplog):
    """A seq beyond int64 is malformed; one within it but far ahead (a faulty publisher) is
    followed, and the next live seq below it restarts the topic's tracking: nothing valid is
    dropped as a duplicate."""
    with Subscriber(pub.endpoint) as sub:
        pub.joined(sub)
        for seq in (1, 2**63, 2, 2**62, 3, 4):
            pub.sock.send_multipart(with_fields(seq=seq))
        got = drain(sub)
    assert [m.data["seq"] for m in got] == [1, 2, 2**62, 3, 4]
    assert sub.stats["malformed"] == 1 and sub.stats["duplicates"] == 0 and sub.stats["seq_restarts"] == 1
    assert f"pred.cam0: seq went back from {2**62} to 3 without a new run" in caplog.text


def test_an_older_publisher_restarted_with_a_fixed_id_is_followed_from_its_seq(pub):
    """A publisher that sends no run (older streamsnn) and restarts with the same id: its seq
    going back restarts the tracking; the cached last value of the new run is delivered."""
    old = [with_fields(seq=seq, run=None) for seq in (1, 2, 3)]
    with Subscriber(pub.endpoint) as sub:
        pub.joined(sub)
        for frames in [*old, *old[:2]]:
            pub.sock.send_multipart(frames)
        got = drain(sub)
    assert [m.data["seq"] for m in got] == [1, 2, 3, 1, 2]
    assert sub.stats["seq_restarts"] == 1 and sub.stats["duplicates"] == sub.stats["gaps"] == 0


def test_a_publisher_restarted_with_a_fixed_publisher_id_is_followed(caplog):
    """The real zmq sink with ``publisher_id`` fixed, stopped and started again on the same port:
    every prediction of the second run is delivered (its run differs), none dropped as a
    duplicate of the first run's."""
    from streamsnn.sinks.zeromq import ZmqSink, ZmqSinkConfig

    caplog.set_level(logging.INFO, logger="streamsnn.subscriber")

    def publish(sub, sink, steps):
        """Write ``steps`` once ``sub`` has (re)connected to ``sink`` (it has to be read meanwhile
        to reconnect); the kinds of the messages it got while waiting."""
        waited, deadline = [], time.monotonic() + 30
        while sink.subscribers < 1 and time.monotonic() < deadline:
            if (msg := sub.receive(timeout_s=0.01)) is not None:
                waited.append(msg.kind)
        for step in steps:
            sink.write(Prediction("cam0", 0, step, 0, step * 20_000, 3, 0.9, [0.1] * 10, final=step % 2 == 0))
        return waited

    first = ZmqSink(ZmqSinkConfig(address="tcp://127.0.0.1:*", publisher_id="cam-box"))
    endpoint = first.endpoint
    with Subscriber(endpoint) as sub:
        try:
            assert publish(sub, first, range(1, 6)) == []
            got = [sub.receive(timeout_s=5) for _ in range(5)]
        finally:
            first.close()
        second = ZmqSink(ZmqSinkConfig(address=endpoint, publisher_id="cam-box"))
        try:
            assert set(publish(sub, second, range(1, 4))) <= {"summary"}  # the first run's
            got += [m for m in drain(sub, timeout_s=1.0) if m.kind == "prediction"]
        finally:
            second.close()
    assert [(m.data["publisher"], m.data["seq"]) for m in got] == [
        ("cam-box", s) for s in (1, 2, 3, 4, 5, 1, 2, 3)
    ]
    assert got[0].data["run"] != got[-1].data["run"]
    assert sub.stats["publisher_restarts"] == 1 and sub.stats["duplicates"] == sub.stats["seq_restarts"] == 0
    assert "publisher cam-box restarted" in caplog.text


def run_prediction(seq, run, publisher="p1"):
    """A prediction of the publisher's run ``run`` (its start, µs)."""
    pred = Prediction("cam0", 0, seq, 0, 20_000 * seq, 3, 0.9, [0.1] * 10)
    return wire.pack("pred.cam0", wire.prediction_payload(pred, publisher, seq, time.time(), run=run))


def run_heartbeat(last_seq, run, publisher="p1"):
    body = {"last_seq": last_seq, "published": 0, "subscribers": 1, "run": run}
    return wire.pack(wire.HEARTBEAT_TOPIC, wire.control_payload("heartbeat", publisher, 1, time.time(), body))


def test_a_subscriber_there_before_the_run_counts_its_first_messages_as_missed(pub, caplog):
    """The publisher's run began after the subscriber started: its seq 1-3, sent before the
    subscription arrived, are a gap. A late joiner (the run began before it) counts none."""
    with Subscriber(pub.endpoint) as early:
        pub.joined(early)
        run = time.time_ns() // 1000  # the publisher starts now, after the subscriber
        for seq in (4, 5):
            pub.sock.send_multipart(run_prediction(seq, run))
        got = drain(early)
    assert [(m.data["seq"], m.gap) for m in got] == [(4, 3), (5, 0)]
    assert early.stats["gaps"] == 1 and early.stats["missed"] == 3
    assert "pred.cam0: 3 message(s) missed (seq 1-3)" in caplog.text

    with Subscriber(pub.endpoint) as heard_first:  # the first news of the topic is a heartbeat
        pub.joined(heard_first)
        run = time.time_ns() // 1000
        pub.sock.send_multipart(run_heartbeat({"pred.cam0": 2}, run))
        pub.sock.send_multipart(run_prediction(3, run))
        got = drain(heard_first)
    assert [(m.data["seq"], m.gap) for m in got] == [(3, 0)]
    assert heard_first.stats["gaps"] == 1 and heard_first.stats["missed"] == 2

    started_before = time.time_ns() // 1000 - 10_000_000  # a run 10 s old
    with Subscriber(pub.endpoint) as late:
        pub.joined(late)
        for seq in (40, 41):
            pub.sock.send_multipart(run_prediction(seq, started_before))
        pub.sock.send_multipart(run_heartbeat({"pred.cam0": 41}, started_before))
        got = drain(late)
    assert [(m.data["seq"], m.gap) for m in got] == [(40, 0), (41, 0)]
    assert late.stats["gaps"] == late.stats["missed"] == 0


def test_waiting_for_a_publisher_is_said_once_and_is_no_reconnect(caplog):
    """Nothing listens on the address yet: no reconnects, one line saying so; the publisher
    that comes later is heard."""
    with socket.socket() as probe:  # a free TCP port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with Subscriber(address, silence_s=0.1) as sub:
        assert sub.receive(timeout_s=0.8) is None
        assert sub.stats["reconnects"] == 0
        assert caplog.text.count("waiting for a publisher") == 1 and "reconnecting" not in caplog.text
        publisher = RawPublisher(port)
        try:
            publisher.joined(sub)
            publisher.sock.send_multipart(prediction(1))
            assert sub.receive(timeout_s=5).data["seq"] == 1
        finally:
            publisher.close()
