"""The jail's decision: failures of an address within findtime reach maxretry -> ban."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tailban.bans.ledger import BanLedger
from tailban.core.addresses import IgnoreList, prefix_of
from tailban.core.bantime import BantimeIncrement
from tailban.core.events import Ban, Failure
from tailban.jails.accounts import AccountAlert, AccountWindow
from tailban.jails.window import FailureWindow


@dataclass(frozen=True, slots=True)
class JailRules:
    """The numbers a jail decides with (validated by the config loader)."""

    name: str
    maxretry: int
    findtime: float
    bantime: float  # seconds; negative = forever
    ignore: IgnoreList
    increment: BantimeIncrement = field(default_factory=BantimeIncrement)
    prefix4: int = 32  # banprefix4: count and ban whole networks of this size
    prefix6: int = 128  # banprefix6: 64 bans an attacker's /64, which it rotates through
    account_maxretry: int = 0  # 0: no per-account counting
    account_findtime: float = 3600.0
    account_action: str = "alert"  # alert | ban (every address that took part)


@dataclass(slots=True)
class JailCounters:
    """What status shows about a jail's counting."""

    failures: int = 0
    ignored: int = 0
    stale: int = 0
    while_banned: int = 0
    bans: int = 0


class JailPolicy:
    """Counts failures per address and decides bans; the ledger is shared by all jails."""

    __slots__ = ("rules", "ledger", "window", "counters", "previous_bans", "jitter", "accounts",
                 "alerts")

    def __init__(self, rules: JailRules, ledger: BanLedger, *,
                 previous_bans: dict[str, int] | None = None,
                 jitter: Callable[[], float] = lambda: 0.0) -> None:
        self.rules = rules
        self.ledger = ledger
        self.window = FailureWindow(rules.findtime)
        self.counters = JailCounters()
        # Bans per address so far (this jail's, or shared by all jails for overalljails):
        # what bantime.increment grows with. Seeded from the store's history at start.
        self.previous_bans = {} if previous_bans is None else previous_bans
        self.jitter = jitter
        self.accounts = (AccountWindow(rules.name, rules.account_maxretry,
                                       rules.account_findtime)
                         if rules.account_maxretry > 0 else None)
        self.alerts: list[AccountAlert] = []  # drained by the daemon (logged, counted)

    def _bantime(self, ip: str, override: float | None = None) -> float:
        if not self.rules.increment.enabled:
            # past bans only matter to bantime.increment: no look-up per ban in a storm
            return self.rules.bantime if override is None else override
        count = self.previous_bans.get(ip, 0)
        self.previous_bans[ip] = count + 1
        if override is not None:
            return override
        return self.rules.increment.seconds(self.rules.bantime, count, self.jitter())

    def observe(self, failures: Iterable[Failure], now: float | None = None) -> list[Ban]:
        """Count ``failures`` and return the bans they cause.

        ``now`` is the daemon's clock; a failure older than findtime at ``now`` is a
        backlog line that can no longer contribute (fail2ban ignores those too). With
        ``now=None`` (offline replay) each failure's own time is "now".
        """
        rules = self.rules
        name = rules.name
        ignore = rules.ignore
        ledger = self.ledger
        counters = self.counters
        bans: list[Ban] = []
        for failure in failures:
            ip = failure.ip
            if ip is None:
                continue
            if ip in ignore:
                counters.ignored += failure.count
                continue
            at = failure.time if now is None else now
            if failure.time < at - rules.findtime:
                counters.stale += failure.count
                continue
            counters.failures += failure.count
            if rules.prefix4 < 32 or rules.prefix6 < 128:
                ip = prefix_of(ip, rules.prefix4, rules.prefix6)
            if self.accounts is not None and failure.user:
                alert = self.accounts.add(failure.user, ip, failure.time)
                if alert is not None:
                    self.alerts.append(alert)
                    if rules.account_action == "ban":
                        bans.extend(self._ban_all(alert, at))
            if ledger.is_banned(name, ip, at):
                counters.while_banned += failure.count
                continue
            seen = self.window.add(ip, failure.time, failure.count)
            if seen >= rules.maxretry:
                bans.append(self._ban(ip, at, seen, failure.line, "log"))
        return bans

    def _ban(self, ip: str, at: float, failures: int, line: str, source: str) -> Ban:
        self.window.forget(ip)
        seconds = self._bantime(ip)
        expires = None if seconds < 0 else at + seconds
        ban = Ban(self.rules.name, ip, at, expires, failures, line, source)
        self.ledger.add(ban)
        self.counters.bans += 1
        return ban

    def _ban_all(self, alert: AccountAlert, at: float) -> list[Ban]:
        """account_action = ban: every address that took part, unless banned already."""
        return [self._ban(ip, at, self.window.count(ip), f"account {alert.user!r} attacked "
                          f"from {len(alert.addresses)} addresses", "account")
                for ip in alert.addresses if not self.ledger.is_banned(self.rules.name, ip, at)]

    def forget(self, ip: str) -> None:
        """A successful login from ``ip`` (reset_on_success): its failures no longer count."""
        self.window.forget(ip)

    def manual_ban(self, ip: str, now: float, bantime: float | None = None,
                   source: str = "manual") -> Ban:
        """A ban asked for by the administrator (or a DNSBL listing); ignoreip does not stop
        it, so callers acting on their own check it first."""
        seconds = self._bantime(ip, bantime)
        expires = None if seconds < 0 else now + seconds
        ban = Ban(self.rules.name, ip, now, expires, self.window.count(ip), "", source)
        self.window.forget(ip)
        self.ledger.add(ban)
        self.counters.bans += 1
        return ban

    def expire(self, now: float) -> int:
        """Forget addresses that have had no failure for findtime (bounded memory)."""
        if self.accounts is not None:
            self.accounts.expire(now)
        return self.window.expire(now)
