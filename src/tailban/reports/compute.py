"""The numbers of ``tailban report``, computed from the store (read-only).

Time buckets are the server's time zone (``tz``). Failures come from the hourly and daily
roll-ups for completed hours and from the raw rows after ``rolled_until``, so a report is
always current; months, days and hours of day are derived from UTC hours, which is exact for
zones whose offset is a whole number of hours (day-level address figures use UTC days).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import Any

from tailban.stores.history import DAY, HOUR, rolled_until

TOP = 20
SERVICES = {"sshd": "ssh", "postfix": "postfix", "dovecot": "dovecot", "selinux-ssh": "ssh",
            "dropbear": "ssh", "courier-auth": "courier", "vsftpd": "ftp", "proftpd": "ftp",
            "pam-generic": "pam"}


def open_readonly(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _local(epoch: float, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(epoch, tz)


class _Buckets:
    """Per jail: attempts per UTC hour (from roll-ups and raw rows)."""

    def __init__(self) -> None:
        self.hours: dict[str, Counter[int]] = defaultdict(Counter)
        self.users: dict[str, Counter[str]] = defaultdict(Counter)
        # per jail, per ip: attempts, first, last, active UTC days
        self.ips: dict[str, dict[str, list[Any]]] = defaultdict(dict)


def _load(db: sqlite3.Connection, since: float, until: float,
          jails: Sequence[str] | None) -> _Buckets:
    rolled = rolled_until(db)
    out = _Buckets()
    h0, h1 = int(since // HOUR), int(min(until, rolled) // HOUR)
    d0, d1 = int(since // DAY), int(min(until, rolled) // DAY)
    jail_filter = ""
    params: list[Any] = []
    if jails:
        jail_filter = f" AND jail IN ({','.join('?' * len(jails))})"
        params = list(jails)
    for hour, jail, user, count in db.execute(
            "SELECT hour, jail, user, sum(count) FROM roll_hour_user WHERE hour >= ? AND hour < ?"
            + jail_filter + " GROUP BY hour, jail, user", [h0, h1, *params]):
        out.hours[jail][hour] += count
        out.users[jail][user] += count
    rolled_days = db.execute(
        "SELECT jail, ip, sum(count), min(first), max(last), count(DISTINCT day) "
        "FROM roll_day_ip WHERE day >= ? AND day <= ? AND first < ? AND last >= ?"
        + jail_filter + " GROUP BY jail, ip", [d0, d1, min(until, rolled), since, *params])
    raw_start = max(since, rolled)
    raw = db.execute(
        "SELECT jail, ip, coalesce(user, ''), CAST(t / 3600 AS INTEGER), count, t "
        "FROM failures WHERE t >= ? AND t < ?" + jail_filter, [raw_start, until, *params])
    for jail, ip, count, first, last, days in rolled_days:
        out.ips[jail][ip] = [count, first, last, days]
    raw_days: dict[tuple[str, str], set[int]] = defaultdict(set)
    for jail, ip, user, hour, count, t in raw:
        out.hours[jail][hour] += count
        out.users[jail][user] += count
        entry = out.ips[jail].get(ip)
        if entry is None:
            out.ips[jail][ip] = [count, t, t, 0]
        else:
            entry[0] += count
            entry[1] = min(entry[1], t)
            entry[2] = max(entry[2], t)
        raw_days[(jail, ip)].add(int(t // DAY))
    for (jail, ip), days in raw_days.items():
        out.ips[jail][ip][3] += len(days)
    return out


def _merge_ips(per_jail: Iterable[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for table in per_jail:
        for ip, (count, first, last, days) in table.items():
            entry = merged.get(ip)
            if entry is None:
                merged[ip] = [count, first, last, days]
            else:
                entry[0] += count
                entry[1] = min(entry[1], first)
                entry[2] = max(entry[2], last)
                entry[3] = max(entry[3], days)
    return merged


class _Facts:
    """Country, rDNS and DNSBL per address from the enrichment cache."""

    def __init__(self, db: sqlite3.Connection, ips: Iterable[str]) -> None:
        self.country: dict[str, tuple[str, str]] = {}
        self.named: dict[str, bool] = {}
        self.dnsbl: dict[str, list[str]] = {}
        wanted = list(ips)
        for start in range(0, len(wanted), 900):
            part = wanted[start:start + 900]
            for ip, data in db.execute(
                    f"SELECT ip, data FROM enrichment WHERE ip IN ({','.join('?' * len(part))})",
                    part):
                try:
                    facts = json.loads(data)
                except ValueError:
                    continue
                if facts.get("country_iso"):
                    self.country[ip] = (str(facts["country_iso"]),
                                        str(facts.get("country_name") or ""))
                self.named[ip] = bool(facts.get("rdns_confirmed"))
                if facts.get("dnsbl_checked") is not None:
                    self.dnsbl[ip] = [str(d.get("zone")) for d in facts.get("dnsbl") or []]


def _series(counter: Counter[str]) -> list[list[Any]]:
    return [[key, counter[key]] for key in sorted(counter)]


def _section(hours: Counter[int], users: Counter[str], ips: dict[str, list[Any]],
             bans: list[tuple[str, str, float, float | None]], facts: _Facts,
             first_seen: dict[str, int], tz: tzinfo, privileged: Sequence[str],
             until_country: str | None, since: float, until: float) -> dict[str, Any]:
    per_month: Counter[str] = Counter()
    per_day: Counter[str] = Counter()
    per_hour = [0] * 24
    for hour, count in hours.items():
        local = _local(hour * HOUR, tz)
        per_month[local.strftime("%Y-%m")] += count
        per_day[local.strftime("%Y-%m-%d")] += count
        per_hour[local.hour] += count
    total = sum(per_hour)
    priv = Counter({u: users[u] for u in privileged if users.get(u)})
    countries: dict[str, list[Any]] = {}
    for ip, (count, *_rest) in ips.items():
        code, name = facts.country.get(ip, ("??", "unknown"))
        entry = countries.setdefault(code, [code, name, 0, 0])
        entry[2] += count
        entry[3] += 1
    ranked = sorted(countries.values(), key=lambda e: (-e[2], e[0]))
    until_entry = None
    if until_country:
        for rank, entry in enumerate(ranked, start=1):
            if entry[0] == until_country.upper():
                until_entry = {"country": entry[0], "rank": rank, "attempts": entry[2]}
                break
    top_n = max(TOP, until_entry["rank"]) if until_entry else TOP
    # addresses active per month (by their last day in it, approximated by first/last)
    month_ips: dict[str, set[str]] = defaultdict(set)
    for ip, (_count, first, last, _days) in ips.items():
        for moment in {first, last}:
            month_ips[_local(moment, tz).strftime("%Y-%m")].add(ip)
    rdns = []
    new_returning = []
    for month in sorted(month_ips):
        active = month_ips[month]
        looked = [ip for ip in active if ip in facts.named]
        named = sum(1 for ip in looked if facts.named[ip])
        rdns.append([month, round(named / len(looked), 4) if looked else None, named,
                     len(looked)])
        new = sum(1 for ip in active
                  if _local(first_seen.get(ip, 0) * DAY, tz).strftime("%Y-%m") >= month)
        new_returning.append([month, new, len(active) - new])
    bans_month: Counter[str] = Counter(_local(b[2], tz).strftime("%Y-%m") for b in bans
                                       if since <= b[2] < until)
    banned_ips = {b[1] for b in bans if since <= b[2] < until}
    checked = [ip for ip in banned_ips if ip in facts.dnsbl]
    zones: Counter[str] = Counter(z for ip in checked for z in facts.dnsbl[ip])
    by_time = sorted(ips.items(), key=lambda kv: (-(kv[1][2] - kv[1][1]), kv[0]))[:TOP]
    by_days = sorted(ips.items(), key=lambda kv: (-kv[1][3], -kv[1][0], kv[0]))[:TOP]
    return {
        "attempts_total": total, "addresses_total": len(ips),
        "bans_total": sum(bans_month.values()),
        "attempts_per_month": _series(per_month), "attempts_per_day": _series(per_day),
        "attempts_per_hour_of_day": per_hour,
        "privileged_attempts": [[u, n] for u, n in priv.most_common()],
        "privileged_total": sum(priv.values()),
        "bans_per_month": _series(bans_month),
        "ban_table_size": _table_size(bans, tz, since, until),
        "top_countries": ranked[:top_n], "until_country": until_entry,
        "rdns_share_per_month": rdns,
        "top_accounts": [[u or "(none)", n] for u, n in users.most_common(TOP)],
        "dnsbl": {"banned": len(banned_ips), "checked": len(checked),
                  "listed": sum(1 for ip in checked if facts.dnsbl[ip]),
                  "by_zone": [[z, n] for z, n in zones.most_common()]},
        "new_vs_returning_per_month": new_returning,
        "longest_running": [{"ip": ip, "first": v[1], "last": v[2],
                             "days": round((v[2] - v[1]) / DAY, 2), "attempts": v[0]}
                            for ip, v in by_time],
        "most_persistent": [{"ip": ip, "attempts": v[0], "active_days": v[3], "first": v[1],
                             "last": v[2]} for ip, v in by_days],
    }


def _table_size(bans: list[tuple[str, str, float, float | None]], tz: tzinfo, since: float,
                until: float) -> list[list[Any]]:
    """Active bans at the end of each local day of the period."""
    if not bans:
        return []
    events: list[tuple[float, int]] = []
    for _jail, _ip, start, end in bans:
        events.append((start, 1))
        if end is not None:
            events.append((end, -1))
    events.sort()
    out: list[list[Any]] = []
    day = _local(max(since, min(b[2] for b in bans)), tz).replace(hour=0, minute=0, second=0,
                                                                  microsecond=0)
    active = 0
    index = 0
    last_day = _local(until, tz)
    while day <= last_day:
        nxt = day.replace(hour=23, minute=59, second=59)
        while index < len(events) and events[index][0] <= nxt.timestamp():
            active += events[index][1]
            index += 1
        if nxt.timestamp() >= since:
            out.append([day.strftime("%Y-%m-%d"), active])
        day = datetime.fromtimestamp(nxt.timestamp() + 1, tz)
        if len(out) > 5000:
            break
    return out


def compute_report(db: sqlite3.Connection, *, since: float, until: float, tz: tzinfo,
                   jails: Sequence[str] | None = None, privileged: Sequence[str] = ("root",),
                   until_country: str | None = None, host: str = "",
                   now: float | None = None) -> dict[str, Any]:
    data = _load(db, since, until, jails)
    names = sorted(set(data.hours) | set(data.ips))
    jail_filter = ""
    params: list[Any] = []
    if jails:
        jail_filter = f" WHERE jail IN ({','.join('?' * len(jails))})"
        params = list(jails)
    bans = [(j, ip, float(a), None if e is None else float(e)) for j, ip, a, e in db.execute(
        "SELECT jail, ip, banned_at, coalesce(ended_at, expires_at) FROM ban_history"
        + jail_filter, params)]
    all_ips = _merge_ips(data.ips.values())
    facts = _Facts(db, set(all_ips) | {b[1] for b in bans})
    first_seen: dict[str, int] = {}
    for ip, day in db.execute("SELECT ip, min(day) FROM roll_day_ip GROUP BY ip"):
        first_seen[ip] = day
    for ip, t in db.execute("SELECT ip, min(t) FROM failures GROUP BY ip"):
        day = int(t // DAY)
        if ip not in first_seen or day < first_seen[ip]:
            first_seen[ip] = day
    overall_hours: Counter[int] = Counter()
    overall_users: Counter[str] = Counter()
    per_service: dict[str, Counter[str]] = defaultdict(Counter)
    for name in names:
        overall_hours.update(data.hours[name])
        overall_users.update(data.users[name])
    jail_filters = dict(db.execute("SELECT DISTINCT jail, jail FROM ban_history"))
    for name in names:
        per_service[_service(name, jail_filters)].update(data.users[name])
    args = (facts, first_seen, tz, privileged, until_country, since, until)
    offset = _local(until, tz).strftime("%z")
    return {
        "generated_at": now if now is not None else until,
        "timezone": f"{_local(until, tz).tzname()} (UTC{offset[:3]}:{offset[3:]})",
        "since": since, "until": until, "host": host, "jails": names,
        "overall": _section(overall_hours, overall_users, all_ips, bans, *args),
        "per_jail": {name: _section(data.hours[name], data.users[name], data.ips[name],
                                    [b for b in bans if b[0] == name], *args)
                     for name in names},
        "top_accounts_by_service": {svc: [[u or "(none)", n] for u, n in c.most_common(TOP)]
                                    for svc, c in sorted(per_service.items())},
    }


def _service(jail: str, _known: dict[str, str]) -> str:
    for prefix, service in SERVICES.items():
        if jail.startswith(prefix):
            return service
    return jail
