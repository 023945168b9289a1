"""Where predictions go: JSONL files and the console; ``record`` writes the source's events to
AEDAT4 (looked up by ``type``). A sink with ``write_packet`` sees every source packet."""

from __future__ import annotations

from typing import Any, Protocol

from streamsnn.prediction import Prediction
from streamsnn.sinks.console import ConsoleSink
from streamsnn.sinks.jsonl import JsonlSink
from streamsnn.sinks.record import RecordSink


class Sink(Protocol):
    def write(self, pred: Prediction) -> None: ...

    def close(self) -> None: ...


SINKS: dict[str, type] = {"jsonl": JsonlSink, "console": ConsoleSink, "record": RecordSink}


def make_sink(name: str, **options: Any) -> Sink:
    """The sink called ``name`` with its options (as in ``pipeline.yaml``)."""
    if name not in SINKS:
        raise KeyError(f"unknown sink '{name}'; known: {', '.join(SINKS)}")
    return SINKS[name](**options)


__all__ = ["SINKS", "ConsoleSink", "JsonlSink", "RecordSink", "Sink", "make_sink"]
