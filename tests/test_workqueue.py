"""The loop-to-worker hand-over never blocks the loop and never grows without bound."""

from __future__ import annotations

import threading

from tailban.daemon.workqueue import WorkQueue


def test_items_beyond_the_limit_are_counted_not_kept() -> None:
    queue: WorkQueue[int] = WorkQueue(3)
    queue.put([1, 2])
    queue.put([3, 4, 5])
    assert len(queue) == 3 and queue.dropped == 2
    assert [queue.take(), queue.take(), queue.take()] == [1, 2, 3]


def test_close_wakes_a_waiting_worker() -> None:
    queue: WorkQueue[int] = WorkQueue(10)
    got: list[int | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.take()))
    worker.start()
    queue.close(discard=True)
    worker.join(2)
    assert not worker.is_alive() and got == [None]
