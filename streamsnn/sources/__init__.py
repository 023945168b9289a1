"""Sources of event and frame streams, one interface for datasets, files and live devices."""

from __future__ import annotations

from typing import Any

from streamsnn.sources.base import Packet, Source, SourceBase
from streamsnn.sources.digits import DigitsDVS, DigitsFrames

SOURCES: dict[str, type] = {"digits_dvs": DigitsDVS, "digits_frames": DigitsFrames}


def make_source(name: str, **options: Any) -> Source:
    """The source called ``name`` with its options (as in ``pipeline.yaml``)."""
    if name not in SOURCES:
        raise KeyError(f"unknown source '{name}'; known: {', '.join(SOURCES)}")
    return SOURCES[name](**options)


__all__ = ["SOURCES", "DigitsDVS", "DigitsFrames", "Packet", "Source", "SourceBase", "make_source"]
