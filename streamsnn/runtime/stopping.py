"""SIGINT (Ctrl-C) and SIGTERM (systemd, Docker, Kubernetes, Ray) during a run.

While ``stop_signals()`` is in force (``streamsnn run`` holds it), both signals stop the run:

- **the first** ends the work under way, as the end of the input would: inside ``deferred()``
  it only sets ``requested()``, which the runner checks at safe points (the stepping loop at
  every turn, the ANN reference pass between batches, a Ray driver between results); inside
  ``interruptible()`` (start-up: loading the config, building the pipeline, waiting for
  subscribers, starting Ray workers) or outside both it raises ``Interrupted``, a
  ``KeyboardInterrupt``, at once;
- **every later one** is noted on stderr and changes nothing: what runs then (flushing the sinks,
  writing the report, the ZeroMQ summary) is bounded and finishes. SIGKILL stops at once.

Without ``stop_signals()`` (a pipeline run from Python) SIGINT raises ``KeyboardInterrupt`` as
usual and SIGTERM keeps its default action; the runner treats a ``KeyboardInterrupt`` like a stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal (``signum``) ended start-up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    def __init__(self) -> None:
        self.active = False  # stop_signals() in force
        self.signum: int | None = None  # the first stop signal received
        self.received = 0  # stop signals received so far
        self.deferring = 0  # depth of deferred() regions


_state = _State()


def requested() -> bool:
    """A stop signal has come since ``stop_signals()`` took effect."""
    return _state.signum is not None


def signal_name(default: str = "SIGINT") -> str:
    """The first stop signal's name (``default`` when none came: a plain ``KeyboardInterrupt``)."""
    return signal.Signals(_state.signum).name if _state.signum is not None else default


def exit_code() -> int:
    """128 + the first stop signal's number: 130 for SIGINT (also a plain Ctrl-C), 143 for SIGTERM."""
    return 128 + (_state.signum or signal.SIGINT)


@contextlib.contextmanager
def stop_signals(restore: bool = True) -> Iterator[None]:
    """Handle SIGINT and SIGTERM as the module says (main thread only; elsewhere nothing
    changes), then restore the previous handlers; or, with ``restore=False`` (a program about to
    exit), ignore them from then on, so a late one cannot cut the exit short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    _state.signum, _state.received, _state.deferring, _state.active = None, 0, 0, True
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        _state.active = False
        for signum, handler in previous.items():
            signal.signal(signum, handler if restore else signal.SIG_IGN)
        if restore:
            _state.signum, _state.received = None, 0


def reclaim() -> None:
    """Handle the stop signals here again (after a library, such as Ray's ``init``, set its own)."""
    if _state.active and threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _handle)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within: a stop signal only sets ``requested()``; the code checks it where it can stop."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within (also inside ``deferred()``): the first stop signal raises ``Interrupted``, also
    one that came before (for start-up, and waits that check nothing)."""
    depth, _state.deferring = _state.deferring, 0
    try:
        if _state.signum is not None:
            raise Interrupted(_state.signum)
        yield
    finally:
        _state.deferring = depth


def _handle(signum: int, frame: FrameType | None) -> None:
    _state.received += 1
    if _state.signum is not None:
        # os.write, not print: the handler may run while the main thread is inside a print to stderr
        note = f"streamsnn: {signal.Signals(signum).name} again: already stopping (finishing the sinks "
        os.write(2, (note + "and the report; SIGKILL stops at once)\n").encode())
        return
    _state.signum = signum
    if _state.deferring == 0:
        raise Interrupted(signum)
