"""What the dashboard shows: the newest state of every stream, fed from a ``Subscriber``.

The store keeps only bounded things (the latest frame, the running decision's trace, the last
``FINALS_KEPT`` finals, the last ``LATENCIES_KEPT`` latencies), so that its memory stays flat
however long the feed runs; browsers get ``snapshot()``s of it, never a queue of messages.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections import deque
from typing import Any

from streamsnn.subscriber import Message

FINALS_KEPT = 50  # per stream
TRACE_KEPT = 400  # steps of one decision
LATENCIES_KEPT = 2000  # per latency, over every stream
HISTOGRAM_BINS = 24
MAX_STREAMS = 64  # streams shown; more are counted (``streams_not_shown``)
LATENCIES = ("input_latency_ms", "compute_latency_ms", "e2e_latency_ms")
HEALTH = ("gaps", "missed", "malformed", "newer_schema", "publisher_restarts", "seq_restarts", "reconnects")


class StreamState:
    """One stream's newest prediction, the running decision's and the last decided one's
    confidence traces, its finals and its newest frame."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] | None = None
        # [step, confidence, class] of every prediction of the running decision (the newest TRACE_KEPT)
        self.trace: deque[list[Any]] = deque(maxlen=TRACE_KEPT)
        self.trace_sample: int | None = None
        self.decided: dict[str, Any] | None = None  # the last decision's trace and its exit step
        self.finals: deque[dict[str, Any]] = deque(maxlen=FINALS_KEPT)
        self.decisions = self.right = self.labelled = 0
        self.frame: dict[str, Any] | None = None

    def prediction(self, data: dict[str, Any], cached: bool) -> None:
        keep = ("sample", "step", "class", "confidence", "final", "reason", "label", "t_end_us")
        self.latest = {key: data[key] for key in keep}
        if not cached:
            if data["sample"] != self.trace_sample:
                self.trace, self.trace_sample = deque(maxlen=TRACE_KEPT), data["sample"]
            self.trace.append([data["step"], round(data["confidence"], 4), data["class"]])
        if not data["final"]:
            return
        label, cls = data["label"], data["class"]
        if not cached:
            self.decided = {"sample": data["sample"], "trace": list(self.trace), "exit_step": data["step"]}
            self.trace, self.trace_sample = deque(maxlen=TRACE_KEPT), None
        self.decisions += 1
        self.labelled += label is not None
        self.right += label is not None and label == cls
        self.finals.appendleft(
            {
                "sample": data["sample"],
                "class": cls,
                "confidence": data["confidence"],
                "steps": data["step"],
                "reason": data["reason"],
                "label": label,
                "correct": None if label is None else label == cls,
                "e2e_latency_ms": data["e2e_latency_ms"],
            }
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "latest": self.latest,
            "trace": list(self.trace),
            "decided": self.decided,
            "finals": list(self.finals),
            "decisions": self.decisions,
            "right": self.right,
            "labelled": self.labelled,
            "frame": self.frame,
        }


class DashboardState:
    """Every stream's state, the feed's health and the run's summary; thread-safe (the
    subscriber thread writes, the web server reads ``snapshot()``). ``version`` grows with every
    change, so a reader sends a snapshot only when something changed."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.version = 0
        self._lock = threading.Lock()
        self._streams: dict[str, StreamState] = {}
        self._latencies = {name: deque(maxlen=LATENCIES_KEPT) for name in LATENCIES}
        self._lags: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self.streams_not_shown = 0
        self.predictions = self.frames = 0
        self.threshold: float | None = None
        self.counters: dict[str, int] = {}
        self.health: dict[str, int] = dict.fromkeys(HEALTH, 0)
        self.publisher: str | None = None
        self.run: int | None = None
        self.summary: dict[str, Any] | None = None
        self.last_message: float | None = None  # Unix time
        self._snapshot: tuple[int, dict[str, Any]] | None = None

    def _stream(self, name: str) -> StreamState | None:
        state = self._streams.get(name)
        if state is None:
            if len(self._streams) >= MAX_STREAMS:
                self.streams_not_shown += 1
                return None
            state = self._streams[name] = StreamState()
        return state

    def feed(self, msg: Message, stats: dict[str, int]) -> None:
        """Take one message of the subscriber (its ``stats`` after it)."""
        kind, data = msg.kind, msg.data
        with self._lock:
            self.version += 1
            self.last_message = time.time()
            self.health = {key: stats.get(key, 0) for key in HEALTH}
            if (data["publisher"], data.get("run")) != (self.publisher, self.run):
                self.publisher, self.run = data["publisher"], data.get("run")
                self.summary = None  # a new run: the old one's summary no longer applies
            if kind == "prediction":
                self.predictions += 1
                self._lags.append(msg.lag_s * 1000)
                state = self._stream(data["stream"])
                if state is None:
                    return
                state.prediction(data, msg.cached)
                if not msg.cached:
                    for name in LATENCIES:
                        self._latencies[name].append(data[name])
            elif kind == "frame":
                self.frames += 1
                state = self._stream(data["stream"])
                if state is not None:
                    state.frame = {
                        key: data[key]
                        for key in ("width", "height", "scale", "events", "t_start_us", "t_end_us")
                    }
                    state.frame["on"] = base64.b64encode(data["on"]).decode()
                    state.frame["off"] = base64.b64encode(data["off"]).decode()
            else:  # heartbeat or summary
                if "threshold" in data:
                    self.threshold = data["threshold"]
                if "counters" in data:
                    self.counters = dict(data["counters"])
                if kind == "summary":
                    self.summary = data.get("report") or {}

    def idle(self, stats: dict[str, int]) -> None:
        """No message for a while: keep the subscriber's counters (reconnects) current."""
        health = {key: stats.get(key, 0) for key in HEALTH}
        if health != self.health:
            with self._lock:
                self.version += 1
                self.health = health

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as plain JSON types (made once per ``version``)."""
        with self._lock:
            if self._snapshot is not None and self._snapshot[0] == self.version:
                return self._snapshot[1]
            lags = sorted(self._lags)
            snap = {
                "version": self.version,
                "address": self.address,
                "publisher": self.publisher,
                "run": self.run,
                "threshold": self.threshold,
                "predictions": self.predictions,
                "frames": self.frames,
                "last_message": self.last_message,
                "now": time.time(),
                "health": {
                    **self.health,
                    **self.counters,
                    "lag_p50_ms": _percentile(lags, 50),
                    "lag_max_ms": lags[-1] if lags else None,
                    "streams_not_shown": self.streams_not_shown,
                },
                "latency": {name: _distribution(self._latencies[name]) for name in LATENCIES},
                "streams": {name: state.as_json() for name, state in sorted(self._streams.items())},
                "summary": self.summary,
            }
            self._snapshot = (self.version, snap)
            return snap


def _percentile(ordered: list[float], q: float) -> float | None:
    """The ``q``-th percentile of sorted values (nearest rank), or None without values."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _distribution(values: deque[float]) -> dict[str, Any]:
    """p50, p99, max and a histogram (``HISTOGRAM_BINS`` equal bins from 0 to the max, ms)."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p99": None, "max": None, "bins": [], "bin_ms": None}
    top = max(ordered[-1], 1e-3)
    width = top / HISTOGRAM_BINS
    bins = [0] * HISTOGRAM_BINS
    for value in ordered:
        bins[min(HISTOGRAM_BINS - 1, int(max(value, 0.0) / width))] += 1
    return {
        "n": len(ordered),
        "p50": _percentile(ordered, 50),
        "p99": _percentile(ordered, 99),
        "max": ordered[-1],
        "bins": bins,
        "bin_ms": width,
    }
