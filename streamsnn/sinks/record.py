"""Record a source's events to AEDAT4 with dv-processing, for a bit-exact replay later.

The ``record`` sink sees the source's packets (in the source thread, before slicing, so it
holds everything the source delivered, also what a live pipeline later drops when behind) and
ignores predictions. One file per stream: ``path`` may contain ``{stream}`` (characters other
than letters, digits, ``-``, ``_`` and ``.`` become ``_``); without it the sink takes one stream
and refuses a second. Time stamps (µs), coordinates and polarities are written as they are, so
``type: recording`` replays the session event for event.

AEDAT4 holds events in time order only: a packet is stably sorted by time, and an event older
than the newest one already written is left out of the file and counted (``late_events``).
Cameras and the UDP source (stamps on arrival) never produce those.

dv-processing's Python API takes events one at a time (about 0.6 M events/s here); faster
streams hold up the source thread, which a live source turns into counted drops.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from streamsnn.events import Packet, Sensor
from streamsnn.options import Options
from streamsnn.prediction import Prediction
from streamsnn.sinks.base import SINKS, Sink


class RecordSinkConfig(Options):
    """The source's events to AEDAT4 (dv-processing), to replay the session later with
    ``type: recording``."""

    type: Literal["record"] = "record"
    path: str = Field(description="the AEDAT4 file; {stream} in it gives one file per stream")


@SINKS.register(RecordSinkConfig)
class RecordSink(Sink):
    needs_events = True

    def __init__(self, config: RecordSinkConfig) -> None:
        self.path = config.path
        self._writers: dict[str, tuple[Any, Path]] = {}
        self._newest: dict[str, int] = {}
        self.events_written = 0
        self.late_events = 0

    def file_for(self, stream: str) -> Path:
        """The file that holds ``stream``."""
        if "{stream}" in self.path:
            return Path(self.path.replace("{stream}", re.sub(r"[^\w.-]", "_", stream)))
        return Path(self.path)

    def write_packet(self, packet: Packet, sensor: Sensor) -> None:
        """Append the packet's events to its stream's file."""
        import dv_processing as dv

        entry = self._writers.get(packet.stream)
        if entry is None:
            path = self.file_for(packet.stream)
            if any(p == path for _, p in self._writers.values()):
                raise ValueError(
                    f"record sink: a second stream '{packet.stream}' would share {path}; put {{stream}} in "
                    "sinks[].path"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            config = dv.io.MonoCameraWriter.EventOnlyConfig("streamsnn", (sensor.width, sensor.height))
            entry = self._writers[packet.stream] = (dv.io.MonoCameraWriter(str(path), config), path)
        events = packet.data
        if len(events) and np.any(np.diff(events["t"]) < 0):
            events = events[np.argsort(events["t"], kind="stable")]
        newest = self._newest.get(packet.stream)
        if newest is not None and len(events) and events["t"][0] < newest:
            keep = events["t"] >= newest
            self.late_events += int((~keep).sum())
            events = events[keep]
        if not len(events):
            return
        self._newest[packet.stream] = int(events["t"][-1])
        store = dv.EventStore()
        for t, x, y, p in zip(
            events["t"].tolist(),
            events["x"].tolist(),
            events["y"].tolist(),
            (events["p"] > 0).tolist(),
            strict=True,
        ):
            store.push_back(t, x, y, p)
        entry[0].writeEvents(store)
        self.events_written += len(events)

    def write(self, pred: Prediction) -> None:
        """Predictions are not recorded."""

    def counters(self) -> dict[str, int]:
        return {"recorded_events": self.events_written, "late_events_not_recorded": self.late_events}

    def close(self) -> None:
        self._writers.clear()  # dropping a writer finishes its file
