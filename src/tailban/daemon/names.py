"""usedns = yes|warn: host names of failures resolved in a worker thread, never on the loop.

The loop hands over failures whose host is a name; the worker answers each from
:class:`~tailban.enrich.names.NameCache` and gives the loop copies with the confirmed
addresses, which the jail then counts like any other failure (at the line's own time).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tailban.config.model import EnrichSettings
from tailban.core.events import Failure
from tailban.daemon.workqueue import WorkQueue
from tailban.enrich.names import DnsLookups, NameCache

if TYPE_CHECKING:
    from tailban.enrich.dns import ReverseResult

log = logging.getLogger("tailban.usedns")

QUEUE_LIMIT = 10_000
WARN_EVERY = 3600.0  # usedns = warn: one warning per name per hour

Deliver = Callable[[str, list[Failure]], None]


class LazyResolver:
    """The DNS client, built at the first name (dnspython is large; most logs name none)."""

    def __init__(self, settings: EnrichSettings) -> None:
        self._settings = settings
        self._resolver: DnsLookups | None = None

    def _get(self) -> DnsLookups:
        if self._resolver is None:
            from tailban.enrich.dns import DnsSettings, Resolver

            s = self._settings
            self._resolver = Resolver(DnsSettings(s.nameservers, s.dns_port, s.dns_timeout))
        return self._resolver

    def forward(self, name: str) -> tuple[str, ...]:
        return self._get().forward(name)

    def reverse(self, ip: str) -> ReverseResult:
        return self._get().reverse(ip)


class NameWorker:
    """One thread; ``submit`` never blocks (a full queue drops and counts)."""

    def __init__(self, dns: DnsLookups, deliver: Deliver, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cache = NameCache(dns, clock)
        self._deliver = deliver
        self._clock = clock
        self.queue: WorkQueue[tuple[str, str, Failure]] = WorkQueue(QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._run, name="usedns", daemon=True)
        self._warned: dict[str, float] = {}
        self.resolved = 0
        self.unresolved = 0
        self.refused = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.queue.close(discard=True)
        self._thread.join(timeout=5)

    def submit(self, jail: str, mode: str, failures: Sequence[Failure]) -> None:
        self.queue.put([(jail, mode, f) for f in failures])

    def status(self) -> dict[str, int]:
        return {"queued": len(self.queue), "resolved": self.resolved,
                "unresolved": self.unresolved, "refused": self.refused,
                "dropped": self.queue.dropped, "lookups": self.cache.lookups}

    def _run(self) -> None:
        while (item := self.queue.take()) is not None:
            jail, mode, failure = item
            try:
                answer = self.cache.answer(failure.host)
            except Exception:  # a resolver bug must not end the thread
                log.exception("resolving %r failed", failure.host)
                continue
            if answer.refused:
                self.refused += 1
                log.warning("%s: host name %r also resolves to %s, whose reverse DNS does "
                            "not name it: not counted for those", jail, failure.host,
                            ", ".join(answer.refused))
            if not answer.addresses:
                self.unresolved += 1
                continue
            self.resolved += 1
            if mode == "warn":
                self._warn(jail, failure.host, answer.addresses)
            self._deliver(jail, [failure._replace(ip=ip)
                                 for ip in answer.addresses])

    def _warn(self, jail: str, name: str, addresses: tuple[str, ...]) -> None:
        now = self._clock()
        if self._warned.get(name, -WARN_EVERY) > now - WARN_EVERY:
            return
        if len(self._warned) > 10_000:
            self._warned.clear()
        self._warned[name] = now
        log.warning("%s: failure logged with host name %r counted for %s (usedns = warn; "
                    "set usedns = no to count addresses only)", jail, name,
                    ", ".join(addresses))


class NameBridge:
    """The worker's answers, back on the daemon's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_loop: Deliver,
                 settings: EnrichSettings) -> None:
        self.worker = NameWorker(LazyResolver(settings), self._post)
        self._loop = loop
        self._on_loop = on_loop
        self._closed = threading.Event()

    def _post(self, jail: str, failures: list[Failure]) -> None:
        if not self._closed.is_set():
            self._loop.call_soon_threadsafe(self._on_loop, jail, failures)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self._closed.set()
        self.worker.stop()
