"""Where predictions go: ZeroMQ subscribers (``zmq``), JSONL files and the console; ``record``
writes the source's events to AEDAT4 (looked up by ``type``).

Every sink has ``write(pred)`` (called from the sink thread) and ``close()``. Optional hooks the
runner calls when present: ``start()`` before the run starts, ``write_packet(packet, sensor)``
for every source packet, ``finish(report)`` with the run's report before ``close()``."""

from __future__ import annotations

from typing import Any, Protocol

from streamsnn.prediction import Prediction
from streamsnn.sinks.console import ConsoleSink
from streamsnn.sinks.jsonl import JsonlSink
from streamsnn.sinks.record import RecordSink
from streamsnn.sinks.zeromq import ZmqSink


class Sink(Protocol):
    def write(self, pred: Prediction) -> None: ...

    def close(self) -> None: ...


SINKS: dict[str, type] = {"zmq": ZmqSink, "jsonl": JsonlSink, "console": ConsoleSink, "record": RecordSink}


def make_sink(name: str, **options: Any) -> Sink:
    """The sink called ``name`` with its options (as in ``pipeline.yaml``)."""
    if name not in SINKS:
        raise KeyError(f"unknown sink '{name}'; known: {', '.join(SINKS)}")
    return SINKS[name](**options)


__all__ = ["SINKS", "ConsoleSink", "JsonlSink", "RecordSink", "Sink", "ZmqSink", "make_sink"]
