"""Live predictions over ZeroMQ: an XPUB socket publishing ``streamsnn.wire`` messages.

- **Never stalls the pipeline**: sends never block; a subscriber whose queue is full (``hwm``
  messages) loses messages, which it notices from the sequence numbers. A slow, stopped or dead
  subscriber costs the pipeline nothing.
- **Heartbeats** on ``hb`` every ``heartbeat_s`` (also while no prediction flows), carrying the
  newest sequence number per stream; a **summary** on ``summary`` at shutdown (the one message
  that waits, up to ``linger_s``, for a subscriber with a full queue).
- **Last-value cache**: XPUB sees every subscription (``XPUB_VERBOSER``); a new subscription gets
  the newest *final* prediction of every stream it matches at once (marked ``cached``), then the
  live feed. Subscribers that already had it drop the repeat (same publisher and seq).
- **Frames** (``frames: {rate_hz, size}``): downsampled ON/OFF count images of each stream's
  latest events on ``frame.<stream>`` (for ``streamsnn dashboard``), at most ``rate_hz`` per
  stream. Built only while someone subscribes to them (XPUB sees the subscriptions): without a
  subscriber ``write_packet`` returns at once.
- **Ready handshake**: with ``wait_for_subscribers: n`` the run starts only once n subscriptions
  to predictions have arrived (subscribing is what makes a SUB receive, so nothing published
  afterwards is lost to the slow-joiner problem); ``hwm: 0`` (no limit) then lets an offline
  replay deliver every message to a subscriber that keeps up on average.

Heartbeats and the summary also carry the exit policy's ``threshold`` and, when the publisher runs
the pipeline itself, its running ``counters`` (dropped slices, late and out-of-bounds events).

One lock serialises every use of the socket (the sink thread writes, a background thread sends
heartbeats and answers subscriptions every 20 ms).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Literal

import numpy as np
import zmq
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from streamsnn import wire
from streamsnn.encoding import bin_events
from streamsnn.events import Packet, Sensor
from streamsnn.options import Options
from streamsnn.prediction import Prediction
from streamsnn.sinks.base import SINKS, Sink

log = logging.getLogger(__name__)

SERVE_S = 0.02  # how often the background thread answers subscriptions
_MORE, _LAST = int(zmq.SNDMORE | zmq.NOBLOCK), int(zmq.NOBLOCK)


HEALTH_COUNTERS = ("dropped_slices", "skipped_slices", "late_events", "out_of_bounds_events")
"""The run's counters heartbeats carry (``counters``)."""


class FramesConfig(Options):
    """Event frames on ``frame.<stream>`` (sent only while someone subscribes to them)."""

    rate_hz: PositiveFloat = Field(10.0, le=100, description="frames per second and stream, at most")
    size: int = Field(64, ge=8, le=wire.MAX_FRAME_SIDE, description="longest side of a frame (pixels)")


class ZmqSinkConfig(Options):
    """Live predictions over ZeroMQ (XPUB, msgpack; schema in ``streamsnn.wire``): any number of
    subscribers on any machine (``streamsnn subscribe``)."""

    type: Literal["zmq"] = "zmq"
    address: str = Field(
        "tcp://127.0.0.1:5556",
        description="where to bind (loopback unless changed; tcp://127.0.0.1:* takes a free port)",
    )
    hwm: NonNegativeInt = Field(
        10_000, description="messages queued per subscriber before it loses some (0: no limit)"
    )
    top_k: PositiveInt | None = Field(None, description="send only the k most probable classes (null: all)")
    heartbeat_s: PositiveFloat = Field(1.0, description="time between heartbeats (s)")
    wait_for_subscribers: NonNegativeInt = Field(
        0, description="start the run once this many have subscribed, so a replay reaches them from its start"
    )
    wait_timeout_s: PositiveFloat = Field(10.0, description="longest wait for those subscribers (s)")
    linger_s: NonNegativeFloat = Field(
        1.0, description="how long shutdown waits for the summary to go out (s)"
    )
    publisher_id: str | None = Field(
        None, description="the publisher's name in every message (null: host/pid/start time)"
    )
    frames: FramesConfig | None = Field(
        None,
        description="also publish downsampled event images on frame.<stream>, {rate_hz: at most this many "
        "per stream and second (10, ≤ 100), size: their longer side in pixels (64, 8..1024)} (null: never)",
    )


@SINKS.register(ZmqSinkConfig)
class ZmqSink(Sink):
    """Publish every prediction on ``pred.<stream>`` to the XPUB socket bound at ``address``
    (``endpoint``: the address bound, a free port resolved). A restarted publisher has a new
    ``publisher_id`` unless one is given, and always a new ``run`` (its start), by which
    subscribers tell the restart apart either way."""

    def __init__(self, config: ZmqSinkConfig) -> None:
        self.top_k, self.heartbeat_s = config.top_k, config.heartbeat_s
        self.wait_for_subscribers, self.wait_timeout_s = config.wait_for_subscribers, config.wait_timeout_s
        self.publisher = config.publisher_id or f"{socket.gethostname()}/{os.getpid()}/{time.time():.6f}"
        self.run = time.time_ns() // 1000  # this start (µs): a restart is told apart with a fixed id
        address = config.address
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, config.hwm)
        self._sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscription, duplicates included
        self._sock.setsockopt(zmq.LINGER, int(config.linger_s * 1000))
        try:
            self._sock.bind(address)
        except zmq.ZMQError as err:
            self._sock.close(linger=0)
            self._ctx.term()
            raise OSError(f"cannot bind ZeroMQ publisher to '{address}': {err}") from None
        self.endpoint: str | None = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.seq: dict[str, int] = {}  # newest seq per prediction topic
        self.published = 0
        self.subscribers = 0  # current subscriptions to predictions
        self.heartbeats = 0
        self.frames = config.frames
        self.needs_events = config.frames is not None  # this instance takes the source's events
        self.frame_subscribers = 0  # current subscriptions that receive frames
        self.frame_packets = 0  # packets binned into frames (0 while nobody subscribes to them)
        self.frames_sent = 0
        self._frame_seq: dict[str, int] = {}
        self._frame_acc: dict[str, _FrameAcc] = {}
        self._frame_due: dict[str, float] = {}  # monotonic time of each stream's next frame
        self._last_final: dict[str, list[Any]] = {}
        self._report: dict[str, Any] | None = None
        self._lock = threading.Lock()  # guards the socket and the packer
        self._packer = wire.packer()
        self._subscribed = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="streamsnn-zmq", daemon=True)
        self._thread.start()
        log.info("publishing predictions on %s", self.endpoint)

    # -- pipeline hooks ------------------------------------------------------------------------
    def start(self) -> None:
        """Before the run: wait for ``wait_for_subscribers`` subscriptions (``TimeoutError``)."""
        if self.wait_for_subscribers <= 0:
            return
        log.info("waiting for %d subscriber(s) on %s", self.wait_for_subscribers, self.endpoint)
        with self._subscribed:
            ready = self._subscribed.wait_for(
                lambda: self.subscribers >= self.wait_for_subscribers, timeout=self.wait_timeout_s
            )
            if not ready:
                raise TimeoutError(
                    f"zmq sink: {self.subscribers} of {self.wait_for_subscribers} subscriber(s) on "
                    f"{self.endpoint} after {self.wait_timeout_s} s (sinks[].wait_for_subscribers)"
                )

    def write_packet(self, packet: Packet, sensor: Sensor) -> None:
        """Bin the packet's events into its stream's frame and send the frame when it is due;
        nothing while no one subscribes to frames (or for a frame source)."""
        if self.frame_subscribers <= 0 or self.frames is None:
            if self._frame_acc:
                self._frame_acc.clear()
            return
        events = packet.data
        if events.dtype.names is None or "p" not in events.dtype.names:
            return
        acc = self._frame_acc.get(packet.stream)
        if acc is None or packet.end_of_sample:  # a replayed sample: its frame shows it alone
            acc = self._frame_acc[packet.stream] = _FrameAcc(sensor, self.frames.size)
        acc.add(events)
        self.frame_packets += 1
        now = time.monotonic()
        if now < self._frame_due.get(packet.stream, 0.0) or not acc.events:
            return
        self._frame_due[packet.stream] = now + 1.0 / self.frames.rate_hz
        topic = wire.frame_topic(packet.stream)
        with self._lock:
            if self._closed.is_set():
                return
            seq = self._frame_seq[topic] = self._frame_seq.get(topic, 0) + 1
            payload = wire.frame_payload(
                packet.stream,
                self.publisher,
                seq,
                time.time(),
                (acc.t_first, acc.t_last),
                acc.scale,
                acc.events,
                acc.on,
                acc.off,
                self.run,
            )
            self._send(topic, payload, count=False)
            self.frames_sent += 1
        acc.clear()

    def write(self, pred: Prediction) -> None:
        topic = wire.prediction_topic(pred.stream)
        with self._lock:
            seq = self.seq[topic] = self.seq.get(topic, 0) + 1
            payload = wire.prediction_payload(pred, self.publisher, seq, time.time(), self.top_k, self.run)
            self._send(topic, payload)
            if pred.final:
                self._last_final[topic] = payload

    def finish(self, report: dict[str, Any]) -> None:
        """The run's report, sent in the summary when the sink closes."""
        self._report = report

    def close(self) -> None:
        """Send the summary, stop the heartbeats and close the socket (waiting up to
        ``linger_s`` for queued messages)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(timeout=5)
        with self._lock:
            body = {"last_seq": dict(self.seq), "published": self.published, "report": self._report}
            body.update(self._extras())
            self._send_summary(wire.control_payload("summary", self.publisher, 1, time.time(), body))
            self._sock.close()
        self._ctx.term()

    def _send_summary(self, summary: list[Any]) -> None:
        """The summary is the one message worth waiting for: while a subscriber's queue is full,
        retry for up to ``linger_s`` (XPUB_NODROP refuses the send instead of dropping), then
        send it to those with room."""
        deadline = time.monotonic() + self._sock.getsockopt(zmq.LINGER) / 1000
        self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        try:
            while True:
                try:
                    self._sock.send_multipart(
                        wire.pack(wire.SUMMARY_TOPIC, summary, self._packer), flags=_LAST
                    )
                    return
                except zmq.Again:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.01)
        finally:
            self._sock.setsockopt(zmq.XPUB_NODROP, 0)
        self._send(wire.SUMMARY_TOPIC, summary)

    # -- internals (called with the lock held) --------------------------------------------------
    def _send(self, topic: str, payload: list[Any], count: bool = True) -> None:
        # XPUB drops (never blocks) when a subscriber's queue is full: subscribers see the gap.
        # Two plain sends with int flags: pyzmq's send_multipart costs ~3 µs more per message.
        head, body = wire.pack(topic, payload, self._packer)
        self._sock.send(head, _MORE)
        self._sock.send(body, _LAST)
        self.published += count  # predictions and control messages (frames are not in last_seq either)

    def _extras(self) -> dict[str, Any]:
        """What heartbeats and the summary carry besides their fields: ``run``, ``threshold``,
        and the run's ``counters`` when the runner gives them."""
        extras: dict[str, Any] = {"run": self.run, "threshold": self.threshold}
        if self.run_counters is not None:
            try:
                counted = self.run_counters()
            except RuntimeError:  # a counter changed size while read (another thread): next time
                return extras
            extras["counters"] = {key: int(counted.get(key, 0)) for key in HEALTH_COUNTERS}
        return extras

    def _serve(self) -> None:
        """Background: answer subscriptions (last-value cache) and send heartbeats."""
        next_beat = time.monotonic()
        while not self._closed.wait(SERVE_S):
            with self._lock:
                if self._closed.is_set():
                    return
                self._answer_subscriptions()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_s
                    self.heartbeats += 1
                    body = {"last_seq": dict(self.seq), "published": self.published}
                    body["subscribers"] = self.subscribers
                    body.update(self._extras())
                    beat = wire.control_payload(
                        "heartbeat", self.publisher, self.heartbeats, time.time(), body
                    )
                    self._send(wire.HEARTBEAT_TOPIC, beat)

    def _answer_subscriptions(self) -> None:
        while self._sock.poll(0):
            message = self._sock.recv()
            if not message:
                continue
            subscribe, prefix = message[0] == 1, message[1:].decode(errors="replace")
            if _matches(prefix, wire.FRAME_PREFIX):
                self.frame_subscribers += 1 if subscribe else -1
            if not _matches(prefix, wire.PREDICTION_PREFIX):
                continue
            self.subscribers += 1 if subscribe else -1
            self._subscribed.notify_all()
            if subscribe:
                for topic, payload in self._last_final.items():
                    if topic.startswith(prefix):
                        again = list(payload)
                        again[wire.CACHED], again[wire.EMIT_TIME] = True, time.time()
                        self._send(topic, again)


def _matches(prefix: str, topics: str) -> bool:
    """Whether a subscription to ``prefix`` receives topics starting with ``topics`` (for
    ``"pred."``: ``""``, ``"pred"``, ``"pred.cam0"``...)."""
    return prefix.startswith(topics) or topics.startswith(prefix)


class _FrameAcc:
    """One stream's frame being built: ON and OFF counts per block of ``scale``×``scale`` pixels."""

    def __init__(self, sensor: Sensor, size: int) -> None:
        self.scale = max(1, -(-max(sensor.width, sensor.height) // size))
        self.shape = (2, sensor.height, sensor.width)
        self.width, self.height = -(-sensor.width // self.scale), -(-sensor.height // self.scale)
        self.clear()

    def clear(self) -> None:
        self.on = np.zeros((self.height, self.width), np.float32)
        self.off = np.zeros((self.height, self.width), np.float32)
        self.events, self.t_first, self.t_last = 0, 0, 0

    def add(self, events: np.ndarray) -> None:
        counts, dropped = bin_events(events, self.shape, self.scale)  # events outside the sensor dropped
        if dropped == len(events):
            return
        self.off += counts[0]
        self.on += counts[1]
        if not self.events:
            self.t_first = int(events["t"][0])
        self.events += len(events) - dropped
        self.t_last = int(events["t"][-1])
