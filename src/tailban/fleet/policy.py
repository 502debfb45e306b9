"""What a host does with a row another host wrote: apply it, pass over it, or reject it.

Pure: rows and time in, decisions out. Every field of a row is untrusted (any host with
write access, or anyone who got its password, could have written it), so each is checked
for type and form before it can reach the firewall, and ``ignoreip`` always wins.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tailban.core.addresses import IgnoreList, normalise_target
from tailban.core.events import Ban

SHARE_MODES = ("publish", "subscribe", "both", "none")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_JAIL = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class FleetJailRules:
    name: str
    share: str = "both"
    fleet_bantime: float | None = None  # None: the origin's expiry; negative: forever
    ignoreip: IgnoreList = field(default_factory=IgnoreList)
    trust: tuple[str, ...] = ()  # host names or "group:NAME"; empty: every host

    @property
    def publishes(self) -> bool:
        return self.share in ("publish", "both")

    @property
    def subscribes(self) -> bool:
        return self.share in ("subscribe", "both")


@dataclass(frozen=True, slots=True)
class FleetRules:
    host: str
    jails: dict[str, FleetJailRules]
    max_skew: float = 300.0  # a row stamped further in the future is refused


@dataclass(frozen=True, slots=True)
class FleetUnban:
    ip: str
    jails: tuple[str, ...]
    host: str


@dataclass(frozen=True, slots=True)
class Rejected:
    row_id: object
    reason: str


@dataclass(slots=True)
class FleetDecisions:
    bans: list[Ban] = field(default_factory=list)
    unbans: list[FleetUnban] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    passed: int = 0  # ours, expired, or for a jail that does not subscribe here
    last_id: int = 0


def trusted(trust: tuple[str, ...], host: str, group: str) -> bool:
    if not trust:
        return True
    return host in trust or (bool(group) and f"group:{group}" in trust)


def clean_text(value: object, limit: int = 200) -> str:
    """A reason or name made safe to log and show: one line, printable, bounded."""
    return _UNPRINTABLE.sub("?", str(value))[:limit]


def _overlaps_ignored(target: str, ignore: IgnoreList) -> bool:
    if "/" not in target:
        return target in ignore
    net = ipaddress.ip_network(target, strict=False)
    return any(net.version == other.version and net.overlaps(other)
               for other in ignore.networks)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def judge(rows: Iterable[tuple[object, ...]], rules: FleetRules, now: float,
          last_id: int = 0) -> FleetDecisions:
    """Decisions for rows read in id order; ``last_id`` advances past every row seen."""
    out = FleetDecisions(last_id=last_id)
    for row in rows:
        verdict = _judge_one(row, rules, now, out)
        if isinstance(row, tuple) and row and isinstance(row[0], int) and row[0] > out.last_id:
            out.last_id = row[0]
        if isinstance(verdict, Rejected):
            out.rejected.append(verdict)
    return out


def _judge_one(row: object, rules: FleetRules, now: float,
               out: FleetDecisions) -> Rejected | None:
    if not isinstance(row, tuple) or len(row) != 9:
        return Rejected(None, "malformed row")
    row_id, kind, raw_ip, jail, host, group, reason, banned_at, expires_at = row
    if isinstance(row_id, bool) or not isinstance(row_id, int):
        return Rejected(row_id, "id is not an integer")
    if not isinstance(host, str) or not _HOST.match(host):
        return Rejected(row_id, f"bad host name {clean_text(host, 64)!r}")
    if host == rules.host:
        out.passed += 1
        return None
    if not isinstance(group, str) or len(group) > 64 or _UNPRINTABLE.search(group):
        return Rejected(row_id, "bad group")
    if kind not in ("ban", "unban"):
        return Rejected(row_id, f"unknown kind {clean_text(kind, 32)!r}")
    ip = normalise_target(raw_ip) if isinstance(raw_ip, str) and len(raw_ip) <= 64 else None
    if ip is None:
        return Rejected(row_id, f"not an address or network: {clean_text(raw_ip, 64)!r}")
    if not isinstance(jail, str) or not (jail == "" and kind == "unban" or _JAIL.match(jail)):
        return Rejected(row_id, f"bad jail name {clean_text(jail, 40)!r}")
    started = _number(banned_at)
    if started is None:
        return Rejected(row_id, "banned_at is not a number")
    if started > now + rules.max_skew:
        return Rejected(row_id, "banned_at lies in the future")
    if kind == "unban":
        names = tuple(n for n, j in sorted(rules.jails.items())
                      if (jail in ("", n)) and j.subscribes and trusted(j.trust, host, group))
        if names:
            out.unbans.append(FleetUnban(ip, names, host))
        else:
            out.passed += 1
        return None
    local = rules.jails.get(jail)
    if local is None or not local.subscribes:
        out.passed += 1
        return None
    if not trusted(local.trust, host, group):
        return Rejected(row_id, f"host {host} is not trusted by jail {jail}")
    if _overlaps_ignored(ip, local.ignoreip):
        return Rejected(row_id, f"{ip} is in ignoreip of jail {jail}")
    ends: float | None
    if expires_at is None:
        ends = None
    else:
        ends = _number(expires_at)
        if ends is None or ends < started:
            return Rejected(row_id, "expires_at is not a number after banned_at")
    if local.fleet_bantime is not None:
        ends = None if local.fleet_bantime < 0 else started + local.fleet_bantime
    if ends is not None and ends <= now:
        out.passed += 1
        return None
    out.bans.append(Ban(jail, ip, started, ends, 0, clean_text(reason), f"fleet:{host}"))
    return None
