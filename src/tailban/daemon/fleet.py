"""The daemon's side of the fleet: what to publish, and applying what others published.

Publishing costs the ban path one more table in the transaction it already makes (the
outbox) and a deque append; the fleet threads do the network work. Fleet bans reach the
ledger, store and firewall on the loop, exactly like local ones, so expiry, ``banned``
and restart handling need nothing special.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tailban.config.model import Config, FleetSettings
from tailban.core.events import Ban, Unban
from tailban.fleet.link import FleetLink
from tailban.fleet.policy import FleetDecisions, FleetJailRules, FleetRules
from tailban.stores.fleet import (
    FleetStore,
    FleetStoreError,
    Outgoing,
    open_fleet_store,
    redact,
    schema_is_current,
)

if TYPE_CHECKING:
    from tailban.daemon.server import Daemon

log = logging.getLogger("tailban.fleet")

PASSWORD_ENV = "TAILBAN_FLEET_PASSWORD"
LAST_ID_KEY = "fleet_last_id"
# Decisions of this host; banlist files are each host's own, fleet bans are never echoed.
PUBLISHED_SOURCES = ("log", "manual", "account", "dnsbl")


def fleet_rules(config: Config) -> FleetRules:
    fleet = config.daemon.fleet
    jails = {
        j.name: FleetJailRules(j.name, j.share, j.fleet_bantime, j.ignoreip,
                               j.fleet_trust if j.fleet_trust is not None else fleet.trust)
        for j in config.enabled_jails}
    return FleetRules(fleet.host, jails)


def read_password(settings: FleetSettings) -> str | None:
    """From password_file (re-read at each connect, so a rotated password just works)."""
    if settings.password_file:
        try:
            with open(settings.password_file, encoding="utf-8") as f:
                return f.readline().strip() or None
        except OSError as exc:
            raise FleetStoreError(f"password_file: {exc}") from None
    return os.environ.get(PASSWORD_ENV) or None


def open_store(settings: FleetSettings, listen: bool = False,
               migrate: bool = False) -> FleetStore:
    options: dict[str, Any] = dict(settings.tls)
    if settings.store.startswith("postgres"):
        options.update(password=read_password(settings), listen=listen)
    store = open_fleet_store(settings.store, **options)
    try:
        if migrate:
            done = store.migrate()
            if done:
                log.info("fleet: schema brought to version %d", done[-1])
        elif not schema_is_current(store):
            raise FleetStoreError("the fleet tables are missing or older than this tailban: "
                                  "run `tailban fleet init` as the database owner")
    except FleetStoreError:
        store.close()
        raise
    return store


class FleetBridge:
    """Owns the FleetLink; every method here runs on the daemon's loop."""

    def __init__(self, daemon: Daemon, loop: asyncio.AbstractEventLoop) -> None:
        self.daemon = daemon
        self.loop = loop
        settings = daemon.config.daemon.fleet
        self.settings = settings
        self.link = FleetLink(
            lambda listen: open_store(settings, listen, migrate=settings.migrate and
                                      not listen),
            settings.host, settings.group, fleet_rules(daemon.config),
            self._deliver, self._published, keep=settings.keep, clock=daemon.clock)

    def start(self) -> None:
        store = self.daemon.store
        last_id = int(store.get_meta(LAST_ID_KEY) or 0)
        backlog = store.fleet_outbox()
        self.link.start(last_id, backlog)
        log.info("fleet: host %s, store %s, %d bans waiting to be published, reading after "
                 "id %d", self.settings.host, redact(self.settings.store), len(backlog),
                 last_id)

    def stop(self) -> None:
        self.link.stop()

    def reconfigure(self, config: Config) -> None:
        if config.daemon.fleet != self.settings:
            log.warning("fleet: [fleet] settings changed; they take effect at restart")
        self.link.rules = fleet_rules(config)

    def status(self) -> dict[str, Any]:
        return {"store": redact(self.settings.store), **self.link.status()}

    # -- publishing -------------------------------------------------------------------------

    def outgoing(self, bans: Iterable[Ban] = (), unbans: Iterable[Unban] = (),
                 fleet_unbans: Sequence[tuple[str, str]] = ()) -> list[Outgoing]:
        """This host's own decisions that its jails share (never fleet bans: no echo)."""
        rules = self.link.rules.jails
        out = [Outgoing("ban", b.ip, b.jail, b.line[:200] or b.source, b.banned_at,
                        b.expires_at)
               for b in bans
               if b.source in PUBLISHED_SOURCES and b.jail in rules and rules[b.jail].publishes]
        now = self.daemon.clock()
        out += [Outgoing("unban", ip, jail, "unban --fleet", now, None)
                for ip, jail in fleet_unbans]
        del unbans  # plain local unbans (expiry, manual) stay local
        return out

    def submit(self, seqs: Sequence[int], outgoing: Sequence[Outgoing]) -> None:
        self.link.publish(list(zip(seqs, outgoing, strict=True)))

    def _published(self, seqs: list[int]) -> None:
        """Publisher thread: the rows are in the fleet, drop them from the outbox."""
        with contextlib.suppress(RuntimeError):  # loop closed at shutdown: kept for next run
            self.loop.call_soon_threadsafe(self.daemon.store.fleet_published, seqs)

    # -- subscribing ------------------------------------------------------------------------

    def _deliver(self, decisions: FleetDecisions) -> None:
        """Subscriber thread: hand judged rows to the loop."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._apply, decisions)

    def _apply(self, decisions: FleetDecisions) -> None:
        daemon = self.daemon
        now = daemon.clock()
        ledger = daemon.ledger
        bans: list[Ban] = []
        for ban in decisions.bans:
            if ban.jail in daemon.jails and not ledger.is_banned(ban.jail, ban.ip, now):
                ledger.add(ban)
                bans.append(ban)
        unbans: list[Unban] = []
        for lift in decisions.unbans:
            for jail in lift.jails:
                if ledger.remove(jail, lift.ip) is not None:
                    unbans.append(Unban(jail, lift.ip, now, f"fleet unban by {lift.host}"))
        daemon.store.record(bans, unbans)
        daemon.store.set_meta(LAST_ID_KEY, str(decisions.last_id))
        if bans or unbans:
            daemon.firewall.submit(bans, unbans)
        if bans:
            self.link.lag = max(now - b.banned_at for b in bans)
            self.link.applied += len(bans)
            log.info("fleet: %d bans applied (%s%s), lag %.3f s", len(bans),
                     ", ".join(f"{b.ip} in {b.jail} from {b.source[6:]}" for b in bans[:5]),
                     " ..." if len(bans) > 5 else "", self.link.lag)
            daemon.schedule_expiry(min((b.expires_at for b in bans if b.expires_at),
                                       default=None))
        for unban in unbans:
            log.info("Unban %s in %s (%s)", unban.ip, unban.jail, unban.reason)
