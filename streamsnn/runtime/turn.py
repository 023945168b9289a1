"""The stepping loop's turn: when the source and sink threads may run their Python.

Between model calls the stepping loop runs Python, and a helper thread holding the GIL then
delays it; inside a model call the loop has released the GIL (torch kernels), so that is when the
helpers should work. The loop flips ``open`` around its model calls and blocking waits (a plain
attribute: no lock on the loop's path); a helper calls ``wait`` before a piece of work and blocks
until the turn opens, at most ``timeout`` s. The loop only touches an event when a helper waits.
"""

from __future__ import annotations

import threading


class Turn:
    def __init__(self) -> None:
        self.open = True
        self._waiting = 0  # helpers blocked in wait()
        self._lock = threading.Lock()  # helpers' count only; the loop never takes it
        self._opened = threading.Event()

    def begin(self) -> None:
        """The loop enters a model call or a blocking wait: helpers may run."""
        self.open = True
        if self._waiting:
            self._opened.set()

    def end(self) -> None:
        """The loop runs Python again."""
        self.open = False
        if self._opened.is_set():
            self._opened.clear()

    def wait(self, timeout: float) -> None:
        """Return once the turn is open, or after ``timeout`` s (helpers)."""
        if self.open:
            return
        with self._lock:
            self._waiting += 1
        try:
            if not self.open:  # begin() may have run before _waiting was counted
                self._opened.wait(timeout)
        finally:
            with self._lock:
                self._waiting -= 1
