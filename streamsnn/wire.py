"""The wire format of live predictions over ZeroMQ (schema version 1).

Every message is two frames, ``[topic, payload]``: the topic (UTF-8) is what SUB sockets filter
on by prefix, the payload a msgpack **array** whose positions are the fields below (an array, not
a map: a subscriber decodes it in a third of the time, which is what lets one Python process
take ~50,000 predictions per second). Topics and kinds:

- ``pred.<stream>``: one anytime prediction of one stream (``kind: prediction``);
- ``hb``: a heartbeat about once a second (``kind: heartbeat``);
- ``summary``: the run's summary when the publisher shuts down (``kind: summary``).

Every payload starts with ``HEADER``: ``v`` (schema version), ``kind``, ``publisher`` (an id
that changes when the publisher restarts), ``seq`` (counts this topic's messages from this
publisher, from 1: a jump is a gap) and ``emit_time`` (Unix time, s, of sending: a subscriber's
lag is its clock minus this). A prediction continues with ``PREDICTION_FIELDS`` in that order:
``probs`` holds all class probabilities, or is nil and ``top_k`` holds ``[[class, probability],
...]`` (most probable first) when the publisher sends only the k best; ``cached`` is true on a
last value re-sent to a late joiner. A heartbeat or summary continues with one map: heartbeats
``last_seq`` ({topic: seq} of the newest prediction per stream, so that a subscriber also notices
losses at the tail), ``published`` and ``subscribers``; the summary ``last_seq``, ``published``
and ``report`` (as ``report.json``).

Within a version fields are only ever appended (older subscribers ignore what follows the fields
they know); a subscriber refuses payloads of a newer version (``NewerSchemaError``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgpack

from streamsnn.prediction import Prediction

SCHEMA_VERSION = 1
PREDICTION_PREFIX = "pred."
HEARTBEAT_TOPIC = "hb"
SUMMARY_TOPIC = "summary"
KINDS = ("prediction", "heartbeat", "summary")
HEADER = ("v", "kind", "publisher", "seq", "emit_time")
PREDICTION_FIELDS = (
    "stream",
    "sample",
    "step",
    "t_start_us",
    "t_end_us",
    "class",
    "confidence",
    "probs",
    "top_k",
    "final",
    "reason",
    "label",
    "input_latency_ms",
    "compute_latency_ms",
    "e2e_latency_ms",
    "spikes",
    "synaptic_events",
    "energy_uj",
    "cached",
)
PREDICTION = HEADER + PREDICTION_FIELDS
"""Positions of a prediction payload's fields."""

V, KIND, PUBLISHER, SEQ, EMIT_TIME = range(len(HEADER))
STREAM, FINAL, CACHED = (PREDICTION.index(f) for f in ("stream", "final", "cached"))
BODY = len(HEADER)  # a heartbeat's or summary's map
_N_PREDICTION = len(PREDICTION)


class WireError(ValueError):
    """A message that is not streamsnn's wire format."""


class NewerSchemaError(WireError):
    """A message of a schema version newer than this code reads."""


def prediction_topic(stream: str) -> str:
    """The topic of ``stream``'s predictions (SUB filters match it by prefix)."""
    return PREDICTION_PREFIX + stream


def prediction_payload(
    pred: Prediction, publisher: str, seq: int, emit_time: float, top_k: int | None = None
) -> list[Any]:
    """``pred`` as a schema-1 payload (``PREDICTION`` order); ``top_k`` keeps only the k most
    probable classes."""
    probs, best = pred.probs, None
    if top_k is not None:
        order = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:top_k]
        probs, best = None, [[c, pred.probs[c]] for c in order]
    return [
        SCHEMA_VERSION,
        "prediction",
        publisher,
        seq,
        emit_time,
        pred.stream,
        pred.sample,
        pred.step,
        pred.t_start_us,
        pred.t_end_us,
        pred.cls,
        pred.confidence,
        probs,
        best,
        pred.final,
        pred.reason,
        pred.label,
        pred.input_latency_ms,
        pred.compute_latency_ms,
        pred.e2e_latency_ms,
        pred.spikes,
        pred.synaptic_events,
        pred.energy_uj,
        False,
    ]


def control_payload(kind: str, publisher: str, seq: int, emit_time: float, body: dict[str, Any]) -> list[Any]:
    """A heartbeat or summary payload: the header, then ``body`` (plain types only)."""
    return [SCHEMA_VERSION, kind, publisher, seq, emit_time, json.loads(json.dumps(body, default=str))]


def as_dict(payload: Sequence[Any]) -> dict[str, Any]:
    """A checked payload with its fields named (a control message's map merged in)."""
    if payload[KIND] == "prediction":
        return dict(zip(PREDICTION, payload, strict=False))
    return {**dict(zip(HEADER, payload, strict=False)), **payload[BODY]}


def packer() -> msgpack.Packer:
    """A packer to reuse (cheaper than a new one per message); one per thread or lock."""
    return msgpack.Packer(use_bin_type=True)


def pack(topic: str, payload: list[Any], with_packer: msgpack.Packer | None = None) -> list[bytes]:
    """The two frames of one message."""
    return [topic.encode(), (with_packer or packer()).pack(payload)]


def unpack(frames: Sequence[Any]) -> tuple[str, list[Any]]:
    """Topic and payload of one received message (frames as bytes or ``zmq.Frame``), checked;
    ``WireError`` says what is wrong."""
    if len(frames) != 2:
        raise WireError(f"expected 2 frames [topic, payload], got {len(frames)}")
    try:
        topic = bytes(frames[0]).decode()
    except UnicodeDecodeError:
        raise WireError(f"topic is not UTF-8: {bytes(frames[0])[:40]!r}") from None
    try:
        payload = msgpack.unpackb(frames[1], raw=False, strict_map_key=False)
    except Exception as err:  # msgpack raises several unrelated types on bad bytes
        raise WireError(f"{topic}: payload is not msgpack ({type(err).__name__}: {err})") from None
    if (
        type(payload) is list
        and len(payload) >= _N_PREDICTION
        and payload[V] == SCHEMA_VERSION
        and payload[KIND] == "prediction"
    ):
        return topic, payload  # the common case, checked at once
    if not isinstance(payload, list) or len(payload) < len(HEADER):
        what = f"{len(payload)} fields" if isinstance(payload, list) else f"a {type(payload).__name__}"
        raise WireError(f"{topic}: payload is {what}, not an array of at least {len(HEADER)} (v, kind, ...)")
    version, kind = payload[V], payload[KIND]
    if not isinstance(version, int):
        raise WireError(f"{topic}: schema version (field 0) is {version!r}, not an integer")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{topic}: schema version {version} is newer than this subscriber's ({SCHEMA_VERSION}); "
            "upgrade streamsnn to read it"
        )
    if kind == "prediction":
        if len(payload) < len(PREDICTION):
            missing = ", ".join(PREDICTION[len(payload) :])
            raise WireError(f"{topic}: prediction has {len(payload)} fields, lacks {missing}")
    elif kind in KINDS:
        if len(payload) <= BODY or not isinstance(payload[BODY], dict):
            raise WireError(f"{topic}: {kind} has no map of fields after the header")
    else:
        raise WireError(f"{topic}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    return topic, payload
