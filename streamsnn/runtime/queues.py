"""Bounded queues between pipeline stages, each with a stated backpressure rule.

``block``: a full queue blocks the producer until there is room (offline replay: nothing is
lost); it is woken when the queue has drained to half (and checks every 0.1 s), so a producer
wakes once per half queue, not once per item.
``drop_oldest``: a full queue discards its oldest item to take the new one and counts it (live
sources: stay real-time, report what was dropped). Items that ``droppable`` refuses (markers such
as a stream's end) are never dropped and take no item's place: the queue holds them beyond its
size (they are few), and a full queue of them takes a new item too.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any, Literal

Rule = Literal["block", "drop_oldest"]


class Closed(Exception):
    """The queue was closed while waiting."""


class BoundedQueue:
    def __init__(
        self, maxsize: int, rule: Rule = "block", droppable: Callable[[Any], bool] | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize, self.rule, self.droppable = maxsize, rule, droppable
        self.dropped = 0
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> None:
        """Add ``item`` by the queue's rule; raises ``Closed`` if the queue was closed."""
        with self._cond:
            while self.rule == "block" and len(self._items) >= self.maxsize and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                raise Closed
            if len(self._items) >= self.maxsize and self._droppable(item):
                self._drop_oldest()
            self._items.append(item)
            if len(self._items) == 1:  # only a consumer of an empty queue waits
                self._cond.notify_all()

    def _droppable(self, item: Any) -> bool:
        return self.droppable is None or self.droppable(item)

    def _drop_oldest(self) -> None:
        for i, item in enumerate(self._items):
            if self._droppable(item):
                del self._items[i]
                self.dropped += 1
                return

    def get(self, timeout: float | None = None) -> Any:
        """Oldest item; waits up to ``timeout`` s (None: forever); raises ``TimeoutError``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError
            if not self._items:
                raise Closed
            item = self._items.popleft()
            if len(self._items) == self.maxsize // 2:  # producers wait on a full queue: wake them
                self._cond.notify_all()  # once it has drained to half, to refill it in one go
            return item

    def get_nowait(self) -> Any:
        """Oldest item, or raises ``TimeoutError`` if empty."""
        return self.get(timeout=0)

    def close(self) -> None:
        """Wake every waiter; later puts raise ``Closed``, gets drain what is left."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
