"""The wire format's frame kind (``frame.<stream>``) and the optional fields of heartbeats and
summaries: what they carry, what ``unpack`` refuses, and that subscribers who do not ask for
frames never see one. (Predictions and the rest of the schema: tests/test_subscriber.py.)"""

import time

import msgpack
import numpy as np
import pytest

from streamsnn import wire
from streamsnn.subscriber import Subscriber
from streamsnn.wire import WireError
from tests.test_subscriber import RawPublisher, drain, prediction


def frame(seq=1, stream="cam0", width=3, height=2, publisher="p1", **changes):
    on = np.arange(width * height).reshape(height, width)
    off = np.full((height, width), 300)  # above 255: sent as 255
    payload = wire.frame_payload(stream, publisher, seq, time.time(), (10, 90), 2, 42, on, off, run=123)
    for name, value in changes.items():
        payload[wire.FRAME.index(name)] = value
    return wire.pack(wire.frame_topic(stream), payload)


def test_a_frame_carries_its_image_and_is_checked():
    topic, payload = wire.unpack(frame())
    data = wire.as_dict(payload)
    assert topic == "frame.cam0" and data["kind"] == "frame" and list(data) == list(wire.FRAME)
    assert (data["width"], data["height"], data["scale"], data["events"]) == (3, 2, 2, 42)
    assert list(data["on"]) == [0, 1, 2, 3, 4, 5] and list(data["off"]) == [255] * 6
    assert (data["t_start_us"], data["t_end_us"]) == (10, 90) and wire.run_of(payload) == 123
    with pytest.raises(WireError, match=r"on holds 5 bytes, not 3×2 = 6"):
        wire.unpack(frame(on=b"\0" * 5))
    with pytest.raises(WireError, match=r"width is 0, not in 1\.\.1024"):
        wire.unpack(frame(width=0))
    with pytest.raises(WireError, match="off is 'x', not bytes"):
        wire.unpack(frame(off="x"))
    with pytest.raises(WireError, match="frame has 8 fields, lacks width, height, scale"):
        wire.unpack([b"frame.cam0", msgpack.packb(msgpack.unpackb(frame()[1])[:8])])


def test_heartbeats_may_carry_the_threshold_and_the_run_counters():
    body = {
        "last_seq": {},
        "published": 0,
        "subscribers": 0,
        "threshold": 0.9,
        "counters": {"late_events": 2},
    }
    _, payload = wire.unpack(wire.pack("hb", wire.control_payload("heartbeat", "p", 1, time.time(), body)))
    assert wire.as_dict(payload)["threshold"] == 0.9 and wire.as_dict(payload)["counters"] == {
        "late_events": 2
    }
    body["threshold"] = "high"
    with pytest.raises(WireError, match="threshold is 'high', not a number or nil"):
        wire.unpack(wire.pack("hb", wire.control_payload("heartbeat", "p", 1, time.time(), body)))


def test_frames_reach_only_subscribers_that_ask_for_them():
    pub = RawPublisher()
    plain = Subscriber(pub.endpoint)  # the default topics: predictions (and hb, summary)
    framed = Subscriber(pub.endpoint, topics=["pred.", "frame."])
    try:
        pub.joined(plain)
        pub.joined(framed)
        for seq in (1, 2):
            pub.sock.send_multipart(frame(seq))
            pub.sock.send_multipart(prediction(seq))
        got_plain, got_framed = drain(plain), drain(framed)
        assert [m.kind for m in got_plain] == ["prediction", "prediction"]
        assert [m.kind for m in got_framed] == ["frame", "prediction", "frame", "prediction"]
        assert got_framed[0].stream == "cam0" and got_framed[0].data["events"] == 42
        assert plain.stats["malformed"] == framed.stats["malformed"] == framed.stats["gaps"] == 0
    finally:
        plain.close()
        framed.close()
        pub.close()
