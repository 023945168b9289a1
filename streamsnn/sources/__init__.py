"""Sources of event and frame streams, one interface for datasets, files and live devices."""

from __future__ import annotations

from typing import Any

from streamsnn.sources.base import Source, SourceBase, sample_range
from streamsnn.sources.camera import CameraSource, WebcamSource
from streamsnn.sources.digits import DigitsDVS, DigitsFrames
from streamsnn.sources.event_datasets import DATASETS, EventDatasetSource
from streamsnn.sources.recordings import RecordingSource
from streamsnn.sources.streams import Member, StreamsSource
from streamsnn.sources.udp import UDPSource

SOURCES: dict[str, type] = {
    "digits_dvs": DigitsDVS,
    "digits_frames": DigitsFrames,
    "recording": RecordingSource,
    "udp": UDPSource,
    "camera": CameraSource,
    "webcam": WebcamSource,
}


def make_source(name: str, **options: Any) -> Source:
    """The source called ``name`` with its options (as in ``pipeline.yaml``)."""
    if name in DATASETS:
        return EventDatasetSource(name, **options)
    if name == "streams":
        return open_streams(**options)
    if name not in SOURCES:
        raise KeyError(f"unknown source '{name}'; known: {', '.join([*SOURCES, 'streams', *DATASETS])}")
    return SOURCES[name](**options)


__all__ = [
    "SOURCES",
    "CameraSource",
    "DigitsDVS",
    "DigitsFrames",
    "EventDatasetSource",
    "RecordingSource",
    "Source",
    "SourceBase",
    "StreamsSource",
    "UDPSource",
    "WebcamSource",
    "make_source",
]


def open_streams(sources: list[dict[str, Any]], offset: int = 0, limit: int | None = None) -> StreamsSource:
    """The ``streams`` source: ``sources[offset : offset + limit]`` (each a mapping with its
    ``type``, as in ``pipeline.yaml``) opened and read together; errors name ``sources[i]``, and
    what was opened is closed again."""
    positions = sample_range(len(sources), offset, limit)
    if not positions:
        raise ValueError(f"offset {offset} selects none of the {len(sources)} sources")
    members: list[Member] = []
    try:
        for i in positions:
            options = dict(sources[i])
            kind = options.pop("type")
            try:
                members.append(Member(i, kind, make_source(kind, **options)))
            except (OSError, ValueError, KeyError) as err:
                raise ValueError(f"sources[{i}] ({kind}): {err}") from None
        return StreamsSource(members)
    except BaseException:
        for member in members:
            member.source.close()
        raise
