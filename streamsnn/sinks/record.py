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

dv-processing's writer runs in a child process (``python -c``, fed through a pipe): on a write
error (a full disk) its writer thread aborts its whole process, which here ends only the child;
the sink then raises an error naming the file and dv-processing's message, and the run goes on
without it. The child ignores SIGINT and SIGTERM and finishes the file at the end of its input,
also when the run is killed (SIGKILL): a recording keeps every packet handed to it. Its Python
API takes events one at a time (about 0.6 M events/s here); faster streams fill the pipe and
then hold up the source thread, which a live source turns into counted drops. While a run
writes a file it holds the file's lock: a second run recording to the same path is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from pydantic import Field

from streamsnn.events import EVENT_DTYPE, Packet, Sensor
from streamsnn.options import Options
from streamsnn.prediction import Prediction
from streamsnn.sinks.base import SINKS, Sink
from streamsnn.sinks.jsonl import lock_for_writing

PIPE_BYTES = 1 << 20  # the pipe to the writer (asked for on Linux; the default is 64 KiB)
FINISH_S = 60.0  # longest wait for the writer to finish its file once its input ended
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# the writer process: stop signals ignored first (the run ends it by closing its input)
_CHILD = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); import sys; sys.path.insert(0, sys.argv[1]); "
    "from streamsnn.sinks.record import write_aedat4; "
    "write_aedat4(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.stdin.buffer)"
)


class RecordSinkConfig(Options):
    """The source's events to AEDAT4 (dv-processing), to replay the session later with
    ``type: recording``."""

    type: Literal["record"] = "record"
    path: str = Field(description="the AEDAT4 file; {stream} in it gives one file per stream")


@SINKS.register(RecordSinkConfig)
class RecordSink(Sink):
    needs_events = True

    def __init__(self, config: RecordSinkConfig) -> None:
        self.path = self.target = config.path
        self._writers: dict[str, Aedat4Writer] = {}
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
        writer = self._writers.get(packet.stream)
        if writer is None:
            path = self.file_for(packet.stream)
            if any(w.path == path for w in self._writers.values()):
                raise ValueError(
                    f"record sink: a second stream '{packet.stream}' would share {path}; put {{stream}} in "
                    "sinks[].path"
                )
            writer = self._writers[packet.stream] = Aedat4Writer(path, sensor)
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
        writer.write(events)
        self.events_written += len(events)

    def write(self, pred: Prediction) -> None:
        """Predictions are not recorded."""

    def counters(self) -> dict[str, int]:
        return {"recorded_events": self.events_written, "late_events_not_recorded": self.late_events}

    def close(self) -> None:
        """Finish every file (then raise the first writer's error, if one failed)."""
        writers, self._writers = list(self._writers.values()), {}
        errors = []
        for writer in writers:
            try:
                writer.close()
            except OSError as err:
                errors.append(err)
        if errors:
            raise errors[0]


class Aedat4Writer:
    """One AEDAT4 file written by dv-processing in a child process (``write_aedat4``), fed
    ``EVENT_DTYPE`` packets through a pipe (a count, 8 bytes little-endian, then the events)."""

    def __init__(self, path: Path, sensor: Sensor) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = lock_for_writing(path)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        args = [_PACKAGE_ROOT, str(path), str(sensor.width), str(sensor.height)]
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,  # a terminal's Ctrl-C goes to the run, which then ends the writer
        )
        assert self._proc.stdin is not None
        self._stdin = self._proc.stdin
        with contextlib.suppress(OSError, AttributeError, ImportError):  # F_SETPIPE_SZ: Linux only
            import fcntl

            fcntl.fcntl(self._stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    def write(self, events: np.ndarray) -> None:
        data = np.ascontiguousarray(events, dtype=EVENT_DTYPE)
        try:
            self._stdin.write(len(data).to_bytes(8, "little") + data.tobytes())
            self._stdin.flush()
        except OSError:  # the writer is gone (a broken pipe): its own message says why
            raise self._failure() from None

    def close(self) -> None:
        """End the input and wait for the writer to finish the file (``OSError`` if it failed)."""
        try:
            with contextlib.suppress(OSError):
                self._stdin.close()
            if self._wait() != 0:
                raise self._failure()
        finally:
            os.close(self._lock)
            self._stderr.close()

    def _wait(self) -> int:
        try:
            return self._proc.wait(timeout=FINISH_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            late = f"dv-processing's writer did not finish within {FINISH_S:g} s"
            raise OSError(f"{self.path}: {late}") from None

    def _failure(self) -> OSError:
        """The writer's end in its own words: dv-processing's error line, else its last line."""
        code = self._wait()
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines()]
        errors = [line for line in lines if re.match(r"\w*Error: ", line)]
        reason = errors[0] if errors else next((line for line in reversed(lines) if line), "no message")
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        return OSError(f"{self.path}: dv-processing's writer stopped ({how}): {reason}")


def write_aedat4(path: str, width: int, height: int, stream: BinaryIO) -> None:
    """The writer process: ``EVENT_DTYPE`` packets from ``stream`` (see ``Aedat4Writer``) to the
    AEDAT4 file ``path`` until the input ends (a packet cut short by a killed run is left out)."""
    import dv_processing as dv

    config = dv.io.MonoCameraWriter.EventOnlyConfig("streamsnn", (width, height))
    writer = dv.io.MonoCameraWriter(path, config)
    while len(head := stream.read(8)) == 8:
        size = int.from_bytes(head, "little") * EVENT_DTYPE.itemsize
        data = stream.read(size)
        if len(data) < size:
            break
        events = np.frombuffer(data, dtype=EVENT_DTYPE)
        store = dv.EventStore()
        for t, x, y, p in zip(
            events["t"].tolist(),
            events["x"].tolist(),
            events["y"].tolist(),
            (events["p"] > 0).tolist(),
            strict=True,
        ):
            store.push_back(t, x, y, p)
        writer.writeEvents(store)
    del writer  # finishes the file
