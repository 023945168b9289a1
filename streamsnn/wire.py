"""The wire format of live predictions over ZeroMQ (schema version 1).

Every message is two frames, ``[topic, payload]``: the topic (UTF-8) is what SUB sockets filter
on by prefix, the payload a msgpack **array** whose positions are the fields below (an array, not
a map: a subscriber decodes it in a third of the time, which is what lets one Python process
take ~50,000 predictions per second). Topics and kinds:

- ``pred.<stream>``: one anytime prediction of one stream (``kind: prediction``);
- ``hb``: a heartbeat about once a second (``kind: heartbeat``);
- ``summary``: the run's summary when the publisher shuts down (``kind: summary``);
- ``frame.<stream>``: a downsampled image of the stream's latest events (``kind: frame``), sent
  only while someone subscribes to it and at most ``rate_hz`` times a second (the sink's
  ``frames`` option).

Every payload starts with ``HEADER``: ``v`` (schema version), ``kind``, ``publisher`` (an id
that changes when the publisher restarts, unless fixed by its configuration), ``seq`` (counts this
topic's messages from this publisher, from 1 up to at most ``MAX_SEQ``: a jump is a gap) and
``emit_time`` (Unix time, s, of sending: a subscriber's lag is its clock minus this). A prediction
continues with ``PREDICTION_FIELDS`` in that order: ``probs`` holds all class probabilities, or
is nil and ``top_k`` holds ``[[class, probability], ...]`` (most probable first) when the
publisher sends only the k best; ``cached`` is true on a last value re-sent to a late joiner;
``run`` (appended within version 1: older publishers leave it out) is the publisher's start
(Unix time, µs), new at every start, so that a restart is told apart even when ``publisher`` is
fixed. A heartbeat or summary continues with one map: heartbeats ``last_seq`` ({topic: seq} of
the newest prediction per stream, so that a subscriber also notices losses at the tail),
``published`` and ``subscribers``; the summary ``last_seq``, ``published`` and ``report`` (as
``report.json``, or nil); both ``run`` too (optional, as in predictions), and (appended within
version 1, optional) ``threshold`` (the exit policy's, or nil) and ``counters`` (the run's
running ``dropped_slices``, ``skipped_slices``, ``late_events``, ``out_of_bounds_events``, when
the publisher runs the pipeline itself). A frame continues with ``FRAME_FIELDS``: the events
of the stream's packets since its previous frame (sensor time ``t_start_us``..``t_end_us``,
``events`` of them), counted per block of ``scale``×``scale`` pixels into a ``width``×``height``
image per polarity: ``on`` and ``off`` hold one byte per pixel, row by row (counts above 255 are
255), and ``run`` as in predictions. Frames carry no ``last_seq``: they are lossy by design.

Every field has one type (``FIELD_TYPES``, ``BODY_TYPES``), checked by ``unpack`` for every
reader: a message that breaks one is a ``WireError`` naming the field and its value, never a
value passed on. Within a version fields are only ever appended (older subscribers ignore what
follows the fields they know) and kinds only added on topics of their own (``frame`` was): a
subscriber receives only the topics it subscribes to, and one that does not know a kind counts
it as malformed and goes on; a subscriber refuses payloads of a newer version
(``NewerSchemaError``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import msgpack

from streamsnn.prediction import Prediction

SCHEMA_VERSION = 1
PREDICTION_PREFIX = "pred."
HEARTBEAT_TOPIC = "hb"
SUMMARY_TOPIC = "summary"
FRAME_PREFIX = "frame."
KINDS = ("prediction", "heartbeat", "summary", "frame")
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
    "run",
)
PREDICTION = HEADER + PREDICTION_FIELDS
"""Positions of a prediction payload's fields."""
FRAME_FIELDS = ("stream", "t_start_us", "t_end_us", "width", "height", "scale", "events", "on", "off", "run")
FRAME = HEADER + FRAME_FIELDS
"""Positions of a frame payload's fields."""
MAX_FRAME_SIDE = 1024
"""The largest ``width`` or ``height`` of a frame (pixels)."""

V, KIND, PUBLISHER, SEQ, EMIT_TIME = range(len(HEADER))
STREAM, PROBS, TOP_K, FINAL, CACHED, RUN = (
    PREDICTION.index(f) for f in ("stream", "probs", "top_k", "final", "cached", "run")
)
FRAME_RUN = FRAME.index("run")
BODY = len(HEADER)  # a heartbeat's or summary's map
_N_PREDICTION = RUN  # the fields every version-1 prediction has (``run`` was appended later)
MAX_SEQ = 2**63 - 1
"""The largest ``seq`` (int64's): a larger one is malformed, not a sequence number to follow."""

_NUMBER = (int, float)  # msgpack gives either; true/false (bool) is neither here
_NUMBER_SET = frozenset(_NUMBER)
_NIL = type(None)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "v": (int,),
    "kind": (str,),
    "publisher": (str,),
    "seq": (int,),
    "emit_time": _NUMBER,
    "stream": (str,),
    "sample": (int,),
    "step": (int,),
    "t_start_us": (int,),
    "t_end_us": (int,),
    "class": (int,),
    "confidence": _NUMBER,
    "probs": (list, _NIL),  # of numbers
    "top_k": (list, _NIL),  # of [class, probability]
    "final": (bool,),
    "reason": (str, _NIL),
    "label": (int, _NIL),
    "input_latency_ms": _NUMBER,
    "compute_latency_ms": _NUMBER,
    "e2e_latency_ms": _NUMBER,
    "spikes": _NUMBER,
    "synaptic_events": _NUMBER,
    "energy_uj": _NUMBER,
    "cached": (bool,),
    "run": (int, _NIL),
}
"""The type of every header and prediction field (what ``unpack`` accepts)."""
FRAME_TYPES: dict[str, tuple[type, ...]] = {
    **{name: FIELD_TYPES[name] for name in HEADER},
    "stream": (str,),
    "t_start_us": (int,),
    "t_end_us": (int,),
    "width": (int,),
    "height": (int,),
    "scale": (int,),
    "events": (int,),
    "on": (bytes,),
    "off": (bytes,),
    "run": (int, _NIL),
}
"""The type of every frame field."""
BODY_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "heartbeat": {"last_seq": (dict,), "published": (int,), "subscribers": (int,)},
    "summary": {"last_seq": (dict,), "published": (int,), "report": (dict, _NIL)},
}
"""The fields of a heartbeat's and a summary's map."""
OPTIONAL_BODY_TYPES: dict[str, tuple[type, ...]] = {
    "run": FIELD_TYPES["run"],
    "threshold": (int, float, _NIL),
    "counters": (dict,),
}
"""Fields a heartbeat's or summary's map may have besides (appended within version 1)."""
_PREDICTION_TYPES = tuple(FIELD_TYPES[f] for f in PREDICTION)
_HEADER_TYPES = _PREDICTION_TYPES[: len(HEADER)]
_FRAME_TYPES = tuple(FRAME_TYPES[f] for f in FRAME)
# type signatures (the type of every field) of predictions that passed every type check: a payload
# of one of them needs only its values checked (about three times cheaper; bounded, as fields
# appended in later 1.x versions are part of a signature)
_ACCEPTED: set[tuple[type, ...]] = set()
_MAX_ACCEPTED = 256
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a map"}
_TYPE_NAMES |= {bool: "true or false", _NIL: "nil", bytes: "bytes"}


class WireError(ValueError):
    """A message that is not streamsnn's wire format."""


class NewerSchemaError(WireError):
    """A message of a schema version newer than this code reads."""


def prediction_topic(stream: str) -> str:
    """The topic of ``stream``'s predictions (SUB filters match it by prefix)."""
    return PREDICTION_PREFIX + stream


def prediction_payload(
    pred: Prediction,
    publisher: str,
    seq: int,
    emit_time: float,
    top_k: int | None = None,
    run: int | None = None,
) -> list[Any]:
    """``pred`` as a schema-1 payload (``PREDICTION`` order); ``top_k`` keeps only the k most
    probable classes; ``run``: the publisher's start (µs)."""
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
        run,
    ]


def frame_topic(stream: str) -> str:
    """The topic of ``stream``'s event frames."""
    return FRAME_PREFIX + stream


def frame_payload(
    stream: str,
    publisher: str,
    seq: int,
    emit_time: float,
    span_us: tuple[int, int],
    scale: int,
    events: int,
    on: Any,
    off: Any,
    run: int | None = None,
) -> list[Any]:
    """A frame payload (``FRAME`` order): ``on``/``off`` height×width arrays of counts (any
    numeric dtype; clipped to 0..255 here), ``span_us`` the events' sensor time (µs)."""
    height, width = on.shape
    on_bytes, off_bytes = (a.clip(0, 255).astype("uint8").tobytes() for a in (on, off))
    header = [SCHEMA_VERSION, "frame", publisher, seq, emit_time]
    return [
        *header,
        stream,
        int(span_us[0]),
        int(span_us[1]),
        width,
        height,
        scale,
        events,
        on_bytes,
        off_bytes,
        run,
    ]


def control_payload(kind: str, publisher: str, seq: int, emit_time: float, body: dict[str, Any]) -> list[Any]:
    """A heartbeat or summary payload: the header, then ``body`` (plain types only)."""
    return [SCHEMA_VERSION, kind, publisher, seq, emit_time, json.loads(json.dumps(body, default=str))]


def run_of(payload: Sequence[Any]) -> int | None:
    """The publisher's run (its start, µs) a checked payload carries, or None (an older publisher)."""
    if payload[KIND] == "prediction":
        return payload[RUN] if len(payload) > RUN else None
    if payload[KIND] == "frame":
        return payload[FRAME_RUN]
    return payload[BODY].get("run")


def as_dict(payload: Sequence[Any]) -> dict[str, Any]:
    """A checked payload with its fields named (a control message's map merged in)."""
    if payload[KIND] == "prediction":
        return dict(zip(PREDICTION, payload, strict=False))
    if payload[KIND] == "frame":
        return dict(zip(FRAME, payload, strict=False))
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
        and tuple(map(type, payload)) in _ACCEPTED
    ):  # the common case: every type as in a prediction checked before; the values to check
        _check_header(topic, payload)
        _check_prediction(topic, payload)
        return topic, payload
    if not isinstance(payload, list) or len(payload) < len(HEADER):
        what = f"{len(payload)} fields" if isinstance(payload, list) else f"a {type(payload).__name__}"
        raise WireError(f"{topic}: payload is {what}, not an array of at least {len(HEADER)} (v, kind, ...)")
    version, kind = payload[V], payload[KIND]
    if type(version) is not int:
        raise WireError(f"{topic}: schema version (field 0) is {version!r}, not an integer")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{topic}: schema version {version} is newer than this subscriber's ({SCHEMA_VERSION}); "
            "upgrade streamsnn to read it"
        )
    if version < 1:
        raise WireError(
            f"{topic}: schema version {version} does not exist (this subscriber reads 1..{SCHEMA_VERSION})"
        )
    if kind == "prediction":
        if len(payload) < _N_PREDICTION:
            missing = ", ".join(PREDICTION[len(payload) : _N_PREDICTION])
            raise WireError(f"{topic}: prediction has {len(payload)} fields, lacks {missing}")
        _check_types(topic, PREDICTION, payload, _PREDICTION_TYPES)
        _check_header(topic, payload)
        _check_prediction(topic, payload)
        if len(_ACCEPTED) < _MAX_ACCEPTED:
            _ACCEPTED.add(tuple(map(type, payload)))
    elif kind in BODY_TYPES:
        if len(payload) <= BODY or type(payload[BODY]) is not dict:
            raise WireError(f"{topic}: {kind} has no map of fields after the header")
        _check_types(topic, HEADER, payload, _HEADER_TYPES)
        _check_header(topic, payload)
        _check_body(topic, kind, payload[BODY])
    elif kind == "frame":
        if len(payload) < len(FRAME):
            raise WireError(
                f"{topic}: frame has {len(payload)} fields, lacks {', '.join(FRAME[len(payload) :])}"
            )
        _check_types(topic, FRAME, payload, _FRAME_TYPES)
        _check_header(topic, payload)
        _check_frame(topic, dict(zip(FRAME, payload, strict=False)))
    else:
        raise WireError(f"{topic}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    return topic, payload


def _check_types(
    topic: str, names: Sequence[str], values: Sequence[Any], types: Sequence[tuple[type, ...]]
) -> None:
    """Every value of ``names`` of one of its ``types`` (what follows the names is not checked)."""
    for name, value, allowed in zip(names, values, types, strict=False):
        if type(value) not in allowed:
            raise _wrong_type(topic, name, value, allowed)


def _check_header(topic: str, payload: list[Any]) -> None:
    """``seq`` within 1..``MAX_SEQ`` and ``emit_time`` finite (their types checked)."""
    seq, emit_time = payload[SEQ], payload[EMIT_TIME]
    if not 0 < seq <= MAX_SEQ:
        raise WireError(f"{topic}: seq is {seq}, not in 1..2**63 - 1")
    if not math.isfinite(emit_time):
        raise WireError(f"{topic}: emit_time is {emit_time!r}, not a finite Unix time")


def _check_prediction(topic: str, payload: list[Any]) -> None:
    """What a prediction's arrays hold: ``probs`` numbers, ``top_k`` [class, probability] pairs;
    one of them given."""
    probs, top_k = payload[PROBS], payload[TOP_K]
    if probs is not None and not set(map(type, probs)) <= _NUMBER_SET:
        raise WireError(f"{topic}: probs holds {_shown(probs)}, not only numbers")
    if top_k is not None:
        for pair in top_k:
            if (
                type(pair) is not list
                or len(pair) != 2
                or type(pair[0]) is not int
                or type(pair[1]) not in _NUMBER
            ):
                raise WireError(f"{topic}: top_k holds {_shown(pair)}, not a [class, probability] pair")
    elif probs is None:
        raise WireError(f"{topic}: probs and top_k are both nil")


def _check_frame(topic: str, frame: dict[str, Any]) -> None:
    """A frame's sizes: sides in 1..``MAX_FRAME_SIDE``, a positive scale, ``on``/``off`` one byte
    per pixel, counts and times not negative."""
    width, height = frame["width"], frame["height"]
    for name in ("width", "height"):
        if not 0 < frame[name] <= MAX_FRAME_SIDE:
            raise WireError(f"{topic}: {name} is {frame[name]}, not in 1..{MAX_FRAME_SIDE}")
    if frame["scale"] < 1 or frame["events"] < 0:
        raise WireError(f"{topic}: scale {frame['scale']} or events {frame['events']} out of range")
    for name in ("on", "off"):
        if len(frame[name]) != width * height:
            raise WireError(
                f"{topic}: {name} holds {len(frame[name])} bytes, not {width}×{height} = {width * height}"
            )


def _check_body(topic: str, kind: str, body: dict[Any, Any]) -> None:
    """A heartbeat's or summary's map: every field of ``BODY_TYPES``, ``run`` if there, and
    ``last_seq`` a map of topics to sequence numbers."""
    for name, allowed in BODY_TYPES[kind].items():
        if name not in body:
            raise WireError(f"{topic}: {kind} lacks {name}")
        if type(body[name]) not in allowed:
            raise _wrong_type(topic, name, body[name], allowed)
    for name, allowed in OPTIONAL_BODY_TYPES.items():
        if name in body and type(body[name]) not in allowed:
            raise _wrong_type(topic, name, body[name], allowed)
    for key, seq in body["last_seq"].items():
        if type(key) is not str or type(seq) is not int or not 0 < seq <= MAX_SEQ:
            raise WireError(
                f"{topic}: last_seq maps {_shown(key)} to {_shown(seq)}, not a topic to a seq in 1..2**63 - 1"
            )


def _wrong_type(topic: str, name: str, value: Any, allowed: tuple[type, ...]) -> WireError:
    expected = [_TYPE_NAMES[t] for t in allowed if not (t is int and float in allowed)]
    return WireError(f"{topic}: {name} is {_shown(value)}, not {' or '.join(expected)}")


def _shown(value: Any) -> str:
    """``value`` for an error message, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
