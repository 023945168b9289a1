"""Where predictions go: JSONL files and the console (looked up by ``type``)."""

from __future__ import annotations

from typing import Any, Protocol

from streamsnn.prediction import Prediction
from streamsnn.sinks.console import ConsoleSink
from streamsnn.sinks.jsonl import JsonlSink


class Sink(Protocol):
    def write(self, pred: Prediction) -> None: ...

    def close(self) -> None: ...


SINKS: dict[str, type] = {"jsonl": JsonlSink, "console": ConsoleSink}


def make_sink(name: str, **options: Any) -> Sink:
    """The sink called ``name`` with its options (as in ``pipeline.yaml``)."""
    if name not in SINKS:
        raise KeyError(f"unknown sink '{name}'; known: {', '.join(SINKS)}")
    return SINKS[name](**options)


__all__ = ["SINKS", "ConsoleSink", "JsonlSink", "Sink", "make_sink"]
