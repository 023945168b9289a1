"""A command run with a small, real tmpfs mounted at a folder: a disk that fills up (ENOSPC).

The tmpfs is mounted in a mount namespace of the command's own (``unshare``, as root or in a
user namespace), so nothing outside it sees the mount; what the command left on it is copied to
``<folder>.copy`` before the namespace ends. Tests that need it skip where it cannot be done.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "streamsnn.cli"]


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k streamsnn-probe $d && umount $d && rmdir $d"
    try:
        done = subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


needs_small_disk = pytest.mark.skipif(not can_mount(), reason="cannot mount a tmpfs here (unshare -rm)")


def run_on_small_disk(
    disk: Path, size_kb: int, args: list[str], cwd: Path, prepare: str = "", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``streamsnn ARGS`` with a ``size_kb`` tmpfs at ``disk`` (``prepare``: shell commands run in
    it first, e.g. to fill it); the disk's files end up in ``disk.copy`` (``copied``)."""
    disk.mkdir(parents=True, exist_ok=True)
    copy = copied(disk)
    copy.mkdir(exist_ok=True)
    command = shlex.join([*CLI, *args])
    script = (
        f"mount -t tmpfs -o size={size_kb}k streamsnn-test {shlex.quote(str(disk))} || exit 99\n"
        f"cd {shlex.quote(str(disk))} && {prepare or 'true'}\n"
        f"cd {shlex.quote(str(cwd))} && {command}\n"
        f"rc=$?; cp -a {shlex.quote(str(disk))}/. {shlex.quote(str(copy))}/; exit $rc\n"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode != 99, done.stderr
    return done


def copied(disk: Path) -> Path:
    """Where ``run_on_small_disk`` leaves what was on ``disk``."""
    return disk.with_name(disk.name + ".copy")


def fill(reserve_kb: int = 0) -> str:
    """Shell commands (for ``prepare``) that fill the current disk, leaving ``reserve_kb`` free
    (a file ``reserve`` of that size is written first and removed after)."""
    reserve = f"head -c {reserve_kb * 1024} /dev/zero > reserve && " if reserve_kb else ""
    freed = " && rm reserve" if reserve_kb else ""
    return f"{reserve}(head -c 1000000000 /dev/zero > filler 2>/dev/null; true){freed}"
