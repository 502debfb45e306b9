"""The numbers of ``tailban report``, computed from the store (read-only).

Heavy lifting happens in SQLite: the period's failures are gathered once per address into
a temporary table (daily roll-ups for completed hours plus the raw rows after
``rolled_until``), and the country, rDNS and DNSBL figures join it with the enrichment
cache. Python only shapes the results, so a year of 10M failures stays interactive.

Time buckets are the server's time zone: attempts per month, day and hour of day come from
UTC hours converted exactly (exact for zones whose offset is whole hours); address-level
figures (new/returning, rDNS share per month) use UTC days shifted by the zone's offset
at the end of the period.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from tailban.stores.history import DAY, HOUR, rolled_until

TOP = 20
SERVICES = {"sshd": "ssh", "postfix": "postfix", "dovecot": "dovecot", "selinux-ssh": "ssh",
            "dropbear": "ssh", "courier-auth": "courier", "vsftpd": "ftp", "proftpd": "ftp",
            "pam-generic": "pam"}


def open_readonly(path: str) -> sqlite3.Connection:
    """A read-only connection sized for reports: big page cache, memory-mapped reads and
    temporary tables in memory (the default 2 MB cache thrashes on a year of history)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.execute("PRAGMA cache_size = -262144")
    db.execute("PRAGMA mmap_size = 1073741824")
    db.execute("PRAGMA temp_store = MEMORY")
    return db


def service_of(jail: str) -> str:
    for prefix, service in SERVICES.items():
        if jail.startswith(prefix):
            return service
    return jail


class _Clock:
    """Cached local labels for UTC hours and days (a year is 8,760 hours)."""

    def __init__(self, tz: tzinfo, offset: float) -> None:
        self.tz = tz
        self.offset = offset
        self.hour_labels = lru_cache(maxsize=None)(self._hour)

    def _hour(self, hour: int) -> tuple[str, str, int]:
        local = datetime.fromtimestamp(hour * HOUR, self.tz)
        return local.strftime("%Y-%m"), local.strftime("%Y-%m-%d"), local.hour

    def month(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self.tz).strftime("%Y-%m")


def _in(jails: Sequence[str] | None, column: str = "jail") -> tuple[str, list[Any]]:
    if not jails:
        return "", []
    return f" AND {column} IN ({','.join('?' * len(jails))})", list(jails)


def _prepare(db: sqlite3.Connection, since: float, until: float,
             jails: Sequence[str] | None, tz: tzinfo) -> None:
    """TEMP tables: per jail and address in the period, and first day ever per address."""
    rolled = rolled_until(db)
    cut = min(until, rolled)
    where, params = _in(jails)
    db.execute("DROP TABLE IF EXISTS temp.period_day")
    db.execute("DROP TABLE IF EXISTS temp.period_ip")
    db.execute("CREATE TEMP TABLE period_day (jail TEXT, ip TEXT, day INTEGER, n INTEGER, "
               "first REAL, last REAL, PRIMARY KEY (jail, ip, day)) WITHOUT ROWID")
    db.execute(
        "INSERT INTO period_day SELECT jail, ip, day, count, first, last FROM roll_day_ip "
        "WHERE day >= ? AND day <= ? AND last >= ? AND first < ?" + where,
        [int(since // DAY), int(cut // DAY), since, cut, *params])
    db.execute(
        "INSERT INTO period_day SELECT jail, ip, CAST(t / 86400 AS INTEGER), sum(count), "
        "min(t), max(t) FROM failures WHERE t >= ? AND t < ?" + where + " "
        "GROUP BY jail, ip, CAST(t / 86400 AS INTEGER) "
        "ON CONFLICT (jail, ip, day) DO UPDATE SET n = n + excluded.n, "
        "first = min(first, excluded.first), last = max(last, excluded.last)",
        [max(since, rolled), until, *params])
    db.execute(
        "CREATE TEMP TABLE period_ip AS SELECT jail, ip, sum(n) AS n, min(first) AS first, "
        "max(last) AS last, count(*) AS days FROM period_day GROUP BY jail, ip")
    # first day ever per address: the roll-ups' table, plus addresses not rolled up yet
    db.execute("DROP TABLE IF EXISTS temp.first_seen")
    db.execute("CREATE TEMP TABLE first_seen (ip TEXT PRIMARY KEY, day INTEGER) WITHOUT ROWID")
    db.execute("INSERT INTO first_seen SELECT ip, first_day FROM addresses")
    db.execute("INSERT INTO first_seen SELECT ip, CAST(min(t) / 86400 AS INTEGER) FROM failures "
               "WHERE t >= ? GROUP BY ip ON CONFLICT (ip) DO UPDATE SET "
               "day = min(day, excluded.day)", (rolled,))
    # local month of every UTC day involved, computed exactly here rather than per row
    low = db.execute("SELECT min(day) FROM first_seen").fetchone()[0]
    db.execute("DROP TABLE IF EXISTS temp.day_month")
    db.execute("CREATE TEMP TABLE day_month (day INTEGER PRIMARY KEY, month TEXT NOT NULL)")
    if low is not None:
        db.executemany("INSERT INTO day_month VALUES (?, ?)", [
            (day, datetime.fromtimestamp(day * DAY + DAY / 2, tz).strftime("%Y-%m"))
            for day in range(int(low), int(until // DAY) + 1)])



class _Facts:
    """Per address: country, forward-confirmed name, DNSBL, first day ever (one scan each)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.country: dict[str, tuple[str, str]] = {}
        self.named: dict[str, int] = {}
        self.dnsbl: dict[str, str] = {}
        for ip, country, name, named, checked, zones in db.execute(
                "SELECT ip, country, country_name, named, dnsbl_checked, dnsbl_zones "
                "FROM enrichment"):
            if country:
                self.country[ip] = (country, name or "")
            self.named[ip] = named
            if checked:
                self.dnsbl[ip] = zones
        self.first_day: dict[str, int] = dict(db.execute("SELECT ip, day FROM first_seen"))
        self.day_month: dict[int, str] = dict(db.execute("SELECT day, month FROM day_month"))


def _attempts(db: sqlite3.Connection, since: float, until: float,
              jails: Sequence[str] | None) -> tuple[dict[str, Counter[int]],
                                                    dict[str, Counter[str]]]:
    rolled = rolled_until(db)
    where, params = _in(jails)
    hours: dict[str, Counter[int]] = defaultdict(Counter)
    users: dict[str, Counter[str]] = defaultdict(Counter)
    rows = db.execute(
        "SELECT hour, jail, user, sum(count) FROM roll_hour_user WHERE hour >= ? AND hour < ?"
        + where + " GROUP BY hour, jail, user "
        "UNION ALL SELECT CAST(t / 3600 AS INTEGER), jail, coalesce(user, ''), sum(count) "
        "FROM failures WHERE t >= ? AND t < ?" + where + " GROUP BY 1, 2, 3",
        [int(since // HOUR), int(min(until, rolled) // HOUR), *params, max(since, rolled),
         until, *params])
    for hour, jail, user, count in rows:
        hours[jail][hour] += count
        users[jail][user] += count
    return hours, users


def _ban_hours(db: sqlite3.Connection, jails: Sequence[str] | None, column: str, since: float,
               until: float) -> list[tuple[int, int]]:
    """Bans starting (``banned_at``) or ending (``ended``) per UTC hour, for one jail or all."""
    where, params = _in(jails)
    expr = "banned_at" if column == "banned_at" else "coalesce(ended_at, expires_at)"
    return [(int(h), int(n)) for h, n in db.execute(
        f"SELECT CAST({expr} / 3600 AS INTEGER), count(*) FROM ban_history "
        f"WHERE {expr} IS NOT NULL AND {expr} >= ? AND {expr} < ? AND banned_at < ?{where} "
        "GROUP BY 1", [since, until, until, *params])]


def _section(db: sqlite3.Connection, facts: _Facts, jail: str | None,
             selection: Sequence[str] | None, hours: Counter[int], users: Counter[str],
             clock: _Clock, privileged: Sequence[str],
             until_country: str | None, since: float, until: float) -> dict[str, Any]:
    per_month: Counter[str] = Counter()
    per_day: Counter[str] = Counter()
    per_hour = [0] * 24
    for hour, count in hours.items():
        month, day, hour_of_day = clock.hour_labels(hour)
        per_month[month] += count
        per_day[day] += count
        per_hour[hour_of_day] += count
    # one row per address: over all jails for the overall section
    single = db.execute("SELECT count(DISTINCT jail) FROM period_ip").fetchone()[0] <= 1
    source = ("period_ip" if jail is None and single else
              "(SELECT ip, sum(n) AS n, min(first) AS first, max(last) AS last, "
              "max(days) AS days FROM period_ip GROUP BY ip)"
              if jail is None else "(SELECT * FROM period_ip WHERE jail = ?)")
    args: list[Any] = [] if jail is None else [jail]
    addresses = db.execute(f"SELECT count(*) FROM {source}", args).fetchone()[0]
    countries: dict[str, list[Any]] = {}
    unknown = ("??", "unknown")
    for ip, n in db.execute(f"SELECT ip, n FROM {source}", args):
        code, name = facts.country.get(ip, unknown)
        entry = countries.get(code)
        if entry is None:
            countries[code] = [code, name, n, 1]
        else:
            entry[2] += n
            entry[3] += 1
    ranked = sorted(countries.values(), key=lambda e: (-e[2], e[0]))
    until_entry = None
    if until_country:
        for rank, entry in enumerate(ranked, start=1):
            if entry[0] == until_country.upper():
                until_entry = {"country": entry[0], "rank": rank, "attempts": entry[2]}
                break
    top_n = max(TOP, until_entry["rank"]) if until_entry else TOP
    month_sql = ("SELECT ip, day FROM period_day" if jail is None
                 else "SELECT ip, day FROM period_day WHERE jail = ?")
    day_month = facts.day_month
    pairs = {(ip, day_month[day]) for ip, day in db.execute(month_sql, args)}
    month_stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    named_of = facts.named
    first_of = facts.first_day
    for ip, month in pairs:
        entry = month_stats[month]  # active, new, looked up, named
        entry[0] += 1
        first = first_of.get(ip)
        if first is not None and day_month.get(first) == month:
            entry[1] += 1
        named = named_of.get(ip)
        if named is not None:
            entry[2] += 1
            entry[3] += named
    ordered = sorted(month_stats.items())
    rdns = [[m, round(v[3] / v[2], 4) if v[2] else None, v[3], v[2]] for m, v in ordered]
    new_returning = [[m, v[1], v[0] - v[1]] for m, v in ordered]
    longest = db.execute(f"SELECT ip, first, last, n FROM {source} ORDER BY last - first DESC, "
                         "ip LIMIT ?", [*args, TOP]).fetchall()
    persistent = db.execute(f"SELECT ip, n, days, first, last FROM {source} ORDER BY days DESC, "
                            "n DESC, ip LIMIT ?", [*args, TOP]).fetchall()
    selected = [jail] if jail is not None else selection
    started = _ban_hours(db, selected, "banned_at", since, until)
    bans_month: Counter[str] = Counter()
    for hour, count in started:
        bans_month[clock.hour_labels(hour)[0]] += count
    dnsbl = _dnsbl(db, facts, selected, since, until)
    priv = Counter({u: users[u] for u in privileged if users.get(u)})
    return {
        "attempts_total": sum(per_hour), "addresses_total": addresses,
        "bans_total": sum(bans_month.values()),
        "attempts_per_month": [[k, per_month[k]] for k in sorted(per_month)],
        "attempts_per_day": [[k, per_day[k]] for k in sorted(per_day)],
        "attempts_per_hour_of_day": per_hour,
        "privileged_attempts": [[u, n] for u, n in priv.most_common()],
        "privileged_total": sum(priv.values()),
        "bans_per_month": [[k, bans_month[k]] for k in sorted(bans_month)],
        "ban_table_size": _table_size(db, selected, clock, since, until),
        "top_countries": ranked[:top_n], "until_country": until_entry,
        "rdns_share_per_month": rdns,
        "top_accounts": [[u or "(none)", n] for u, n in users.most_common(TOP)],
        "dnsbl": dnsbl,
        "new_vs_returning_per_month": new_returning,
        "longest_running": [{"ip": ip, "first": first, "last": last,
                             "days": round((last - first) / DAY, 2), "attempts": n}
                            for ip, first, last, n in longest],
        "most_persistent": [{"ip": ip, "attempts": n, "active_days": days, "first": first,
                             "last": last} for ip, n, days, first, last in persistent],
    }


def _dnsbl(db: sqlite3.Connection, facts: _Facts, jails: Sequence[str] | None, since: float,
           until: float) -> dict[str, Any]:
    """DNSBL listings of the addresses banned in the period (as far as they were checked)."""
    where, params = _in(jails)
    banned = {ip for (ip,) in db.execute(
        f"SELECT ip FROM ban_history WHERE banned_at >= ? AND banned_at < ?{where}",
        [since, until, *params])}
    checked = listed = 0
    zones: Counter[str] = Counter()
    for ip in banned:
        found = facts.dnsbl.get(ip)
        if found is None:
            continue
        checked += 1
        if found:
            listed += 1
            zones.update(found.split())
    return {"banned": len(banned), "checked": checked, "listed": listed,
            "by_zone": [[z, n] for z, n in zones.most_common()]}


def _table_size(db: sqlite3.Connection, jails: Sequence[str] | None, clock: _Clock,
                since: float,
                until: float) -> list[list[Any]]:
    """Active bans at the end of each local day of the period, from hourly starts and ends."""
    where, params = _in(jails)
    first = db.execute(f"SELECT min(banned_at) FROM ban_history WHERE banned_at < ?{where}",
                       [until, *params]).fetchone()[0]
    if first is None:
        return []
    before = db.execute(
        "SELECT count(*) FROM ban_history WHERE banned_at < ? AND (coalesce(ended_at, "
        f"expires_at) IS NULL OR coalesce(ended_at, expires_at) >= ?){where}",
        [since, since, *params]).fetchone()[0] if first < since else 0
    start = max(since, first)
    delta: Counter[str] = Counter()
    for hour, count in _ban_hours(db, jails, "banned_at", start, until):
        delta[clock.hour_labels(hour)[1]] += count
    for hour, count in _ban_hours(db, jails, "ended", start, until):
        delta[clock.hour_labels(hour)[1]] -= count
    tz = clock.tz
    day = datetime.fromtimestamp(start, tz).date()
    last = datetime.fromtimestamp(until, tz).date()
    out: list[list[Any]] = []
    active = before
    while day <= last:
        key = day.isoformat()
        active += delta[key]
        out.append([key, active])
        day += timedelta(days=1)
    return out


def compute_report(db: sqlite3.Connection, *, since: float, until: float, tz: tzinfo,
                   jails: Sequence[str] | None = None, privileged: Sequence[str] = ("root",),
                   until_country: str | None = None, host: str = "",
                   now: float | None = None) -> dict[str, Any]:
    end = datetime.fromtimestamp(until, tz)
    offset_delta = end.utcoffset() or timedelta(0)
    clock = _Clock(tz, offset_delta.total_seconds())
    _prepare(db, since, until, jails, tz)
    hours, users = _attempts(db, since, until, jails)
    names = sorted(set(hours) | {row[0] for row in db.execute(
        "SELECT DISTINCT jail FROM period_ip")})
    overall_hours: Counter[int] = Counter()
    overall_users: Counter[str] = Counter()
    per_service: dict[str, Counter[str]] = defaultdict(Counter)
    for name in names:
        overall_hours.update(hours[name])
        overall_users.update(users[name])
        per_service[service_of(name)].update(users[name])
    shared = (clock, privileged, until_country, since, until)
    facts = _Facts(db)
    overall = _section(db, facts, None, jails, overall_hours, overall_users, *shared)
    ban_jails = {row[0] for row in db.execute("SELECT DISTINCT jail FROM ban_history")}
    per_jail: dict[str, Any] = {}
    for name in names:
        # one jail and nobody else's bans: its section IS the overall one, computed once
        same = len(names) == 1 and ban_jails <= {name}
        per_jail[name] = overall if same else _section(db, facts, name, None, hours[name],
                                                       users[name], *shared)
    offset = end.strftime("%z")
    where, params = _in(jails)
    totals: Counter[str] = Counter()
    latest = []
    for alert_id, t, kind, subject, reasons in db.execute(
            "SELECT id, t, kind, subject, reasons FROM alerts WHERE t >= ? AND t < ?" + where
            + " ORDER BY id", [since, until, *params]):
        totals[kind] += 1
        latest.append({"id": alert_id, "time": t, "kind": kind, "subject": subject,
                       "reason": (json.loads(reasons) or [""])[0]})
    return {
        "alerts": {"totals": dict(totals), "latest": latest[-20:]},
        "generated_at": now if now is not None else until,
        "timezone": f"{getattr(tz, 'key', None) or end.tzname()} "
                    f"(UTC{offset[:3]}:{offset[3:]})",
        "since": since, "until": until, "host": host, "jails": names,
        "overall": overall, "per_jail": per_jail,
        "top_accounts_by_service": {svc: [[u or "(none)", n] for u, n in c.most_common(TOP)]
                                    for svc, c in sorted(per_service.items())},
    }
