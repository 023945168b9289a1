"""Sources of event and frame streams, one interface for datasets, files and live devices."""

from __future__ import annotations

from typing import Any

from streamsnn.sources.base import Packet, Source, SourceBase
from streamsnn.sources.camera import CameraSource, WebcamSource
from streamsnn.sources.digits import DigitsDVS, DigitsFrames
from streamsnn.sources.event_datasets import DATASETS, EventDatasetSource
from streamsnn.sources.recordings import RecordingSource
from streamsnn.sources.streams import StreamsSource
from streamsnn.sources.udp import UDPSource

SOURCES: dict[str, type] = {
    "digits_dvs": DigitsDVS,
    "digits_frames": DigitsFrames,
    "recording": RecordingSource,
    "udp": UDPSource,
    "camera": CameraSource,
    "webcam": WebcamSource,
    "streams": StreamsSource,
}


def make_source(name: str, **options: Any) -> Source:
    """The source called ``name`` with its options (as in ``pipeline.yaml``)."""
    if name in DATASETS:
        return EventDatasetSource(name, **options)
    if name not in SOURCES:
        raise KeyError(f"unknown source '{name}'; known: {', '.join([*SOURCES, *DATASETS])}")
    return SOURCES[name](**options)


__all__ = [
    "SOURCES",
    "CameraSource",
    "DigitsDVS",
    "DigitsFrames",
    "EventDatasetSource",
    "Packet",
    "RecordingSource",
    "Source",
    "SourceBase",
    "StreamsSource",
    "UDPSource",
    "WebcamSource",
    "make_source",
]
