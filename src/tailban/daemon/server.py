"""The running daemon: one asyncio loop from log event to kernel set, no polling sleeps.

inotify (watchdog thread) -> loop.call_soon_threadsafe -> read the file's new chunks ->
jails decide -> store records -> firewall worker applies one transaction per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tailban import __version__
from tailban.bans.ledger import BanLedger
from tailban.config.errors import ConfigError
from tailban.config.load import load_config, read_banlist
from tailban.config.model import Config, JailConfig
from tailban.control.server import CommandError, ControlServer
from tailban.core.events import Ban, Failure, Success, Unban
from tailban.daemon.commands import ControlCommands
from tailban.daemon.firewall_worker import FirewallWorker
from tailban.daemon.logs import FollowedFile, LogSet
from tailban.daemon.memory import release_free_memory
from tailban.daemon.notify import sd_notify
from tailban.enrich.service import wants_for
from tailban.firewall.base import FirewallBackend, FirewallError, JailFirewall
from tailban.firewall.registry import CompositeBackend, make_backend
from tailban.jails.jail import Jail
from tailban.sources.follower import Position
from tailban.sources.watch import DirectoryWatcher
from tailban.stores.history import purge, roll_up
from tailban.stores.sqlite import PastBans, SqliteStore

if TYPE_CHECKING:  # each imported when its feature is configured (memory of an idle daemon)
    from tailban.daemon.anomaly import AnomalyBridge
    from tailban.daemon.enrichment import EnrichmentBridge
    from tailban.daemon.fleet import FleetBridge
    from tailban.daemon.names import NameBridge
    from tailban.daemon.reporting import Reporting

log = logging.getLogger("tailban")

SAFETY_POLL = 5.0  # a missed inotify event costs at most this, never the ban path
HOLD_MAX = 0.2  # seconds: control commands this recent go before a storm's next chunk
HOLD_STEP = 0.001
TRIM_DELAY = 0.5  # seconds after a storm's backlog is processed
TRIM_AFTER = 1 << 20  # bytes of log read since the last trim that make one worth it


def firewall_jails(jails: Iterable[JailConfig]) -> list[JailFirewall]:
    return [JailFirewall(j.name, j.ports, j.protocol, j.allports, j.blocktype) for j in jails]


def firewall_kinds(jails: Iterable[JailConfig]) -> list[tuple[JailFirewall, str]]:
    """Each jail with its backend kind (``banaction``), for the composite backend."""
    jails = list(jails)
    return list(zip(firewall_jails(jails), (j.banaction for j in jails), strict=True))


def build_backend(config: Config) -> CompositeBackend:
    table = config.daemon.table
    return CompositeBackend(firewall_kinds(config.enabled_jails),
                            lambda kind: make_backend(kind, table=table))


class Daemon:
    """Owns every adapter; the decisions themselves live in the pure jails and ledger."""

    def __init__(self, config: Config, *, from_start: bool = False,
                 backend: FirewallBackend | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.from_start = from_start
        self.clock = clock
        self.backend: FirewallBackend = backend or build_backend(config)
        self.ledger = BanLedger()
        self.jails: dict[str, Jail] = {}
        self.flush_on_stop = config.daemon.flushonstop
        self.started_at = 0.0
        self._stop = asyncio.Event()
        self._dirty: set[str] = set()
        self._scheduled = False
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at: float | None = None
        self.file_errors: dict[str, str] = {}
        self.account_alerts: dict[str, int] = {}
        self._reload_lock = asyncio.Lock()
        self.fleet: FleetBridge | None = None
        self.enrichment: EnrichmentBridge | None = None
        self.reporting: Reporting | None = None
        self.anomaly: AnomalyBridge | None = None
        self.names: NameBridge | None = None
        self.control: ControlServer | None = None
        self._past_bans: dict[str, PastBans] = {}  # per jail, "*" for overalljails
        self._since_trim = 0  # bytes of log processed since memory was last given back
        self._trim_scheduled = False
        # history, positions and worker hand-offs of rounds whose bans await a transaction
        self._later: list[tuple[list[Position], list[tuple[str, Failure]],
                                list[tuple[str, Success]], list[Ban]]] = []

    # -- life cycle ---------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.started_at = self.clock()
        self._started_config = self.config
        settings = self.config.daemon
        self.store = SqliteStore(settings.dbfile)
        now = self.clock()
        enabled = self.config.enabled_jails
        names = {j.name for j in enabled}
        kept: list[Ban] = []
        dropped: list[Ban] = []
        for ban in self.store.load_bans():
            alive = ban.expires_at is None or ban.expires_at > now
            (kept if alive and ban.jail in names else dropped).append(ban)
        self.ledger = BanLedger(kept)
        if dropped:
            self.store.record(unbans=[Unban(b.jail, b.ip, now, "expired while stopped")
                                      for b in dropped])
        for jail_config in enabled:
            self.jails[jail_config.name] = self._new_jail(jail_config)
        self._seedrecidive_bans(now)
        banlist_bans, banlist_unbans = self._banlist_changes(now)
        self.store.record(banlist_bans, banlist_unbans)
        # The kernel gets every ban back in one transaction before anything else runs.
        await loop.run_in_executor(None, self._firewall_layout)
        log.info("firewall %s ready: %d bans restored", self.backend.name, len(self.ledger))
        self.firewall = FirewallWorker(self.backend, self.clock)
        self.firewall.start()
        if settings.fleet.enabled:
            from tailban.daemon.fleet import FleetBridge

            self.fleet = FleetBridge(self, loop)
            self.fleet.start()
        wants = wants_for(self.config)
        if wants is not None:
            from tailban.daemon.enrichment import EnrichmentBridge
            from tailban.daemon.reporting import Reporting

            self.enrichment = EnrichmentBridge(self, loop, wants)
            self.enrichment.start()
            if self.enrichment.mailer is not None:
                self.reporting = Reporting(self, loop)
                self.reporting.start()
        if settings.anomaly.enabled:
            from tailban.daemon.anomaly import AnomalyBridge

            self.anomaly = AnomalyBridge(self, loop)
            self.anomaly.start()
        self._start_names()
        self.logs = LogSet(self.store.load_positions(), self.from_start,
                           on_journal=self._on_journal_data)
        self.logs.configure(enabled)
        polling = any(j.backend == "polling" for j in enabled)
        self.watcher = DirectoryWatcher(self._on_directory_event, force_polling=polling)
        for pattern in self.logs.patterns:
            self.watcher.watch(pattern)
        self.watcher.start()
        self.control = ControlServer(settings.socket, ControlCommands(self).handlers())
        await self.control.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._reload_signal()))
        for entry in list(self.logs.files.values()):
            self._drain(entry)
        self._write_later()
        self._save_positions()
        self.schedule_expiry()
        maintenance = loop.create_task(self._maintenance(), name="maintenance")
        sd_notify(f"READY=1\nSTATUS=following {len(self.logs.files)} files")
        log.info("tailban %s started: jails %s", __version__, ", ".join(self.jails) or "none")
        try:
            await self._stop.wait()
        finally:
            sd_notify("STOPPING=1")
            maintenance.cancel()
            await self._shutdown()

    def request_stop(self, flush: bool | None = None) -> None:
        if flush is not None:
            self.flush_on_stop = flush
        self._stop.set()

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        if self.fleet is not None:
            await loop.run_in_executor(None, self.fleet.stop)
        if self.reporting is not None:
            self.reporting.stop()
        if self.anomaly is not None:
            await loop.run_in_executor(None, self.anomaly.stop)
        if self.enrichment is not None:
            await loop.run_in_executor(None, self.enrichment.stop)
        if self.names is not None:
            await loop.run_in_executor(None, self.names.stop)
            self.names = None
        self.watcher.stop()
        self.logs.stop_journals()  # what journalctl had read is still processed below
        for entry in list(self.logs.files.values()):
            self._drain(entry)
        self._write_later()
        self._save_positions()
        await self.firewall.drain(5.0)
        await self.firewall.stop()
        if self._expiry is not None:
            self._expiry.cancel()
        try:
            self.backend.stop(self.flush_on_stop)
        except FirewallError as exc:
            log.error("firewall cleanup failed: %s", exc)
        self.logs.close()
        self.store.close()
        if self.control is not None:
            await self.control.stop()
        log.info("tailban stopped (%s)", "firewall flushed" if self.flush_on_stop
                 else "bans left in the kernel")

    def _banlist_changes(self, now: float) -> tuple[list[Ban], list[Unban]]:
        """Make the ledger hold exactly each jail's ban list (permanent, source "banlist")."""
        bans: list[Ban] = []
        unbans: list[Unban] = []
        for name, jail in self.jails.items():
            wanted: set[str] = set()
            if jail.config.banlist:
                try:
                    wanted = set(read_banlist(jail.config.banlist))
                except ConfigError as exc:
                    log.error("ban list not applied: %s", exc)
                    continue
            listed = {b.ip for b in self.ledger.in_jail(name) if b.source == "banlist"}
            for target in sorted(wanted - listed):
                ban = Ban(name, target, now, None, 0, "", "banlist")
                self.ledger.add(ban)
                bans.append(ban)
            for target in sorted(listed - wanted):
                self.ledger.remove(name, target)
                unbans.append(Unban(name, target, now, "removed from ban list"))
        return bans, unbans

    def recidive_bans(self, bans: list[Ban], now: float) -> list[Ban]:
        """Bans of the other jails count as failures of the recidive jails (no log parsing;
        a recidive jail with a logpath reads its log with the recidive filter file)."""
        repeat: list[Ban] = []
        for jail in self.jails.values():
            if jail.config.filter.name != "recidive" or jail.config.logpaths:
                continue
            seen = [Failure(b.ip, b.ip, b.banned_at, None, f"recidive:{b.jail}", 1,
                            f"banned in {b.jail}") for b in bans if b.jail != jail.name]
            if seen:
                repeat.extend(jail.policy.observe(seen, now))
        return repeat

    def _seedrecidive_bans(self, now: float) -> None:
        """Recidive windows continue from the ban history after a restart."""
        for jail in self.jails.values():
            if jail.config.filter.name != "recidive" or jail.config.logpaths:
                continue
            since = now - jail.config.findtime
            past = [Failure(r["ip"], r["ip"], r["banned_at"], None,  # type: ignore[arg-type]
                            f"recidive:{r['jail']}")
                    for r in self.store.bans_since(since) if r["jail"] != jail.name]
            for failure in past:
                if failure.ip is not None:
                    jail.policy.window.add(failure.ip, failure.time)

    def _new_jail(self, config: JailConfig) -> Jail:
        """A jail whose repeat-offender counts continue from the ban history (read per
        address when it is banned again, so a long history costs no start-up time)."""
        key = "*" if config.increment.overalljails else config.name
        counts = self._past_bans.get(key)
        if counts is None:
            counts = self._past_bans[key] = PastBans(self.store, None if key == "*" else key)
        return Jail(config, self.ledger, previous_bans=counts, jitter=random.random)

    def _firewall_layout(self) -> None:
        self.backend.start(firewall_jails(j.config for j in self.jails.values()))
        self.backend.reconcile(list(self.ledger), self.clock())

    # -- the ban path -------------------------------------------------------------------

    def _on_directory_event(self, directory: str) -> None:
        """Called on the watchdog thread: hand over to the loop, coalescing bursts."""
        loop = self._loop
        with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
            loop.call_soon_threadsafe(self._mark_dirty, directory)

    def _on_journal_data(self, key: str) -> None:
        """Called on a journal reader thread when it has lines (or journalctl ended)."""
        loop = self._loop
        with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
            loop.call_soon_threadsafe(self._process_journal, key)

    def _process_journal(self, key: str) -> None:
        entry = self.logs.files.get(key)
        if entry is None:
            return
        try:
            self._process(entry)
        except Exception:  # one source's trouble must not stop the others
            log.exception("processing %s failed", key)

    def _mark_dirty(self, directory: str) -> None:
        self._dirty.add(directory)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._process_dirty)

    def _process_dirty(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, set()
        for directory in dirty:
            entries = self.logs.in_directory(directory)
            if self.logs.rescan_globs():
                entries = self.logs.in_directory(directory)
            for entry in entries:
                try:
                    self._process(entry)
                except Exception:  # one file's trouble must not stop the others
                    log.exception("processing %s failed", entry.path)

    def _drain(self, entry: FollowedFile) -> None:
        """Everything the source has, now (start-up and shutdown)."""
        self._process(entry)
        while entry.pending or entry.follower.more:
            self._process(entry, read=not entry.pending)

    def _continue(self, entry: FollowedFile) -> None:
        if self._commands_waiting():
            # An administrator's command is being read or waits for the kernel: the next
            # chunk of a storm waits for it (a few ms), rather than each turn of the loop
            # the command needs waiting for a chunk. Only commands of the last HOLD_MAX
            # count, so a client that sends nothing or a failing firewall cannot hold the
            # log back longer.
            self._loop.call_later(HOLD_STEP, self._continue, entry)
            return
        entry.scheduled = False
        if (entry.pending or entry.follower.more) and self.logs.files.get(entry.path) is entry:
            # a backlog is read as it is processed: the next part when this one is done
            self._process(entry, read=not entry.pending)

    def _commands_waiting(self) -> bool:
        since = time.monotonic() - HOLD_MAX
        control = self.control
        return (control is not None and control.reading_since(since)) \
            or self.firewall.urgent_since(since)

    def _process(self, entry: FollowedFile, *, read: bool = True) -> None:
        """One chunk of the source (about 128 KiB), then the loop's other work gets its
        turn: during a storm, unban and status answer and the bans of the first chunk go
        to the kernel while the next one is matched."""
        follower = entry.follower
        pending = entry.pending
        if read and not (pending and follower.more):
            # (with a backlog already waiting in the file, the next part is read when
            # this one is processed: memory stays within about two reads)
            pending.extend(follower.read())
            self._note_file_error(entry.path, follower.error)
        if not pending:
            return
        chunks = [pending.popleft()]
        if (pending or follower.more) and not entry.scheduled:
            entry.scheduled = True
            self._loop.call_soon(self._continue, entry)
        now = self.clock()
        bans: list[Ban] = []
        enrichment = self.enrichment
        failures: list[Failure] = []
        seen: list[tuple[str, Failure]] = []
        logins: list[tuple[str, Success]] = []
        names = self.names
        for chunk in chunks:
            entry.bytes_read += len(chunk)
            for name in entry.jails:
                jail = self.jails.get(name)
                if jail is not None:
                    ignored_before = jail.policy.counters.ignored
                    result = jail.feed(chunk, now)
                    bans.extend(result.bans)
                    if jail.policy.alerts:
                        self._report_alerts(jail)
                    if result.failures:
                        if jail.policy.counters.ignored == ignored_before:
                            # the policy ignored none: no need to look each up again
                            seen.extend((name, f) for f in result.failures if f.ip is not None)
                        else:
                            ignored = jail.config.ignoreip
                            seen.extend((name, f) for f in result.failures
                                        if f.ip is not None and f.ip not in ignored)
                        if names is not None and jail.config.usedns in ("yes", "warn"):
                            hosts = [f for f in result.failures if f.ip is None]
                            if hosts:
                                names.worker.submit(name, jail.config.usedns, hosts)
                    if result.successes:
                        logins.extend((name, x) for x in result.successes)
                    if enrichment is not None and result.failures:
                        enrichment.on_failures(name, result.failures)
                        if result.bans:
                            failures.extend(result.failures)
        # the position moves only once everything read is processed
        position = follower.position if not pending else None
        self._since_trim += len(chunks[0])
        if not pending and self._since_trim > TRIM_AFTER and not self._trim_scheduled:
            # after a storm, once the loop is idle: the freed pages go back to the system
            self._trim_scheduled = True
            self._loop.call_later(TRIM_DELAY, self._trim)
        self._commit(bans, now, seen, logins, failures,
                     [position] if position is not None else [])

    def _trim(self) -> None:
        self._trim_scheduled = False
        self._since_trim = 0
        # SQLite's page cache filled up with the storm's history rows: the next storm
        # fills it again, an idle daemon need not hold it (about 2 MiB)
        self.store.shrink_memory()
        release_free_memory()

    def _on_resolved(self, name: str, resolved: list[Failure]) -> None:
        """usedns: failures of a host name, now with a confirmed address, counted."""
        jail = self.jails.get(name)
        if jail is None:
            return  # the jail went away in a reload
        now = self.clock()
        bans = jail.policy.observe(resolved, now)
        if jail.policy.alerts:
            self._report_alerts(jail)
        if self.enrichment is not None:
            self.enrichment.on_failures(name, resolved)
        ignored = jail.config.ignoreip
        self._commit(bans, now, [(name, f) for f in resolved
                                 if f.ip is not None and f.ip not in ignored], [],
                     resolved if bans else [], [])

    def _start_names(self) -> None:
        if self.names is None and any(j.config.usedns in ("yes", "warn")
                                      for j in self.jails.values()):
            from tailban.daemon.names import NameBridge

            self.names = NameBridge(self._loop, self._on_resolved, self.config.daemon.enrich)
            self.names.start()

    def _commit(self, bans: list[Ban], now: float, seen: list[tuple[str, Failure]],
                logins: list[tuple[str, Success]], failures: list[Failure],
                positions: list[Position]) -> None:
        """A round's decisions: bans to the store and the kernel, then history and workers."""
        bans.extend(self.recidive_bans(bans, now))
        enrichment = self.enrichment
        if bans:
            # the bans are durable and on their way to the kernel before the history rows
            # (a storm's 30,000 failures) are written
            self.record(bans)
            self.firewall.submit(bans)
            if enrichment is not None:
                enrichment.on_bans(bans, failures)
            self.schedule_expiry(min((b.expires_at for b in bans if b.expires_at), default=None))
        self._later.append((positions, seen, logins, bans))
        if bans and self.firewall.pending:
            # A large batch waits for the firewall task: let it start the transaction (on
            # its thread) before the history is written, not after.
            if len(self._later) == 1:
                self._loop.call_soon(self._write_later)
        else:
            self._write_later()

    def _write_later(self) -> None:
        """History, positions, the anomaly worker's share and the ban log lines."""
        later, self._later = self._later, []
        if not later:
            return
        self.record(positions=[p for item in later for p in item[0]],
                    failures=[f for item in later for f in item[1]],
                    successes=[x for item in later for x in item[2]])
        for _, seen, logins, bans in later:
            if self.anomaly is not None:
                self.anomaly.worker.submit(seen, logins)
            for ban in bans:
                log.info("Ban %s in %s (%d failures)", ban.ip, ban.jail, ban.failures)

    def record(self, bans: Sequence[Ban] = (), unbans: Sequence[Unban] = (),
               positions: Sequence[Position] = (),
               fleet_unbans: Sequence[tuple[str, str]] = (), *,
               failures: Sequence[tuple[str, Failure]] = (),
               successes: Sequence[tuple[str, Success]] = ()) -> None:
        """Store a decision; bans the jails share go to the fleet outbox in the same commit."""
        fleet = self.fleet
        outgoing = fleet.outgoing(bans, unbans, fleet_unbans) if fleet is not None else []
        seqs = self.store.record(bans, unbans, positions, outgoing, failures, successes)
        if fleet is not None and outgoing:
            fleet.submit(seqs, outgoing)

    def _report_alerts(self, jail: Jail) -> None:
        """Per-account alerts: logged (the user name is attacker text, so repr'd)."""
        for alert in jail.policy.alerts:
            self.account_alerts[jail.name] = self.account_alerts.get(jail.name, 0) + 1
            shown = ", ".join(alert.addresses[:10]) + (" ..." if len(alert.addresses) > 10
                                                       else "")
            log.warning("account alert in %s: %d failures for user %r from %d addresses "
                        "(%s)%s", jail.name, alert.failures, alert.user[:64],
                        len(alert.addresses), shown,
                        "; all banned" if jail.config.account_action == "ban" else "")
        jail.policy.alerts.clear()

    def _save_positions(self) -> None:
        """Where every file stands, so lines written while we are down are read on start."""
        positions = [entry.follower.position for entry in self.logs.files.values()
                     if not entry.pending]
        self.store.record(positions=[p for p in positions if p is not None])

    def _note_file_error(self, path: str, error: str | None) -> None:
        previous = self.file_errors.get(path)
        if error == previous:
            return
        if error:
            log.warning("%s: %s", path, error)
            self.file_errors[path] = error
        else:
            log.info("%s: readable again", path)
            self.file_errors.pop(path, None)

    # -- expiry and maintenance ---------------------------------------------------------

    def schedule_expiry(self, candidate: float | None = None) -> None:
        if candidate is not None and self._expiry_at is not None and candidate >= self._expiry_at:
            return
        at = self.ledger.next_expiry()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._expiry_at = at
        if at is not None:
            delay = max(0.0, at - self.clock())
            self._expiry = self._loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        self._expiry_at = None
        ended = self.ledger.expire(self.clock())
        if ended:
            self.store.record(unbans=ended)
            self.firewall.submit(unbans=ended)
            for unban in ended:
                log.info("Unban %s in %s (expired)", unban.ip, unban.jail)
        self.schedule_expiry()

    async def _maintenance(self) -> None:
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        while True:
            await asyncio.sleep(min(SAFETY_POLL, self.config.daemon.checkinterval))
            try:
                self._process_all()
                if self.anomaly is not None:
                    self.anomaly.worker.tick(self.clock())
                if loop.time() - last_full < self.config.daemon.checkinterval:
                    continue
                if self.anomaly is not None:
                    self.anomaly.save()
                last_full = loop.time()
                now = self.clock()
                for jail in self.jails.values():
                    jail.policy.expire(now)
                history = self.config.daemon.history
                self.store.purge_history(now - max(self.config.daemon.dbpurgeage, history.keep))
                roll_up(self.store.connection, now)
                purge(self.store.connection, now, history.raw, history.keep)
                await self.reconcile(only_if_broken=True)
            except FirewallError as exc:
                log.error("firewall check failed: %s", exc)
            except Exception:  # keep the safety net alive whatever one round hit
                log.exception("maintenance round failed")

    def _process_all(self) -> None:
        self.logs.rescan_globs()
        for entry in list(self.logs.files.values()):
            self._process(entry)

    async def reconcile(self, only_if_broken: bool = False) -> bool:
        """Restore tailban's table if someone removed it; True when it had to."""
        loop = asyncio.get_running_loop()
        check = getattr(self.backend, "is_intact", None)
        if only_if_broken and check is not None and await loop.run_in_executor(None, check):
            return False
        if only_if_broken:
            log.warning("firewall objects were changed behind tailban's back: restoring")
        await loop.run_in_executor(None, self._firewall_layout)
        return True

    # -- reload -------------------------------------------------------------------------

    async def _reload_signal(self) -> None:
        try:
            await self.reload()
        except CommandError as exc:
            log.error("reload refused, running configuration kept: %s", exc)

    async def reload(self) -> dict[str, Any]:
        async with self._reload_lock:
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, load_config, self.config.confdir)
            except ConfigError as exc:
                raise CommandError(f"configuration not reloaded: {exc}") from None
            for warning in new.warnings:
                log.warning("%s", warning)
            old_jails = self.jails
            enabled = {j.name: j for j in new.enabled_jails}
            jails: dict[str, Jail] = {}
            for name, jail_config in enabled.items():
                current = old_jails.get(name)
                jails[name] = (current if current is not None and current.config == jail_config
                               else self._new_jail(jail_config))
            now = self.clock()
            removed = [Unban(b.jail, b.ip, now, "jail removed") for b in list(self.ledger)
                       if b.jail not in enabled]
            for unban in removed:
                self.ledger.remove(unban.jail, unban.ip)
            self.jails = jails
            self._start_names()
            self.config = new
            if isinstance(self.backend, CompositeBackend):
                self.backend.configure(firewall_kinds(enabled.values()))
            try:
                await loop.run_in_executor(None, self._firewall_layout)
            except FirewallError as exc:
                log.error("firewall layout after reload failed (will retry): %s", exc)
            listed, delisted = self._banlist_changes(now)
            self.store.record(listed, [*removed, *delisted])
            if listed or delisted:
                self.firewall.submit(listed, delisted)
            if self.fleet is not None:
                self.fleet.reconfigure(new)
            if (new.daemon.enrich, new.daemon.mail) != (self._started_config.daemon.enrich,
                                                        self._started_config.daemon.mail):
                log.warning("[enrich]/[geoip]/[whois]/[dns]/[dnsbl]/[mail] changed: they take "
                            "effect at restart")
            self.logs.configure(list(enabled.values()))
            for pattern in self.logs.patterns:
                self.watcher.watch(pattern)
            self._process_all()
            changed = sorted(n for n in jails if old_jails.get(n) is not jails[n])
            log.info("configuration reloaded: jails %s", ", ".join(jails) or "none")
            return {"jails": sorted(jails), "restarted": changed,
                    "warnings": list(new.warnings)}
