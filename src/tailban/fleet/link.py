"""The two fleet threads: publish this host's bans, read everyone else's.

They never block the ban path: the loop hands them work through a deque and gets results
back through callbacks it schedules itself. A dead database costs sharing only; both
threads reconnect with backoff and carry on from where they stopped (the outbox for what
we publish, the last applied id for what we read).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tailban.fleet.policy import FleetDecisions, FleetRules, judge
from tailban.stores.fleet import FleetStore, FleetStoreError, Outgoing

log = logging.getLogger("tailban.fleet")

READ_LIMIT = 2000
IDLE_WAIT = 1.0  # longest wait for a notification (bounds how long stop takes)
RECHECK_IDLE = 5  # idle waits before a reader looks anyway (a lost notification)
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
EXPIRE_EVERY = 3600.0


@dataclass(slots=True)
class LinkState:
    connected: bool = False
    last_error: str | None = None
    error_since: float | None = None
    count: int = 0  # events published, or rows read

    def failed(self, error: str, now: float) -> bool:
        """Record an error; True when it is new (log once per outage, not per retry)."""
        new = error != self.last_error or not self.connected and self.error_since is None
        self.connected = False
        self.last_error = error
        if self.error_since is None:
            self.error_since = now
        return new

    def ok(self) -> bool:
        """Mark connected; True when this ends an outage."""
        recovered = self.error_since is not None
        self.connected = True
        self.last_error = None
        self.error_since = None
        return recovered


class FleetLink:
    """Owns the publisher and subscriber threads and their connections."""

    def __init__(self, open_store: Callable[[bool], FleetStore], host: str, group: str,
                 rules: FleetRules, deliver: Callable[[FleetDecisions], None],
                 published: Callable[[list[int]], None], *, keep: float = 7 * 86400.0,
                 clock: Callable[[], float] = time.time, idle_wait: float = IDLE_WAIT) -> None:
        self._open = open_store
        self.host = host
        self.group = group
        self.rules = rules  # replaced whole on reload; read by the subscriber thread
        self._deliver = deliver
        self._published = published
        self.keep = keep
        self.clock = clock
        self.idle_wait = idle_wait
        self._outbox: deque[tuple[int, Outgoing]] = deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.publisher = LinkState()
        self.subscriber = LinkState()
        self.last_id = 0
        self.rejected = 0
        self.applied = 0
        self.lag: float | None = None

    # -- called from the daemon's loop ---------------------------------------------------

    def start(self, last_id: int, backlog: list[tuple[int, Outgoing]]) -> None:
        self.last_id = last_id
        self._outbox.extend(backlog)
        for name, target in (("fleet-publish", self._publish_loop),
                             ("fleet-subscribe", self._subscribe_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def publish(self, items: list[tuple[int, Outgoing]]) -> None:
        if not items:
            return
        with self._cond:
            self._outbox.extend(items)
            self._cond.notify()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def status(self) -> dict[str, Any]:
        return {
            "host": self.host, "group": self.group,
            "publisher": {"connected": self.publisher.connected,
                          "error": self.publisher.last_error,
                          "published": self.publisher.count, "outbox": len(self._outbox)},
            "subscriber": {"connected": self.subscriber.connected,
                           "error": self.subscriber.last_error, "read": self.subscriber.count,
                           "last_id": self.last_id, "applied": self.applied,
                           "rejected": self.rejected,
                           "lag": None if self.lag is None else round(self.lag, 3)},
        }

    # -- publisher thread ------------------------------------------------------------------

    def _publish_loop(self) -> None:
        store: FleetStore | None = None
        delay = BACKOFF_FIRST
        next_expire = 0.0
        while not self._stopping.is_set():
            try:
                if store is None:
                    store = self._open(False)
                    if self.publisher.ok():
                        log.info("fleet: publishing again")
                if self.clock() >= next_expire:
                    removed = store.expire(self.clock(), self.keep)
                    next_expire = self.clock() + EXPIRE_EVERY
                    if removed:
                        log.info("fleet: %d old events removed", removed)
                with self._cond:
                    if not self._outbox and not self._stopping.is_set():
                        self._cond.wait(timeout=60.0)
                    batch = list(self._outbox)
                if batch:
                    store.publish(self.host, self.group, [item for _, item in batch])
                    with self._cond:
                        for _ in batch:
                            self._outbox.popleft()
                    self.publisher.count += len(batch)
                    self._published([seq for seq, _ in batch])
                delay = BACKOFF_FIRST
            except FleetStoreError as exc:
                if self.publisher.failed(str(exc), self.clock()):
                    log.error("fleet: cannot publish (%d waiting, retrying): %s",
                              len(self._outbox), exc)
                _close(store)
                store = None
                self._stopping.wait(delay)
                delay = min(BACKOFF_MAX, delay * 2)
        _close(store)

    # -- subscriber thread -----------------------------------------------------------------

    def _subscribe_loop(self) -> None:
        store: FleetStore | None = None
        delay = BACKOFF_FIRST
        look = True
        idle = 0
        while not self._stopping.is_set():
            try:
                if store is None:
                    store = self._open(True)
                    look = True
                    if self.subscriber.ok():
                        log.info("fleet: reading again from id %d", self.last_id)
                if look or idle >= RECHECK_IDLE:
                    self._read_all(store)
                    idle = 0
                look = store.wait(self.idle_wait)
                idle = 0 if look else idle + 1
                delay = BACKOFF_FIRST
            except FleetStoreError as exc:
                if self._stopping.is_set():
                    break
                if self.subscriber.failed(str(exc), self.clock()):
                    log.error("fleet: cannot read fleet bans (retrying): %s", exc)
                _close(store)
                store = None
                self._stopping.wait(delay)
                delay = min(BACKOFF_MAX, delay * 2)
        _close(store)

    def _read_all(self, store: FleetStore) -> None:
        while not self._stopping.is_set():
            rows = store.read_after(self.last_id, READ_LIMIT)
            if not rows:
                return
            decisions = judge(rows, self.rules, self.clock(), self.last_id)
            self.subscriber.count += len(rows)
            self.rejected += len(decisions.rejected)
            for rejected in decisions.rejected[:20]:
                log.warning("fleet: row %s rejected: %s", rejected.row_id, rejected.reason)
            self.last_id = decisions.last_id
            self._deliver(decisions)
            if len(rows) < READ_LIMIT:
                return


def _close(store: FleetStore | None) -> None:
    if store is not None:
        try:
            store.close()
        except Exception:  # closing a broken connection may fail too; it is gone either way
            log.debug("closing the fleet store failed", exc_info=True)
    return None
