"""JSON Lines: one prediction per line, ``final`` marks the exit decision.

- **One run per file**: the file is locked (``flock``) while a run writes it; a second run given
  the same path is refused rather than interleaving its lines into the first one's.
- **Whole lines**: lines are buffered here and written out after every group of predictions the
  runner hands over (``flush``), so a run killed with SIGKILL loses only what was still queued.
  When a write fails (a full disk) the file is cut back to its last complete line and the error
  says how many it holds.
- **Resuming a replay** (``resume: true``, set by ``streamsnn run --resume``): at start the file
  keeps the lines of the samples whose final prediction it holds and drops the others' (a sample
  cut short, a torn last line); the sink then appends and leaves out predictions of the samples
  it holds, which the run skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field

from streamsnn.options import ConfigError, Options
from streamsnn.prediction import Prediction
from streamsnn.sinks.base import SINKS, Sink

try:
    import fcntl
except ImportError:  # not on POSIX: no lock
    fcntl = None  # type: ignore[assignment]

FLUSH_BYTES = 1 << 16  # write out at least this often (bytes), also between flush() calls


class JsonlSinkConfig(Options):
    """One JSON line per prediction."""

    type: Literal["jsonl"] = "jsonl"
    path: str = Field(
        description="the file (its folder is created; an existing file is overwritten unless resume)"
    )
    final_only: bool = Field(False, description="write only exit decisions")
    resume: bool = Field(
        False,
        description="continue a replay's file: keep the samples whose final prediction it holds, drop "
        "the lines of the others, append; the run skips the samples kept (streamsnn run --resume)",
    )


def lock_for_writing(path: Path) -> int:
    """``path`` opened for writing (created, not truncated) and locked against other runs; a
    regular file only (``/dev/stdout`` and pipes are shared as they are). ``OSError`` naming
    the path and, where the system tells (Linux), the process holding it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    if fcntl is None or not stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(fd)
        os.close(fd)
        who = f"process {holder}" if holder is not None else "another run"
        raise OSError(
            f"{path} is being written by {who} (it holds the file's lock); two runs would interleave "
            "their lines: give this one another path, or stop the other"
        ) from None
    return fd


def lock_holder(fd: int) -> int | None:
    """The process holding a ``flock`` on ``fd``'s file, from ``/proc/locks`` (None elsewhere)."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()  # "1: FLOCK ADVISORY WRITE pid maj:min:inode start end"; "->" waits
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None


@SINKS.register(JsonlSinkConfig)
class JsonlSink(Sink):
    def __init__(self, config: JsonlSinkConfig) -> None:
        self.path = Path(config.path)
        self.target = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.final_only = config.final_only
        self.resumes = config.resume
        self._fd = lock_for_writing(self.path)
        self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        if self._regular and not self.resumes:
            os.ftruncate(self._fd, 0)
        self._size = os.lseek(self._fd, 0, os.SEEK_END) if self._regular else 0  # bytes in whole lines
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._held: set[tuple[str, int]] = set()
        self.written = 0  # lines handed to write()
        self.lines = 0  # whole lines in the file

    def start(self) -> None:
        if self.resumes:
            self._held = self._keep_complete_samples()

    def held_samples(self) -> set[tuple[str, int]]:
        return set(self._held)

    def write(self, pred: Prediction) -> None:
        if self.final_only and not pred.final:
            return
        if self._held and (pred.stream, pred.sample) in self._held:
            return
        line = (json.dumps(pred.to_dict(), separators=(",", ":")) + "\n").encode()
        self._pending.append(line)
        self._pending_bytes += len(line)
        self.written += 1
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines; on failure cut the file back to its last whole line and
        raise ``OSError`` saying so."""
        if not self._pending or self._fd < 0:
            return
        data = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as err:
            whole = data.rfind(b"\n", 0, done) + 1
            self._grow(data, whole)
            if self._regular:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                    os.lseek(self._fd, self._size, os.SEEK_SET)
            kept = f"{self.path} ends at its last whole line ({self.lines:,} predictions)"
            raise OSError(f"{err.strerror or err}: {kept}") from None
        self._grow(data, done)

    def _grow(self, data: bytes, written: int) -> None:
        self._size += written
        self.lines += data.count(b"\n", 0, written)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1

    def _keep_complete_samples(self) -> set[tuple[str, int]]:
        """Rewrite the file (a new file renamed over it, locked before) with the lines of the
        samples whose final line it holds; those samples."""
        if not self._regular:
            raise ConfigError(f"jsonl sink: cannot resume {self.path}: not a regular file")
        text = self.path.read_bytes()
        lines = text.split(b"\n")
        if lines and lines[-1]:  # a torn last line (a run killed while writing it)
            lines[-1] = b""
        parsed: list[tuple[tuple[str, int], bytes]] = []
        complete: set[tuple[str, int]] = set()
        for number, line in enumerate(lines[:-1], start=1):
            try:
                data = json.loads(line)
                key = (str(data["stream"]), int(data["sample"]))
                final = bool(data["final"])
            except (ValueError, KeyError, TypeError) as err:
                raise ConfigError(
                    f"jsonl sink: cannot resume {self.path}: line {number} is not a prediction ({err})"
                ) from None
            parsed.append((key, line))
            if final:
                complete.add(key)
        kept = b"".join(line + b"\n" for key, line in parsed if key in complete)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".resume")
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(fd, stat.S_IMODE(os.fstat(self._fd).st_mode))
            done = 0
            while done < len(kept):
                done += os.write(fd, kept[done:])
            os.replace(temp, self.path)
        except OSError as err:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise ConfigError(f"jsonl sink: cannot resume {self.path}: {err}") from None
        os.close(self._fd)
        self._fd, self._size = fd, len(kept)
        self.lines = kept.count(b"\n")
        return complete
