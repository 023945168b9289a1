"""Sources of event and frame streams, one interface for datasets, files and live devices, each
registered by name with its options in ``SOURCES`` (``SOURCES.build(options)`` opens one)."""

from streamsnn.sources.base import SOURCES, SensorOptions, Source, SourceBase, sample_range
from streamsnn.sources.camera import CameraSource, CameraSourceConfig, WebcamSource, WebcamSourceConfig
from streamsnn.sources.digits import DigitsDVS, DigitsDVSSourceConfig, DigitsFrames, DigitsFramesSourceConfig
from streamsnn.sources.event_datasets import EventDatasetSource, EventDatasetSourceConfig
from streamsnn.sources.recordings import RecordingSource, RecordingSourceConfig
from streamsnn.sources.streams import StreamsSource, StreamsSourceConfig
from streamsnn.sources.udp import UDPSource, UDPSourceConfig

# every source is registered now: a streams source takes any of those that can be continuous
StreamsSourceConfig.model_rebuild(
    _types_namespace={"StreamMemberConfig": SOURCES.union(lambda cls: cls.continuous)}
)

__all__ = [
    "SOURCES",
    "CameraSource",
    "CameraSourceConfig",
    "DigitsDVS",
    "DigitsDVSSourceConfig",
    "DigitsFrames",
    "DigitsFramesSourceConfig",
    "EventDatasetSource",
    "EventDatasetSourceConfig",
    "RecordingSource",
    "RecordingSourceConfig",
    "SensorOptions",
    "Source",
    "SourceBase",
    "StreamsSource",
    "StreamsSourceConfig",
    "UDPSource",
    "UDPSourceConfig",
    "WebcamSource",
    "WebcamSourceConfig",
    "sample_range",
]
