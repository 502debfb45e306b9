"""A bounded hand-over from the loop to one worker thread.

The loop only appends (never blocks, never waits for the worker); what does not fit is
counted as dropped instead of growing memory during a storm.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class WorkQueue(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, items: Sequence[T]) -> None:
        with self._cond:
            room = max(0, self.limit - len(self._items))
            self._items.extend(items[:room])
            self.dropped += max(0, len(items) - room)
            self._cond.notify()

    def take(self) -> T | None:
        """The next item, waiting for one; None once the queue is closed."""
        with self._cond:
            while not self._items and not self.closed:
                self._cond.wait()
            if self.closed:
                return None
            return self._items.popleft()

    def close(self, discard: bool = False) -> None:
        with self._cond:
            self.closed = True
            if discard:
                self._items.clear()
            self._cond.notify_all()
