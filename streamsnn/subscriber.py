"""Receive live predictions from a streamsnn ZeroMQ publisher (``sinks: [{type: zmq}]``).

    from streamsnn.subscriber import Subscriber

    with Subscriber("tcp://127.0.0.1:5556", topics=["pred.cam0"]) as sub:
        for msg in sub:                       # predictions (and the summary at the end)
            if msg.kind == "prediction" and msg.data["final"]:
                print(msg.stream, msg.data["class"], msg.data["confidence"], msg.lag_s)

What it does besides receiving:

- **gaps**: sequence numbers are tracked per publisher and topic; a jump means messages were
  dropped (the publisher never waits for a slow subscriber). ``msg.gap`` says how many were
  missed just before ``msg``; heartbeats reveal losses at the tail too. Counted in ``stats``.
  A subscriber that was there before a publisher's run began (its ``run``, the publisher's start
  on its clock, is later than this subscriber's start on this one) should see every message of
  it from seq 1: what the publisher sent before the subscription reached it (ZeroMQ connects
  and subscribes a few ms after the publisher binds, and a publisher drops what nobody has
  subscribed to yet) is a gap too. A late joiner (the run began before it) counts from the
  first message it gets; so does one whose publisher names no run (older streamsnn).
- **lag** (the zguide's Suicidal Snail): ``msg.lag_s`` is this machine's clock minus the
  publisher's send time; beyond ``max_lag_s`` it is logged once per episode and counted, and
  with ``on_lag="raise"`` ``LagError`` is raised so that the consumer can restart itself.
- **last value**: a new subscription first gets the newest final prediction of every stream it
  matches (``msg.cached``); a subscriber that already had it never sees the repeat.
- **restarts**: ZeroMQ reconnects by itself after a publisher restart; a new ``publisher`` id, or
  a new ``run`` of the same id (a fixed ``publisher_id``), resets the sequence tracking
  (``publisher_restarts``). A live seq at or below the newest of its topic without a new run (a
  publisher of an older streamsnn restarted with a fixed id, or a faulty one) restarts that
  topic's tracking from it (``seq_restarts``, logged): it is never taken for a duplicate, so no
  value poisons what follows. If nothing at all, not even a heartbeat, arrives for
  ``silence_s`` after something did, the socket is made afresh (``reconnects``); before the
  first message the subscriber only says once that it is waiting for a publisher (ZeroMQ keeps
  trying to connect by itself).
- **frames** (``frame.<stream>``, subscribed to only when asked for in ``topics``): delivered as
  they come, without sequence tracking (the publisher sends them at a bounded rate and skips
  what it cannot send).
- **bad messages**: malformed frames, fields of the wrong type (``streamsnn.wire`` checks every
  field) and newer schema versions are logged with the reason and counted (``malformed``,
  ``newer_schema``), and the subscriber keeps going; with ``on_error="raise"`` ``receive``
  raises ``WireError`` instead and stays usable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from streamsnn import wire
from streamsnn.wire import NewerSchemaError, WireError

log = logging.getLogger(__name__)
_NOBLOCK = int(zmq.NOBLOCK)


class LagError(RuntimeError):
    """The subscriber fell further behind the publisher than ``max_lag_s``."""


class Message:
    """One received message. ``values``: the payload's fields in wire order (see
    ``streamsnn.wire``); ``data``: the same fields by name (made on first use); ``gap``: messages
    of this topic missed just before this one; ``lag_s``: receive time − send time (s)."""

    __slots__ = ("_data", "gap", "lag_s", "topic", "values")

    def __init__(self, topic: str, values: list[Any], gap: int = 0, lag_s: float = 0.0) -> None:
        self.topic, self.values, self.gap, self.lag_s = topic, values, gap, lag_s
        self._data: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = wire.as_dict(self.values)
        return self._data

    @property
    def kind(self) -> str:
        return str(self.values[wire.KIND])

    @property
    def stream(self) -> str | None:
        return self.values[wire.STREAM] if self.kind in ("prediction", "frame") else None

    @property
    def cached(self) -> bool:
        return self.kind == "prediction" and bool(self.values[wire.CACHED])

    def __repr__(self) -> str:
        return f"Message({self.topic!r}, {self.data!r}, gap={self.gap}, lag_s={self.lag_s:.6f})"


@dataclass
class _Track:
    """What one subscriber knows of one publisher's topic."""

    last_seq: int = 0  # newest live seq seen (0: none yet)
    last_final_seq: int = 0  # newest final prediction delivered


class Subscriber:
    """A SUB socket connected to ``address``, subscribed to ``topics`` (prefixes, as ZeroMQ
    matches them; default every stream) plus heartbeats and summaries.

    ``final_only`` delivers only exit decisions (gaps are still tracked on every message);
    ``heartbeats`` also delivers heartbeat messages; ``hwm`` bounds the receive queue.
    """

    def __init__(
        self,
        address: str,
        topics: Sequence[str] = (wire.PREDICTION_PREFIX,),
        final_only: bool = False,
        heartbeats: bool = False,
        max_lag_s: float | None = None,
        on_lag: str = "log",
        on_error: str = "log",
        silence_s: float = 3.0,
        hwm: int = 100_000,
    ) -> None:
        if on_lag not in ("log", "raise") or on_error not in ("log", "raise"):
            raise ValueError("on_lag and on_error take 'log' or 'raise'")
        port = address.rsplit(":", 1)[-1] if address.startswith("tcp://") else ""
        if port.isdigit() and not 0 < int(port) <= 65535:  # ZeroMQ would connect to another port
            raise ValueError(f"cannot connect to '{address}': port {port} is not in 1..65535")
        self.address, self.topics = address, list(topics) or [wire.PREDICTION_PREFIX]
        self.final_only, self.heartbeats = final_only, heartbeats
        self.max_lag_s, self.on_lag, self.on_error = max_lag_s, on_lag, on_error
        self.silence_s, self.hwm = silence_s, hwm
        self.stats = dict.fromkeys(
            (
                "received",
                "predictions",
                "gaps",
                "missed",
                "duplicates",
                "lagging",
                "malformed",
                "newer_schema",
                "publisher_restarts",
                "seq_restarts",
                "reconnects",
            ),
            0,
        )
        self.publishers: set[str] = set()
        self._runs: dict[str, int | None] = {}  # publisher → its run (None: it names none)
        self._last: tuple[str, int | None] | None = None  # the last (publisher, run) seen
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._lagging = False
        self._warned_newer: set[str] = set()
        self._started_us = time.time_ns() // 1000  # compared with a publisher's run (its start, µs)
        self._waiting_said = False
        self._ctx = zmq.Context()
        self._sock = self._connect()
        self._last_rx = time.monotonic()

    def _connect(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, self.hwm)
        sock.setsockopt(zmq.LINGER, 0)
        for topic in {*self.topics, wire.HEARTBEAT_TOPIC, wire.SUMMARY_TOPIC}:
            sock.setsockopt_string(zmq.SUBSCRIBE, topic)
        try:
            sock.connect(self.address)
        except zmq.ZMQError as err:
            sock.close()
            raise ValueError(f"cannot connect to '{self.address}': {err}") from None
        self._poller = zmq.Poller()  # kept: Socket.poll makes a new one per call (~10 µs)
        self._poller.register(sock, zmq.POLLIN)
        return sock

    # -- receiving ---------------------------------------------------------------------------
    def receive(self, timeout_s: float | None = None) -> Message | None:
        """The next message to deliver, or None after ``timeout_s`` (None: wait for ever)."""
        deadline = None
        while True:
            try:  # the first frame as a zmq.Frame: its ``more`` is cheaper than asking the socket
                head = self._sock.recv(_NOBLOCK, copy=False)
            except zmq.Again:  # nothing queued: wait
                now = time.monotonic()
                if deadline is None:
                    deadline = now + (timeout_s if timeout_s is not None else float("inf"))
                wait_s = min(self.silence_s, deadline - now)
                if wait_s <= 0:
                    return None
                if not self._poller.poll(int(wait_s * 1000) + 1) and now - self._last_rx >= self.silence_s:
                    self._silence()
                continue
            self._last_rx = time.monotonic()
            # frames after a second one arrive as a message of their own, which unpack refuses
            frames = [head.bytes, self._sock.recv(_NOBLOCK)] if head.more else [head.bytes]
            self.stats["received"] += 1
            try:
                topic, values = wire.unpack(frames)
            except WireError as err:
                self._bad(err)
                continue
            msg = self._admit(topic, values)
            if msg is not None:
                return msg

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.receive()
            if msg is not None:
                yield msg

    def _admit(self, topic: str, values: list[Any]) -> Message | None:
        """Track sequence numbers and lag; the message to deliver, or None to skip it."""
        publisher, run = values[wire.PUBLISHER], wire.run_of(values)
        if (publisher, run) != self._last:
            self._follow(publisher, run)
        lag = time.time() - values[wire.EMIT_TIME]
        if self.max_lag_s is not None:
            self._check_lag(lag)
        kind, seq = values[wire.KIND], values[wire.SEQ]
        if kind == "frame":  # lossy by design (rate-limited, newest wins): no sequence to follow
            return Message(topic, values, lag_s=lag)
        if kind != "prediction":
            self._tail_gaps(publisher, values[wire.BODY]["last_seq"])
            return Message(topic, values, lag_s=lag) if kind == "summary" or self.heartbeats else None
        track = self._tracks.get((publisher, topic))
        if track is None:
            track = self._tracks[publisher, topic] = _Track()
        final, gap = values[wire.FINAL], 0
        if values[wire.CACHED]:  # last value for a late joiner: not part of the live sequence
            if seq <= track.last_final_seq:
                self.stats["duplicates"] += 1
                return None
        elif seq <= track.last_seq:  # a live seq never repeats: its sequence began again
            self._seq_restart(topic, track, seq)
        else:
            expected = track.last_seq + 1 if track.last_seq else self._first_seq(publisher)
            if seq > expected:
                gap = seq - expected
                self._count_gap(topic, expected, seq - 1)
            track.last_seq = seq
        if final:
            track.last_final_seq = seq
        self.stats["predictions"] += 1
        if self.final_only and not final:
            return None
        return Message(topic, values, gap, lag)

    def _follow(self, publisher: str, run: int | None) -> None:
        """A message from another publisher, or another run, than the last one: a new publisher
        or run after the first is a restart, and a new run forgets the old one's sequences."""
        self._last = publisher, run
        if publisher not in self._runs:
            if self._runs:
                self.stats["publisher_restarts"] += 1
                log.info("%s: new publisher %s", self.address, publisher)
            self.publishers.add(publisher)
        elif run is None or run == self._runs[publisher]:
            return
        elif self._runs[publisher] is not None:
            self.stats["publisher_restarts"] += 1
            log.info("%s: publisher %s restarted (run %d)", self.address, publisher, run)
            self._tracks = {key: track for key, track in self._tracks.items() if key[0] != publisher}
        self._runs[publisher] = run

    def _tail_gaps(self, publisher: str, last_seq: dict[str, int]) -> None:
        """Messages the publisher sent before this heartbeat (same connection, so in order) that
        never arrived. Topics seen for the first time start their tracking here."""
        for topic, seq in last_seq.items():
            if not any(topic.startswith(t) for t in self.topics):
                continue
            track = self._tracks.setdefault((publisher, topic), _Track())
            if seq < track.last_seq:
                self._seq_restart(topic, track, seq)
            elif seq >= (expected := track.last_seq + 1 if track.last_seq else self._first_seq(publisher)):
                self._count_gap(topic, expected, seq)
            track.last_seq = seq

    def _first_seq(self, publisher: str) -> int:
        """The seq a topic's first message from ``publisher`` should have: 1 when this subscriber
        was there before the publisher's run began, else whatever comes (a late joiner:
        ``MAX_SEQ + 1``, no gap)."""
        run = self._runs.get(publisher)
        return 1 if run is not None and run >= self._started_us else wire.MAX_SEQ + 1

    def _seq_restart(self, topic: str, track: _Track, seq: int) -> None:
        """``topic``'s seq went back to ``seq`` without a new run: its tracking starts again there."""
        self.stats["seq_restarts"] += 1
        log.warning(
            "%s: seq went back from %d to %d without a new run: following it from there",
            topic,
            track.last_seq,
            seq,
        )
        track.last_seq, track.last_final_seq = seq, 0

    def _count_gap(self, topic: str, first: int, last: int) -> None:
        self.stats["gaps"] += 1
        self.stats["missed"] += last - first + 1
        log.warning("%s: %d message(s) missed (seq %d-%d)", topic, last - first + 1, first, last)

    def _check_lag(self, lag: float) -> None:
        assert self.max_lag_s is not None
        if lag <= self.max_lag_s:
            self._lagging = False
            return
        self.stats["lagging"] += 1
        if not self._lagging:
            self._lagging = True
            log.warning("%s: %.3f s behind the publisher (max_lag_s %.3f)", self.address, lag, self.max_lag_s)
        if self.on_lag == "raise":
            raise LagError(f"{self.address}: {lag:.3f} s behind the publisher (max_lag_s {self.max_lag_s})")

    def _bad(self, err: WireError) -> None:
        newer = isinstance(err, NewerSchemaError)
        self.stats["newer_schema" if newer else "malformed"] += 1
        if self.on_error == "raise":
            raise err
        if newer:  # said once per topic: a newer publisher sends nothing this subscriber can read
            topic = str(err).split(":")[0]
            if topic in self._warned_newer:
                return
            self._warned_newer.add(topic)
        log.error("%s: skipped a message: %s", self.address, err)

    def _silence(self) -> None:
        """Nothing for ``silence_s``: reconnect if a publisher was heard before, else say once
        that the subscriber is waiting for one."""
        if self.stats["received"]:
            self._reconnect()
        elif not self._waiting_said:
            self._waiting_said = True
            log.warning("%s: nothing received yet: waiting for a publisher", self.address)

    def _reconnect(self) -> None:
        self.stats["reconnects"] += 1
        log.warning(
            "%s: nothing received for %.1f s (no heartbeat either): reconnecting",
            self.address,
            self.silence_s,
        )
        self._sock.close()
        self._sock = self._connect()
        self._last_rx = time.monotonic()

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        self._sock.close()
        self._ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
