"""Enrichment beside the ban path: a worker thread fed by a deque, results back on the loop.

The loop only appends requests (bans to describe, first failures to check against DNSBLs,
``tailban show``) and later stores what comes back, mails it, or bans a listed address. A
resolver or whois server that never answers stalls this thread only; bans go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tailban.core.durations import format_duration
from tailban.core.events import Ban, Failure
from tailban.daemon.mailer import MailWorker
from tailban.daemon.workqueue import WorkQueue
from tailban.enrich.facts import Enrichment
from tailban.enrich.service import Enricher, Wants
from tailban.notify.mail import BanMailFacts, lifecycle_message
from tailban.stores.sqlite import EnrichmentCache

if TYPE_CHECKING:
    from tailban.daemon.server import Daemon

log = logging.getLogger("tailban.enrich")

MAX_PENDING = 100_000
RECENT = 4096
DNSBL_SEEN = 65_536


@dataclass(frozen=True, slots=True)
class Request:
    ip: str
    purpose: str  # "ban" | "dnsbl" | "show"
    ban: Ban | None = None
    lines: tuple[str, ...] = ()


class EnrichmentWorker:
    """The thread. ``deliver`` is called on it and must only hand over to the loop."""

    def __init__(self, enricher: Enricher, cache: EnrichmentCache | None, ttl: float,
                 deliver: Callable[[Request, Enrichment, bool], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.enricher = enricher
        self.cache = cache
        self.ttl = ttl
        self._deliver = deliver
        self.clock = clock
        self._queue: WorkQueue[Request] = WorkQueue(MAX_PENDING)
        self._recent: OrderedDict[str, Enrichment] = OrderedDict()
        self._thread: threading.Thread | None = None
        self.done = 0
        self.durations: deque[float] = deque(maxlen=1000)
        self.busy_since: float | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="enrich", daemon=True)
        self._thread.start()

    def submit(self, requests: Sequence[Request]) -> None:
        self._queue.put(requests)

    def stop(self, timeout: float = 2.0) -> None:
        self._queue.close(discard=True)
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        times = list(self.durations)
        return {"pending": len(self._queue), "done": self.done, "dropped": self._queue.dropped,
                "median_ms": round(statistics.median(times) * 1000, 1) if times else None,
                "busy_for": None if self.busy_since is None
                else round(time.monotonic() - self.busy_since, 1)}

    def _cached(self, request: Request, now: float) -> Enrichment | None:
        found = self._recent.get(request.ip)
        if found is None and self.cache is not None:
            row = self.cache.get(request.ip)
            if row is not None:
                with contextlib.suppress(ValueError, TypeError):
                    found = Enrichment.from_json(row[1])
        if found is None or now - found.fetched_at > self.ttl:
            return None
        return found

    def _run(self) -> None:
        while True:
            request = self._queue.take()
            if request is None:
                return
            now = self.clock()
            found = self._cached(request, now)
            fresh = found is None
            if found is None:
                self.busy_since = time.monotonic()
                try:
                    found = self.enricher.gather(request.ip, now,
                                                 dnsbl_only=request.purpose == "dnsbl")
                except Exception as exc:  # a source's bug must not end the thread
                    log.exception("enrichment of %s failed", request.ip)
                    found = Enrichment(request.ip, now, notes=(f"failed: {exc}",))
                finally:
                    if self.busy_since is not None:
                        self.durations.append(time.monotonic() - self.busy_since)
                    self.busy_since = None
                if request.purpose != "dnsbl":
                    self._recent[request.ip] = found
                    if len(self._recent) > RECENT:
                        self._recent.popitem(last=False)
            self.done += 1
            self._deliver(request, found, fresh and request.purpose != "dnsbl")


class EnrichmentBridge:
    """The loop's side; every method runs on the daemon's loop."""

    def __init__(self, daemon: Daemon, loop: asyncio.AbstractEventLoop, wants: Wants) -> None:
        self.daemon = daemon
        self.loop = loop
        config = daemon.config
        settings = config.daemon.enrich
        self.enricher = Enricher(settings, wants)
        for problem in self.enricher.problems():
            log.warning("enrichment: %s", problem)
        cache = EnrichmentCache(config.daemon.dbfile) if config.daemon.dbfile != ":memory:" \
            else None
        self.worker = EnrichmentWorker(self.enricher, cache, settings.ttl, self._deliver,
                                       daemon.clock)
        mail = config.daemon.mail
        self.mailer = MailWorker(mail, clock=daemon.clock) if mail is not None else None
        self.hostname = socket.gethostname()
        self._waiters: dict[str, list[asyncio.Future[Enrichment]]] = {}
        self._dnsbl_seen: OrderedDict[str, None] = OrderedDict()
        self.dnsbl_bans = 0

    def start(self) -> None:
        self.worker.start()
        if self.mailer is not None:
            self.mailer.start()
            if self.daemon.config.daemon.mail_startstop and self._mailing_jails():
                self.mailer.send_message(lifecycle_message(
                    self.mailer.settings, "start", self.hostname, self._mailing_jails()),
                    "start mail")

    def stop(self) -> None:
        self.worker.stop()
        if self.mailer is not None:
            if self.daemon.config.daemon.mail_startstop and self._mailing_jails():
                self.mailer.send_message(lifecycle_message(
                    self.mailer.settings, "stop", self.hostname, self._mailing_jails()),
                    "stop mail")
            self.mailer.stop()
        self.enricher.close()

    def _mailing_jails(self) -> list[str]:
        return [name for name, jail in self.daemon.jails.items() if jail.config.mail != "none"]

    def status(self) -> dict[str, Any]:
        return {"worker": self.worker.status(), "dnsbl_bans": self.dnsbl_bans,
                "mail": self.mailer.status() if self.mailer is not None else None}

    # -- requests from the ban path (appends only) -------------------------------------------

    def on_bans(self, bans: Sequence[Ban], failures: Sequence[Failure]) -> None:
        if not bans:
            return
        lines: dict[str, list[str]] = {}
        for failure in failures:
            if failure.ip is not None and failure.line:
                lines.setdefault(failure.ip, []).append(failure.line)
        self.worker.submit([Request(b.ip, "ban", b, tuple(lines.get(b.ip, ())[-50:]))
                            for b in bans if "/" not in b.ip])

    def on_failures(self, jail_name: str, failures: Sequence[Failure]) -> None:
        """First failures of an address in a jail with dnsbl_action: check the lists once."""
        jail = self.daemon.jails.get(jail_name)
        if jail is None or jail.config.dnsbl_action == "none":
            return
        fresh: list[Request] = []
        for failure in failures:
            ip = failure.ip
            if ip is None or ip in self._dnsbl_seen or ip in jail.config.ignoreip:
                continue
            self._dnsbl_seen[ip] = None
            fresh.append(Request(ip, "dnsbl"))
        while len(self._dnsbl_seen) > DNSBL_SEEN:
            self._dnsbl_seen.popitem(last=False)
        if fresh:
            self.worker.submit(fresh)

    async def lookup(self, ip: str, timeout: float) -> Enrichment | None:
        """For ``tailban show``: stored facts, or ask the worker and wait a little."""
        stored = self.daemon.store.enrichment_of([ip]).get(ip)
        if stored is not None:
            found = Enrichment.from_json(stored)
            if self.daemon.clock() - found.fetched_at <= self.daemon.config.daemon.enrich.ttl:
                return found
        future: asyncio.Future[Enrichment] = self.loop.create_future()
        self._waiters.setdefault(ip, []).append(future)
        self.worker.submit([Request(ip, "show")])
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return Enrichment.from_json(stored) if stored is not None else None

    # -- results (worker thread -> loop) ------------------------------------------------------

    def _deliver(self, request: Request, found: Enrichment, fresh: bool) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed at shutdown
            self.loop.call_soon_threadsafe(self._apply, request, found, fresh)

    def _apply(self, request: Request, found: Enrichment, fresh: bool) -> None:
        daemon = self.daemon
        if fresh:
            daemon.store.save_enrichment(
                found.ip, found.fetched_at, found.to_json(), country=found.country_iso,
                country_name=found.country_name, named=bool(found.rdns_confirmed),
                dnsbl_checked=bool(found.dnsbl_checked),
                dnsbl_zones=" ".join(str(d.get("zone")) for d in found.dnsbl))
        for future in self._waiters.pop(request.ip, []):
            if not future.done():
                future.set_result(found)
        if request.purpose == "ban" and request.ban is not None:
            if found.dnsbl:
                log.info("%s (banned in %s) is listed: %s", found.ip, request.ban.jail,
                         found.text_dnsbl())
            self._mail(request, found)
            if daemon.reporting is not None:
                daemon.reporting.maybe_incident(found.ip, found.abuse)
        elif request.purpose == "dnsbl" and found.dnsbl:
            self._listed(request.ip, found)

    def _listed(self, ip: str, found: Enrichment) -> None:
        now = self.daemon.clock()
        bans: list[Ban] = []
        for name, jail in self.daemon.jails.items():
            action = jail.config.dnsbl_action
            if action == "none" or jail.policy.window.count(ip) == 0:
                continue
            log.warning("%s failing in %s is listed: %s%s", ip, name, found.text_dnsbl(),
                        "; banned at its first failure" if action == "ban" else "")
            if action == "ban" and not self.daemon.ledger.is_banned(name, ip, now) \
                    and ip not in jail.config.ignoreip:
                bans.append(jail.policy.manual_ban(ip, now, source="dnsbl"))
        if bans:
            self.dnsbl_bans += len(bans)
            self.daemon.record(bans)
            self.daemon.firewall.submit(bans)
            self.daemon.schedule_expiry(min((b.expires_at for b in bans if b.expires_at),
                                            default=None))

    def _mail(self, request: Request, found: Enrichment) -> None:
        ban = request.ban
        assert ban is not None
        jail = self.daemon.jails.get(ban.jail)
        if self.mailer is None or jail is None or jail.config.mail == "none":
            return
        mode = jail.config.mail
        whois = mode.startswith("mail-whois")
        lines = request.lines if mode == "mail-whois-lines" else ()
        if mode == "mail-whois-lines" and not lines and ban.line:
            lines = (ban.line,)
        expires = "never" if ban.expires_at is None else datetime.fromtimestamp(
            ban.expires_at).astimezone().isoformat(timespec="seconds")
        length = -1.0 if ban.expires_at is None else ban.expires_at - ban.banned_at
        self.mailer.submit([BanMailFacts(
            ip=ban.ip, jail=ban.jail, failures=ban.failures, matches=lines,
            country=found.text_country(), asn=found.text_asn(), org=found.text_org(),
            rdns=found.text_rdns(), dnsbl=found.text_dnsbl(),
            whois=found.text_whois() if whois else "", abuse=found.abuse or "",
            bantime=format_duration(length), expires=expires, hostname=self.hostname)])
