"""Every shell command of the README runs as pasted.

The commands are those of the README's ```bash, ```sh, ```shell and ```console code blocks (in a
console block, the lines starting with ``$ ``); a line ending in ``\\`` continues on the next one.
Each block runs as a user pastes it, command after command, in a fresh copy of the repository's
tracked files (its outputs go there; the tracked files must stay as they are), with the test's
Python environment as ``.venv`` and this checkout's package imported. A command ending in ``&``
runs in the background and must end with status 0 by the end of its block.

Every command runs unless ``NOT_RUN`` says why it cannot here. Commands that take long run in a
short version: ``SHORTER`` adds arguments after a piece of the README's text, ``REPLACED`` puts
other text in its place (less data, fewer epochs, a free port); each piece must still be in the
README. Blocks holding a command
of ``SLOW`` (over a minute even shortened) are marked ``slow``. ``STREAMSNN_README_FULL=1`` runs
the commands exactly as written (what the README's time estimates were measured with); the time
each command took is printed (``pytest -s``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SHELL_BLOCKS = ("bash", "sh", "shell", "console")
FULL = os.environ.get("STREAMSNN_README_FULL") == "1"

# README command (a regular expression searched in it) → why it is not run here
NOT_RUN = {
    r"^make\b": "a make target sets up .venv first (installs packages); what it then runs is a README "
    "command of its own here, or the test suite itself",
    r"^(python3? -m )?pip3? install\b": "installs packages (from the network)",
    r"^python3? -m (venv|build)\b": "makes a virtual environment or a wheel: tests/test_packaging.py does",
    r"^git clone\b": "needs the network",
    r"--ray-address auto|^ray start\b": "needs a running Ray cluster",
    r"\bcuda\b": "needs a GPU (this machine has none)",
    r"type: camera\b": "needs a USB event camera",
    r"^streamsnn dashboard\b": "serves until stopped: tests/dashboard/test_browser.py runs it with a live "
    "pipeline and a browser",
}

# a piece of a README command → arguments added right after it: the same command on less data or
# fewer epochs
SHORTER = {
    "--set policy.exit.threshold=0.95": "--set source.limit=40",
    "--set runtime.realtime=true": "--set source.limit=6",
    "--output preds.jsonl --resume": "--set source.limit=60",
    "streamsnn train configs/digits_dvs.yaml": "--set train.epochs=1",
    "streamsnn train configs/digits_dvs_policy.yaml": "--set train.epochs=2",
    "--set model.activation=relu": "--set train.epochs=1",
    "streamsnn convert builtin:digits_frames_2bit": "--steps 1,4",
    "streamsnn calibrate pipelines/digits_dvs.yaml": "--set source.limit=40",
    "calibration: runs/digits_dvs/calibration.json}'": "--set source.limit=40",
    "streamsnn evaluate pipelines/digits_dvs.yaml": "--set source.limit=40",
    "--live --unpaced --split val --scenario gaps": "--limit 6",
    "--live --split test --scenario gaps": "--limit 4 --set source.port={udp_port}",
}
# a piece of a README command → what runs in its place ({udp_port}, {tcp_port}: free ports here)
REPLACED = {
    "{type: digits_dvs, live: true, limit: 20}": "{type: digits_dvs, live: true, limit: 6}",
    "scenario: gaps, limit: 20}": "scenario: gaps, limit: 4, gap_max_ms: 300}",
    "--scale global=20,layer=60": "--scale global=2,layer=2 --steps 1,4 --split val",
    "--limit 20 --port 3333": "--limit 3 --port {udp_port}",
    "127.0.0.1:5556": "127.0.0.1:{tcp_port}",
}

# README commands that take over a minute even shortened: their blocks are marked slow
SLOW = {"streamsnn train configs/digits_dvs_policy.yaml"}


@dataclass
class Block:
    line: int  # of the opening fence
    heading: str
    commands: list[str]


def strip_comment(line: str) -> str:
    """``line`` without its shell comment (a ``#`` after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_blocks(text: str) -> list[Block]:
    """The README's shell code blocks and their commands."""
    blocks: list[Block] = []
    heading, lines, fence = "", None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if lines is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            elif line.startswith("```") and line[3:].split()[:1] and line[3:].split()[0] in SHELL_BLOCKS:
                lines, fence, console = [], number, line[3:].split()[0] == "console"
            continue
        if line.startswith("```"):
            blocks.append(Block(fence, heading, commands_of(lines)))
            lines = None
        elif not console:
            lines.append(line)
        elif line.startswith("$ ") or (lines and lines[-1].endswith("\\")):
            lines.append(line.removeprefix("$ "))
    return blocks


def commands_of(lines: list[str]) -> list[str]:
    commands, pending = [], ""
    for line in lines:
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        if strip_comment(pending):
            commands.append(strip_comment(pending))
        pending = ""
    return commands


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def not_run(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN.items() if re.search(pattern, command)), None)


def shortened(command: str, ports: dict[str, int]) -> str:
    if not FULL:
        for piece, extra in SHORTER.items():
            command = command.replace(piece, f"{piece} {extra}")
        for piece, instead in REPLACED.items():
            command = command.replace(piece, instead)
    for name, port in ports.items():
        command = command.replace(f"{{{name}}}", str(port))
    return command


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tracked_copy(dest: Path) -> dict[str, str]:
    """The repository's tracked files copied to ``dest`` (symbolic links kept); their digests."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the README test copies the tracked files")
    digests = {}
    for name in filter(None, listed.stdout.decode().split("\0")):
        src, dst = ROOT / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            dst.write_bytes(src.read_bytes())
            digests[name] = hashlib.sha256(dst.read_bytes()).hexdigest()
    return digests


def environment(copy: Path) -> dict[str, str]:
    """The user's shell after ``. .venv/bin/activate``, importing the copy's package."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(copy)}
    env.pop("PYTHONSTARTUP", None)
    return env


def test_readme_commands_are_runnable_text():
    """No optional-argument brackets or placeholders in a code block: what is shown runs."""
    assert BLOCKS, "no shell code blocks found in README.md"
    for block in BLOCKS:
        for command in block.commands:
            tokens = shlex.split(command.rstrip("&"))
            bad = [t for t in tokens if re.match(r"\[-", t) or re.fullmatch(r"[A-Z][A-Z_]{2,}(\.\w+)?", t)]
            assert not bad, f"README line {block.line}: {command!r} shows {bad}: write a command that runs"


def test_every_shortening_still_matches_the_readme():
    commands = [c for b in BLOCKS for c in b.commands]
    stale = [piece for piece in [*SHORTER, *REPLACED, *SLOW] if not any(piece in c for c in commands)]
    assert not stale, f"tests/test_readme.py: not in any README command any more: {stale}"


def block_params():
    for block in BLOCKS:
        slow = any(piece in c for c in block.commands for piece in SLOW)
        name = f"L{block.line}-{re.sub(r'[^a-z0-9]+', '-', block.heading.lower()).strip('-')[:40]}"
        yield pytest.param(block, id=name, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("block", list(block_params()))
def test_readme_block_runs_as_pasted(block, tmp_path):
    runnable = [c for c in block.commands if not not_run(c)]
    if not runnable:
        pytest.skip("; ".join(sorted({f"{c}: {not_run(c)}" for c in block.commands})))
    copy = tmp_path / "checkout"
    digests = tracked_copy(copy)
    if sys.prefix != sys.base_prefix:  # `. .venv/bin/activate`
        (copy / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    env = environment(copy)
    ports = {"udp_port": free_port(socket.SOCK_DGRAM), "tcp_port": free_port(socket.SOCK_STREAM)}
    logs = tmp_path / "logs"
    logs.mkdir()
    background: list[tuple[str, subprocess.Popen, Path, float]] = []
    try:
        for i, readme_command in enumerate(block.commands):
            if not_run(readme_command):
                print(f"not run: {readme_command}  ({not_run(readme_command)})")
                continue
            command = shortened(readme_command, ports)
            in_background = command.endswith("&")
            command = command.removesuffix("&").rstrip()
            err = logs / f"{i}.err"
            with open(logs / f"{i}.out", "w") as out, open(err, "w") as errors:
                started = time.monotonic()
                proc = subprocess.Popen(
                    ["bash", "-c", command],
                    cwd=copy,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=errors,
                    start_new_session=True,
                )
            if in_background:
                background.append((command, proc, err, started))
                continue
            finish(command, proc, err, started)
        for command, proc, err, started in background:
            finish(command, proc, err, started)
    finally:
        for _, proc, _, _ in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    changed = [n for n, d in digests.items() if hashlib.sha256((copy / n).read_bytes()).hexdigest() != d]
    assert not changed, f"README line {block.line}: commands wrote over tracked files {changed}"


def finish(command: str, proc: subprocess.Popen, err: Path, started: float) -> None:
    """Wait for ``command`` (bounded; started at ``started``, monotonic s) and fail, with its error
    output, unless it ended with status 0."""
    try:
        proc.wait(timeout=1800 if FULL else 600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"{command!r} did not end in time; its error output:\n{tail(err)}")
    print(f"{time.monotonic() - started:7.1f} s  {command}")
    assert proc.returncode == 0, f"{command!r} ended with status {proc.returncode}:\n{tail(err)}"


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` non-empty lines of a log (progress bars split at their carriage returns)."""
    text = path.read_text(errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])
