"""Where predictions go: ZeroMQ subscribers (``zmq``), JSONL files and the console; ``record``
writes the source's events to AEDAT4. Each is registered by name with its options in ``SINKS``
(``SINKS.build(options)`` opens one); the hooks every sink has are those of ``Sink``."""

from streamsnn.sinks.base import SINKS, Sink
from streamsnn.sinks.console import ConsoleSink, ConsoleSinkConfig
from streamsnn.sinks.jsonl import JsonlSink, JsonlSinkConfig
from streamsnn.sinks.record import RecordSink, RecordSinkConfig
from streamsnn.sinks.zeromq import ZmqSink, ZmqSinkConfig

__all__ = [
    "SINKS",
    "ConsoleSink",
    "ConsoleSinkConfig",
    "JsonlSink",
    "JsonlSinkConfig",
    "RecordSink",
    "RecordSinkConfig",
    "Sink",
    "ZmqSink",
    "ZmqSinkConfig",
]
