import threading
import time

import pytest

from streamsnn.runtime.queues import BoundedQueue, Closed


def test_drop_oldest_keeps_the_newest_and_counts():
    q = BoundedQueue(3, "drop_oldest")
    for i in range(10):
        q.put(i)
    assert q.dropped == 7
    assert [q.get_nowait() for _ in range(3)] == [7, 8, 9]


def test_block_waits_for_room_and_loses_nothing():
    q = BoundedQueue(2, "block")
    got = []

    def consumer():
        for _ in range(50):
            got.append(q.get(timeout=5))
            time.sleep(0.001)

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(50):
        q.put(i)
        assert len(q) <= 2
    t.join(5)
    assert got == list(range(50)) and q.dropped == 0


def test_close_wakes_producers_and_drains_for_consumers():
    q = BoundedQueue(1, "block")
    q.put("a")
    errors = []

    def producer():
        try:
            q.put("b")
        except Closed:
            errors.append("closed")

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.05)
    q.close()
    t.join(2)
    assert errors == ["closed"]
    assert q.get(timeout=1) == "a"
    with pytest.raises(Closed):
        q.get(timeout=1)
    with pytest.raises(TimeoutError):
        BoundedQueue(1).get(timeout=0.01)


def test_many_producers_and_consumers_lose_and_repeat_nothing():
    """Consumers are woken when the queue stops being empty, producers when it has drained to
    half: with two of each side and a tiny queue, every item still arrives exactly once."""
    q = BoundedQueue(2, "block")
    got: list[int] = []
    lock = threading.Lock()

    def producer(start):
        for i in range(start, start + 300):
            q.put(i)

    def consumer():
        while True:
            try:
                item = q.get(timeout=5)
            except Closed:
                return
            with lock:
                got.append(item)

    producers = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(2)]
    consumers = [threading.Thread(target=consumer) for _ in range(2)]
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join(10)
    q.close()
    for t in consumers:
        t.join(10)
    assert not any(t.is_alive() for t in producers + consumers)
    assert sorted(got) == list(range(300)) + list(range(1000, 1300))


def test_drop_oldest_never_drops_markers_nor_drops_for_them():
    """Only droppable items (a live source's slices) are dropped, and only to make room for
    another one: an end marker neither is dropped nor pushes a slice out."""
    q = BoundedQueue(2, "drop_oldest", droppable=lambda item: isinstance(item, int))
    for item in (1, "end-a", 2, 3, "end-b", "end"):
        q.put(item)
    assert q.dropped == 2  # 1 and 2, each pushed out by the next number
    assert [q.get_nowait() for _ in range(len(q))] == ["end-a", 3, "end-b", "end"]
    for item in ("end-a", "end-b", 4):  # a full queue of markers takes a new item too
        q.put(item)
    assert q.dropped == 2 and [q.get_nowait() for _ in range(len(q))] == ["end-a", "end-b", 4]
