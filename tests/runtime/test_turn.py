"""The stepping loop's turn: helpers wait while the loop runs Python, run while it is in the model."""

from __future__ import annotations

import threading
import time

from streamsnn.runtime.turn import Turn


def test_open_turn_does_not_wait() -> None:
    turn = Turn()
    t0 = time.monotonic()
    turn.wait(10.0)
    assert time.monotonic() - t0 < 1.0


def test_closed_turn_waits_until_timeout() -> None:
    turn = Turn()
    turn.end()
    t0 = time.monotonic()
    turn.wait(0.05)
    assert time.monotonic() - t0 >= 0.05


def test_waiting_helper_runs_when_the_turn_opens() -> None:
    turn = Turn()
    turn.end()
    woke = threading.Event()

    def helper() -> None:
        turn.wait(10.0)
        woke.set()

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    assert not woke.wait(0.1)  # still closed: the helper waits
    turn.begin()
    assert woke.wait(5.0)  # opened: it runs long before its 10 s timeout
    thread.join(5.0)
    turn.end()
    assert not turn._opened.is_set()  # closed again: the next helper waits
