"""The numbers of ``tailban report``, computed from the store (read-only).

Two ways to the same numbers:

* **from the report tables** (what reports use): the roll-up keeps per jail and address
  sums (``roll_ip``), per month address counts (``roll_month``), accounts per day, bans per
  hour and per address (see ``stores/history.py``). An address whose failures all lie
  inside the period is read from ``roll_ip`` as it is; only the addresses that straddle an
  end of the period, or have failures after the last roll-up, are recomputed from their
  daily roll-ups and raw rows. Months wholly inside the period come from ``roll_month``; a
  month cut by the period is counted from its daily roll-ups. Bans that ended before the
  last roll-up come from hourly counts, the others from ``ban_history``. So a year of 10M
  failures reads a few hundred thousand narrow rows in clustered order, and joins nothing.
* **by scanning** (``method="scan"``: the reference the tests hold the first way to): the
  period's failures are gathered once per address into temporary tables (daily roll-ups for
  completed hours plus the raw rows after ``rolled_until``), and joined with the enrichment
  cache and the ban history.

Both count the same way. Ranked lists break ties by name (accounts, DNSBL zones) or by
address; a country is named as the facts of its smallest address name it. Active bans at
the end of a day are those started by then less those ended by then (an end never before
its start), counted by UTC hour from the first ban.

Time buckets are the server's time zone: attempts per month, day and hour of day come from
UTC hours converted exactly (exact for zones whose offset is whole hours); address-level
figures (new/returning, rDNS share per month) use UTC days shifted by the zone's offset
at the end of the period.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Protocol

from tailban.stores.history import BANS_ID_KEY, DAY, HOUR, month_of_day, rolled_until

TOP = 20
SERVICES = {"sshd": "ssh", "postfix": "postfix", "dovecot": "dovecot", "selinux-ssh": "ssh",
            "dropbear": "ssh", "courier-auth": "courier", "vsftpd": "ftp", "proftpd": "ftp",
            "pam-generic": "pam"}
UNKNOWN = ("??", "unknown")


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


def bucket(t: float) -> int:
    """The UTC hour of ``t`` exactly as SQLite's ``CAST(t / 3600 AS INTEGER)`` gives it."""
    return int(t / HOUR)


class _Clock:
    """Cached local labels for UTC hours and days (a year is 8,760 hours)."""

    def __init__(self, tz: tzinfo, offset: float) -> None:
        self.tz = tz
        self.offset = offset
        self.hour_labels = lru_cache(maxsize=None)(self._hour)
        self.day_month = lru_cache(maxsize=None)(self._day)

    def _hour(self, hour: int) -> tuple[str, str, int]:
        local = datetime.fromtimestamp(hour * HOUR, self.tz)
        return local.strftime("%Y-%m"), local.strftime("%Y-%m-%d"), local.hour

    def _day(self, day: int) -> str:
        """The local month of a UTC day (the month of its middle)."""
        return datetime.fromtimestamp(day * DAY + DAY / 2, self.tz).strftime("%Y-%m")

    def month(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self.tz).strftime("%Y-%m")

    def first_hour_of(self, day: date) -> int:
        """The first UTC hour whose local date is ``day`` or later."""
        key = day.isoformat()
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()
        hour = int(midnight // HOUR) - 2
        while self.hour_labels(hour)[1] < key:
            hour += 1
        while self.hour_labels(hour - 1)[1] >= key:
            hour -= 1
        return hour


def _in(jails: Sequence[str] | None, column: str = "jail") -> tuple[str, list[Any]]:
    if not jails:
        return "", []
    return f" AND {column} IN ({','.join('?' * len(jails))})", list(jails)


def _table_exists(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (name,)).fetchone() is not None


@dataclass
class _Addresses:
    """The address figures of one section, whichever way they were computed."""

    total: int = 0
    countries: list[list[Any]] = field(default_factory=list)  # [code, name, attempts, addr]
    months: dict[str, list[int]] = field(default_factory=dict)  # active, new, looked, named
    longest: list[tuple[str, float, float, int]] = field(default_factory=list)
    persistent: list[tuple[str, int, int, float, float]] = field(default_factory=list)


class _AddressSource(Protocol):
    def jails(self) -> set[str]: ...

    def addresses(self, jail: str | None) -> _Addresses: ...


class _BanSource(Protocol):
    def jails(self) -> set[str]: ...

    def starts(self, jails: Sequence[str] | None, t0: float,
               t1: float) -> Counter[int]: ...

    def first(self, jails: Sequence[str] | None, until: float) -> float | None: ...

    def cumulative(self, jails: Sequence[str] | None, h1: int, until: float) -> int: ...

    def hourly(self, jails: Sequence[str] | None, h1: int,
               until: float) -> tuple[Counter[int], Counter[int]]: ...

    def dnsbl(self, jails: Sequence[str] | None, since: float,
              until: float) -> dict[str, Any]: ...


def _ranked(counter: Counter[str], limit: int | None = None) -> list[tuple[str, int]]:
    """Most first; ties by name (deterministic, whichever way the numbers were summed)."""
    ordered = sorted(((k, n) for k, n in counter.items() if n), key=lambda e: (-e[1], e[0]))
    return ordered if limit is None else ordered[:limit]


def _top_longest(rows: Iterable[tuple[str, float, float, int]]
                 ) -> list[tuple[str, float, float, int]]:
    return sorted(rows, key=lambda r: (-(r[2] - r[1]), r[0]))[:TOP]


def _top_persistent(rows: Iterable[tuple[str, int, int, float, float]]
                    ) -> list[tuple[str, int, int, float, float]]:
    return sorted(rows, key=lambda r: (-r[2], -r[1], r[0]))[:TOP]


def _merge_countries(db: sqlite3.Connection, parts: Iterable[tuple[str, str, int, int]]
                     ) -> list[list[Any]]:
    """(code, smallest address, attempts, addresses) per part and code: one entry per code,
    named as its smallest address's facts name it (as the scan, reading addresses in order)."""
    merged: dict[str, list[Any]] = {}
    for code, low, n, count in parts:
        key = code or UNKNOWN[0]
        entry = merged.get(key)
        if entry is None:
            merged[key] = [key, UNKNOWN[1], n, count, low]
            continue
        entry[2] += n
        entry[3] += count
        entry[4] = min(entry[4], low)
    for entry in merged.values():
        if entry[0] != UNKNOWN[0]:
            row = db.execute("SELECT country_name FROM enrichment WHERE ip = ?",
                             (entry[4],)).fetchone()
            entry[1] = (row[0] if row else None) or ""
    return [entry[:4] for entry in merged.values()]


# -- the scan ------------------------------------------------------------------------------


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


class _Scan:
    """Address figures from temporary tables of the period (see :func:`_prepare`)."""

    def __init__(self, db: sqlite3.Connection, since: float, until: float,
                 jails: Sequence[str] | None, tz: tzinfo) -> None:
        self.db = db
        _prepare(db, since, until, jails, tz)
        self.facts = _Facts(db)

    def jails(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT DISTINCT jail FROM period_ip")}

    def addresses(self, jail: str | None) -> _Addresses:
        db, facts = self.db, self.facts
        # one row per address: over all jails for the overall section
        single = db.execute("SELECT count(DISTINCT jail) FROM period_ip").fetchone()[0] <= 1
        source = ("period_ip" if jail is None and single else
                  "(SELECT ip, sum(n) AS n, min(first) AS first, max(last) AS last, "
                  "max(days) AS days FROM period_ip GROUP BY ip)"
                  if jail is None else "(SELECT * FROM period_ip WHERE jail = ?)")
        args: list[Any] = [] if jail is None else [jail]
        out = _Addresses()
        out.total = db.execute(f"SELECT count(*) FROM {source}", args).fetchone()[0]
        countries: dict[str, list[Any]] = {}
        for ip, n in db.execute(f"SELECT ip, n FROM {source}", args):
            code, name = facts.country.get(ip, UNKNOWN)
            entry = countries.get(code)
            if entry is None:
                countries[code] = [code, name, n, 1]
            else:
                entry[2] += n
                entry[3] += 1
        out.countries = list(countries.values())
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
        out.months = dict(month_stats)
        out.longest = db.execute(f"SELECT ip, first, last, n FROM {source} ORDER BY "
                                 "last - first DESC, ip LIMIT ?", [*args, TOP]).fetchall()
        out.persistent = db.execute(f"SELECT ip, n, days, first, last FROM {source} ORDER BY "
                                    "days DESC, n DESC, ip LIMIT ?", [*args, TOP]).fetchall()
        return out


def _ended(prefix: str = "") -> str:
    """SQL: when a ban stopped counting as active (its unban, or else its planned expiry,
    never before its start); NULL for a ban that runs for ever."""
    return (f"max(coalesce({prefix}ended_at, {prefix}expires_at), {prefix}banned_at)")


class _ScanBans:
    """Ban figures straight from ``ban_history``."""

    def __init__(self, db: sqlite3.Connection, facts: dict[str, str] | None = None) -> None:
        self.db = db
        self._facts = facts

    def jails(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT DISTINCT jail FROM ban_history")}

    def starts(self, jails: Sequence[str] | None, t0: float, t1: float) -> Counter[int]:
        where, params = _in(jails)
        return Counter({int(h): int(n) for h, n in self.db.execute(
            "SELECT CAST(banned_at / 3600 AS INTEGER), count(*) FROM ban_history "
            f"WHERE banned_at >= ? AND banned_at < ?{where} GROUP BY 1", [t0, t1, *params])})

    def first(self, jails: Sequence[str] | None, until: float) -> float | None:
        where, params = _in(jails)
        value = self.db.execute(f"SELECT min(banned_at) FROM ban_history WHERE banned_at < ?"
                                f"{where}", [until, *params]).fetchone()[0]
        return None if value is None else float(value)

    def cumulative(self, jails: Sequence[str] | None, h1: int, until: float) -> int:
        where, params = _in(jails)
        end = _ended()
        started = self.db.execute(
            "SELECT count(*) FROM ban_history WHERE banned_at < ? AND "
            f"CAST(banned_at / 3600 AS INTEGER) < ?{where}", [until, h1, *params]).fetchone()[0]
        ended = self.db.execute(
            f"SELECT count(*) FROM ban_history WHERE {end} < ? AND "
            f"CAST({end} / 3600 AS INTEGER) < ?{where}", [until, h1, *params]).fetchone()[0]
        return int(started) - int(ended)

    def hourly(self, jails: Sequence[str] | None, h1: int,
               until: float) -> tuple[Counter[int], Counter[int]]:
        where, params = _in(jails)
        end = _ended()
        starts = Counter({int(h): int(n) for h, n in self.db.execute(
            "SELECT CAST(banned_at / 3600 AS INTEGER) AS h, count(*) FROM ban_history WHERE "
            f"banned_at < ?{where} AND h >= ? GROUP BY 1", [until, *params, h1])})
        ends = Counter({int(h): int(n) for h, n in self.db.execute(
            f"SELECT CAST({end} / 3600 AS INTEGER) AS h, count(*) FROM ban_history WHERE "
            f"{end} < ?{where} AND h >= ? GROUP BY 1", [until, *params, h1])})
        return starts, ends

    def dnsbl(self, jails: Sequence[str] | None, since: float, until: float) -> dict[str, Any]:
        """DNSBL listings of the addresses banned in the period (as far as they were
        checked)."""
        if self._facts is None:
            self._facts = {ip: zones for ip, zones in self.db.execute(
                "SELECT ip, dnsbl_zones FROM enrichment WHERE dnsbl_checked")}
        where, params = _in(jails)
        banned = {ip for (ip,) in self.db.execute(
            f"SELECT ip FROM ban_history WHERE banned_at >= ? AND banned_at < ?{where}",
            [since, until, *params])}
        counts: Counter[tuple[bool, str]] = Counter()
        for ip in banned:
            found = self._facts.get(ip)
            counts[(found is not None, found or "")] += 1
        return _dnsbl_figures(len(banned), counts)


def _dnsbl_figures(banned: int, counts: Counter[tuple[bool, str]]) -> dict[str, Any]:
    """``counts``: addresses per (checked, zones listing them)."""
    zones: Counter[str] = Counter()
    checked = listed = 0
    for (was_checked, found), n in counts.items():
        if not was_checked:
            continue
        checked += n
        if found:
            listed += n
            for zone in found.split():
                zones[zone] += n
    return {"banned": banned, "checked": checked, "listed": listed,
            "by_zone": [[z, n] for z, n in _ranked(zones)]}


# -- the report tables ---------------------------------------------------------------------


class _Rollups:
    """Address figures from ``roll_ip`` / ``roll_month`` plus the addresses that need a
    closer look (see the module docstring)."""

    def __init__(self, db: sqlite3.Connection, since: float, until: float,
                 jails: Sequence[str] | None, clock: _Clock) -> None:
        self.db = db
        self.since, self.until, self.clock = since, until, clock
        self.selection = list(jails) if jails else None
        self.rolled = rolled = rolled_until(db)
        self.cut = cut = min(until, rolled)
        self.raw_from = max(since, rolled)
        where, params = _in(jails)
        for table in ("dirty", "dirty_day", "dirty_ip"):
            db.execute(f"DROP TABLE IF EXISTS temp.{table}")
        db.execute("CREATE TEMP TABLE dirty (ip TEXT PRIMARY KEY) WITHOUT ROWID")
        # straddling an end of the period (in a jail, or over all jails: the '*' row the
        # overall section reads), or with raw failures after the last roll-up
        self.every_jail = self.selection is None or self._every_jail() <= set(self.selection)
        rows_of, rows_args = _in(None if jails is None else
                                 [*jails, "*"] if self.every_jail else jails)
        db.execute("INSERT OR IGNORE INTO dirty SELECT ip FROM roll_ip WHERE last >= ? AND "
                   f"first < ? AND (first < ? OR last >= ?){rows_of}",
                   [since, cut, since, cut, *rows_args])
        if self.raw_from < until:
            db.execute("INSERT OR IGNORE INTO dirty SELECT DISTINCT ip FROM failures WHERE "
                       f"t >= ? AND t < ?{where}", [self.raw_from, until, *params])
        self.any_dirty = db.execute("SELECT 1 FROM dirty LIMIT 1").fetchone() is not None
        db.execute("CREATE TEMP TABLE dirty_day (jail TEXT, ip TEXT, day INTEGER, n INTEGER, "
                   "first REAL, last REAL, PRIMARY KEY (jail, ip, day)) WITHOUT ROWID")
        if self.any_dirty:
            db.execute(
                "INSERT INTO dirty_day SELECT jail, ip, day, count, first, last FROM "
                "roll_day_ip WHERE ip IN (SELECT ip FROM temp.dirty) AND day >= ? AND "
                f"day <= ? AND last >= ? AND first < ?{where}",
                [int(since // DAY), int(cut // DAY), since, cut, *params])
            db.execute(
                "INSERT INTO dirty_day SELECT jail, ip, CAST(t / 86400 AS INTEGER), "
                "sum(count), min(t), max(t) FROM failures WHERE t >= ? AND t < ?" + where
                + " GROUP BY jail, ip, CAST(t / 86400 AS INTEGER) "
                "ON CONFLICT (jail, ip, day) DO UPDATE SET n = n + excluded.n, "
                "first = min(first, excluded.first), last = max(last, excluded.last)",
                [self.raw_from, until, *params])
        db.execute(
            "CREATE TEMP TABLE dirty_ip AS SELECT d.jail AS jail, d.ip AS ip, sum(d.n) AS n, "
            "min(d.first) AS first, max(d.last) AS last, count(*) AS days, "
            "coalesce(e.country, '') AS country, e.named AS named FROM dirty_day d "
            "LEFT JOIN enrichment e ON e.ip = d.ip GROUP BY d.jail, d.ip")
        # an address inside the period, read from roll_ip as it is (unless recomputed)
        self.inside = "first >= ? AND last < ?"
        self.clean = self.inside + (
            " AND ip NOT IN (SELECT ip FROM temp.dirty)" if self.any_dirty else "")
        self.clean_args = [since, cut]
        self._dirty_ips: set[str] | None = None
        self._jails: set[str] | None = None

    def jails(self) -> set[str]:
        if self._jails is not None:
            return self._jails
        db = self.db
        found = {row[0] for row in db.execute("SELECT DISTINCT jail FROM dirty_ip")}
        for (jail,) in db.execute("SELECT DISTINCT jail FROM roll_month WHERE jail != '*'"
                                  ).fetchall():
            if jail in found or (self.selection is not None and jail not in self.selection):
                continue
            if db.execute(f"SELECT 1 FROM roll_ip WHERE jail = ? AND {self.clean} LIMIT 1",
                          [jail, *self.clean_args]).fetchone():
                found.add(jail)
        self._jails = found
        return found

    def _parts(self, jail: str | None) -> list[tuple[str, list[Any], bool]]:
        """FROM clauses (with their parameters) of disjoint parts whose rows are
        (ip, n, first, last, days, country, named), one row per address. A part marked
        True is a jail's range of roll_ip still holding the addresses recomputed in
        temp.dirty_ip (left out afterwards: cheaper than a test per row)."""
        cols = "ip, {n} AS n, {first} AS first, {last} AS last, {days} AS days, " \
               "country, named"
        plain = ("roll_ip.ip AS ip, roll_ip.count AS n, roll_ip.first AS first, roll_ip.last "
                 "AS last, roll_ip.days AS days, roll_ip.country AS country, roll_ip.named AS "
                 "named {rows}")
        if jail is not None:
            return [(f"(SELECT {plain} WHERE jail = ? AND {self.inside})",
                     [jail, *self.clean_args], True),
                    ("(SELECT ip, n, first, last, days, country, named FROM temp.dirty_ip "
                     "WHERE jail = ?)", [jail], False)]
        jails = sorted(self.jails())
        if len(jails) <= 1:
            return self._parts(jails[0]) if jails else []
        where, params = _in(self.selection)
        grouped = cols.format(n="sum(count)", first="min(first)", last="max(last)",
                              days="max(days)")
        # an address in one jail is that jail's row; one in several, the row of all jails
        # ('*'), or (for some of the jails only) the sum of its rows in them
        parts: list[tuple[str, list[Any], bool]] = [
            (f"(SELECT {plain} WHERE jail = ? AND shared = 0 AND {self.inside})",
             [name, *self.clean_args], True) for name in jails]
        if self.every_jail:
            parts.append((f"(SELECT {plain} WHERE jail = '*' AND {self.inside})",
                          list(self.clean_args), True))
        else:
            parts.append((f"(SELECT {grouped} FROM roll_ip WHERE shared = 1 AND "
                          f"{self.clean}{where} GROUP BY ip)", [*self.clean_args, *params],
                          False))
        dirty = cols.format(n="sum(n)", first="min(first)", last="max(last)",
                            days="max(days)")
        parts.append((f"(SELECT {dirty} FROM temp.dirty_ip GROUP BY ip)", [], False))
        return parts

    def _every_jail(self) -> set[str]:
        return {row[0] for row in self.db.execute(
            "SELECT DISTINCT jail FROM roll_month WHERE jail != '*'")}

    def addresses(self, jail: str | None) -> _Addresses:
        db = self.db
        out = _Addresses()
        rows: list[tuple[str, str, int, int]] = []
        longest: list[tuple[str, float, float, int]] = []
        persistent: list[tuple[str, int, int, float, float]] = []
        for source, args, mixed in self._parts(jail):
            source, only_dirty = (source.format(rows="FROM roll_ip"), source.format(
                rows="FROM temp.dirty d CROSS JOIN roll_ip ON roll_ip.ip = d.ip"))
            if not mixed or not self.any_dirty:
                rows += db.execute(f"SELECT country, min(ip), sum(n), count(*) FROM {source} "
                                   "GROUP BY country", args).fetchall()
                longest += self._top(source, args, "ip, first, last, n",
                                     "last - first DESC, ip", 0)
                persistent += self._top(source, args, "ip, n, days, first, last",
                                        "days DESC, n DESC, ip", 0)
                continue
            # all rows, less those of the recomputed addresses (found by address)
            sums = {code: [n, count] for code, n, count in db.execute(
                f"SELECT country, sum(n), count(*) FROM {source} GROUP BY country", args)}
            dropped = 0
            for code, n, count in db.execute(
                    f"SELECT country, sum(n), count(*) FROM {only_dirty} GROUP BY country",
                    args):
                sums[code][0] -= n
                sums[code][1] -= count
                dropped += count
            for code, (n, count) in sums.items():
                if count:
                    low = db.execute(f"SELECT min(ip) FROM {source} WHERE country = ? AND "
                                     "ip NOT IN (SELECT ip FROM temp.dirty)",
                                     [*args, code]).fetchone()[0]
                    rows.append((code, low, n, count))
            longest += self._top(source, args, "ip, first, last, n",
                                 "last - first DESC, ip", dropped)
            persistent += self._top(source, args, "ip, n, days, first, last",
                                    "days DESC, n DESC, ip", dropped)
        out.countries = _merge_countries(db, rows)
        out.total = sum(entry[3] for entry in out.countries)
        out.longest = _top_longest(longest)
        out.persistent = _top_persistent(persistent)
        out.months = self._months(jail)
        return out

    def _top(self, source: str, args: list[Any], columns: str, order: str,
             dropped: int) -> list[Any]:
        """The first TOP rows of ``source`` by ``order``, without the recomputed addresses:
        ``dropped`` of them may be in ``source``, so TOP + ``dropped`` rows are read and
        those taken out."""
        rows = self.db.execute(f"SELECT {columns} FROM {source} ORDER BY {order} LIMIT ?",
                               [*args, TOP + dropped]).fetchall()
        if dropped:
            rows = [row for row in rows if row[0] not in self.dirty_ips()][:TOP]
        return rows

    def dirty_ips(self) -> set[str]:
        if self._dirty_ips is None:
            self._dirty_ips = {row[0] for row in self.db.execute("SELECT ip FROM temp.dirty")}
        return self._dirty_ips

    # -- months --

    def _months(self, jail: str | None) -> dict[str, list[int]]:
        clock = self.clock
        first_day, last_day = int(self.since // DAY), int(self.until // DAY)
        spans: dict[str, list[int]] = {}
        for day in range(first_day, last_day + 1):
            spans.setdefault(clock.day_month(day), [day, day])[1] = day
        if jail is not None:
            key: str | None = jail
            jails: list[str] | None = [jail]
        else:
            jails = self.selection
            key = ("*" if jails is None or self._every_jail() <= set(jails) else
                   jails[0] if len(jails) == 1 else None)
        out: dict[str, list[int]] = {}
        for month, (low, high) in spans.items():
            # the month's whole extent in UTC days, beyond the period
            while clock.day_month(low - 1) == month:
                low -= 1
            while clock.day_month(high + 1) == month:
                high += 1
            stats = self._month(key, jails, low, high)
            if stats[0]:
                out[month] = stats
        return out

    def _month(self, key: str | None, jails: list[str] | None, low: int,
               high: int) -> list[int]:
        """[active, new, looked up, named] of the local month of UTC days low..high."""
        utc = month_of_day(low)
        whole = (month_of_day(low - 1) != utc and month_of_day(high + 1) != utc
                 and month_of_day(high) == utc)
        inside = (low * DAY >= self.since and ((high + 1) * DAY <= self.cut
                                               or self.cut == self.rolled))
        where, params = _in(jails)
        if key is not None and whole and inside:
            row = self.db.execute("SELECT active, new, looked, named FROM roll_month WHERE "
                                  "jail = ? AND month = ?", (key, utc)).fetchone()
            stats = list(row) if row else [0, 0, 0, 0]
            if self.raw_from < self.until and self.raw_from < (high + 1) * DAY:
                # raw failures after the last roll-up: addresses not yet counted this month
                same = "" if key == "*" else " AND r.jail = f.jail"
                extra = self._stats(
                    "SELECT DISTINCT f.ip FROM failures f WHERE f.t >= ? AND f.t < ? AND "
                    "f.t >= ? AND f.t < ? AND CAST(f.t / 86400 AS INTEGER) BETWEEN ? AND ?"
                    f"{_in(jails, 'f.jail')[0]} AND NOT EXISTS (SELECT 1 FROM roll_day_ip r "
                    f"WHERE r.ip = f.ip AND r.day BETWEEN ? AND ?{same})",
                    [self.raw_from, self.until, low * DAY - 1, (high + 1) * DAY + 1, low, high,
                     *params, low, high], low, high)
                stats = [a + b for a, b in zip(stats, extra, strict=True)]
            return stats
        # cut by the period (or not a UTC month in this zone): from the daily roll-ups
        return self._stats(
            "SELECT ip FROM roll_day_ip WHERE day >= ? AND day <= ? AND last >= ? AND "
            f"first < ?{where} UNION SELECT ip FROM failures WHERE t >= ? AND t < ? AND "
            f"t >= ? AND t < ? AND CAST(t / 86400 AS INTEGER) BETWEEN ? AND ?{where}",
            [max(low, int(self.since // DAY)), min(high, int(self.cut // DAY)), self.since,
             self.cut, *params, self.raw_from, self.until, low * DAY - 1, (high + 1) * DAY + 1,
             low, high, *params], low, high)

    def _stats(self, ips: str, args: list[Any], low: int, high: int) -> list[int]:
        """[active, new, looked up, named] of the addresses ``ips`` selects."""
        row = self.db.execute(
            # first day ever: the roll-ups' (always before the raw rows'), or the raw rows'
            "SELECT count(*), coalesce(sum(fd BETWEEN ? AND ?), 0), count(named), "
            "coalesce(sum(named), 0) FROM (SELECT q.ip, coalesce((SELECT first_day FROM "
            "addresses a WHERE a.ip = q.ip), (SELECT CAST(min(t) / 86400 AS INTEGER) FROM "
            "failures f WHERE f.ip = q.ip AND f.t >= ?)) AS fd, (SELECT named FROM enrichment "
            f"e WHERE e.ip = q.ip) AS named FROM ({ips}) q)", [low, high, self.rolled, *args]
        ).fetchone()
        return [int(v) for v in row]


class _RollupBans:
    """Ban figures from ``roll_ban_hour`` / ``roll_ban_ip``, plus the bans those do not
    hold yet (newer than the last roll-up, or not ended then), read from ``ban_history``."""

    AGGREGATED = "id <= ? AND id NOT IN (SELECT id FROM roll_ban_open)"

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        row = db.execute("SELECT value FROM meta WHERE key = ?", (BANS_ID_KEY,)).fetchone()
        self.rolled_id = int(row[0]) if row else 0
        self.hours: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for jail, hour, started, ended in db.execute(
                "SELECT jail, hour, started, ended FROM roll_ban_hour WHERE started != 0 OR "
                "ended != 0 ORDER BY jail, hour"):
            self.hours[jail].append((int(hour), int(started), int(ended)))
        # (jail, banned_at, end) of the bans not in roll_ban_hour
        self.direct: list[tuple[str, float, float | None]] = db.execute(
            "SELECT jail, banned_at, coalesce(ended_at, expires_at) FROM ban_history "
            "WHERE id > ? UNION ALL SELECT b.jail, b.banned_at, coalesce(b.ended_at, "
            "b.expires_at) FROM roll_ban_open o JOIN ban_history b ON b.id = o.id",
            (self.rolled_id,)).fetchall()

    def _hours(self, jails: Sequence[str] | None) -> Iterable[tuple[int, int, int]]:
        for jail, rows in self.hours.items():
            if jails is None or jail in jails:
                yield from rows

    def _direct(self, jails: Sequence[str] | None
                ) -> Iterable[tuple[float, float | None]]:
        for jail, banned_at, end in self.direct:
            if jails is None or jail in jails:
                yield banned_at, None if end is None else max(end, banned_at)

    def jails(self) -> set[str]:
        found = {jail for jail, rows in self.hours.items() if any(r[1] for r in rows)}
        return found | {row[0] for row in self.direct}

    def _count(self, jails: Sequence[str] | None, hour: int, t0: float, t1: float,
               aggregated_only: bool = False) -> int:
        """Bans starting in UTC hour ``hour`` at t0 <= banned_at < t1 (index range)."""
        where, params = _in(jails)
        extra = f" AND {self.AGGREGATED}" if aggregated_only else ""
        value = self.db.execute(
            "SELECT count(*) FROM ban_history WHERE banned_at >= ? AND banned_at < ? AND "
            f"CAST(banned_at / 3600 AS INTEGER) = ?{where}{extra}",
            [max(t0, hour * HOUR - 1), min(t1, (hour + 1) * HOUR + 1), hour, *params,
             *([self.rolled_id] if aggregated_only else [])]).fetchone()[0]
        return int(value)

    def starts(self, jails: Sequence[str] | None, t0: float, t1: float) -> Counter[int]:
        out: Counter[int] = Counter()
        if t1 <= t0:
            return out
        first, last = bucket(t0), bucket(t1)
        for hour, started, _ in self._hours(jails):
            if first < hour < last and started:
                out[hour] += started
        for banned_at, _ in self._direct(jails):
            if t0 <= banned_at < t1 and first < bucket(banned_at) < last:
                out[bucket(banned_at)] += 1
        for hour in {first, last}:
            n = self._count(jails, hour, t0, t1)
            if n:
                out[hour] += n
        return out

    def first(self, jails: Sequence[str] | None, until: float) -> float | None:
        found = [banned_at for banned_at, _ in self._direct(jails) if banned_at < until]
        hours = [hour for hour, started, _ in self._hours(jails) if started]
        if hours:
            where, params = _in(jails)
            hour = min(hours)
            value = self.db.execute(
                "SELECT min(banned_at) FROM ban_history WHERE banned_at >= ? AND "
                f"banned_at < ? AND CAST(banned_at / 3600 AS INTEGER) = ?{where}",
                [hour * HOUR - 1, min(until, (hour + 1) * HOUR + 1), hour, *params]
            ).fetchone()[0]
            if value is not None:
                found.append(float(value))
        return min(found) if found else None

    def _partial_ends(self, jails: Sequence[str] | None, hour: int, until: float) -> int:
        """Counted bans ending in ``hour`` before ``until`` (a scan: rare, see caller)."""
        if not any(h == hour and ended for h, _, ended in self._hours(jails)):
            return 0
        where, params = _in(jails)
        end = _ended()
        return int(self.db.execute(
            f"SELECT count(*) FROM ban_history WHERE {end} < ? AND "
            f"CAST({end} / 3600 AS INTEGER) = ?{where} AND {self.AGGREGATED}",
            [until, hour, *params, self.rolled_id]).fetchone()[0])

    def cumulative(self, jails: Sequence[str] | None, h1: int, until: float) -> int:
        last = bucket(until)
        total = 0
        for hour, started, ended in self._hours(jails):
            if hour < h1 and hour < last:
                total += started - ended
        for banned_at, end in self._direct(jails):
            if banned_at < until and bucket(banned_at) < h1:
                total += 1
            if end is not None and end < until and bucket(end) < h1:
                total -= 1
        if last < h1:
            total += self._count(jails, last, -math.inf, until, aggregated_only=True)
            total -= self._partial_ends(jails, last, until)
        return total

    def hourly(self, jails: Sequence[str] | None, h1: int,
               until: float) -> tuple[Counter[int], Counter[int]]:
        last = bucket(until)
        starts: Counter[int] = Counter()
        ends: Counter[int] = Counter()
        for hour, started, ended in self._hours(jails):
            if h1 <= hour < last:
                starts[hour] += started
                ends[hour] += ended
        for banned_at, end in self._direct(jails):
            if banned_at < until and bucket(banned_at) >= h1:
                starts[bucket(banned_at)] += 1
            if end is not None and end < until and bucket(end) >= h1:
                ends[bucket(end)] += 1
        if last >= h1:
            starts[last] += self._count(jails, last, -math.inf, until, aggregated_only=True)
            ends[last] += self._partial_ends(jails, last, until)
        return +starts, +ends

    def dnsbl(self, jails: Sequence[str] | None, since: float, until: float) -> dict[str, Any]:
        """roll_ban_ip's addresses with a ban in the period, but those with bans newer than
        the last roll-up (``ban_new``), whose bans are read from the history."""
        db = self.db
        where, params = _in(jails)
        db.execute("DROP TABLE IF EXISTS temp.ban_new")
        db.execute("CREATE TEMP TABLE ban_new (ip TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute(f"INSERT OR IGNORE INTO ban_new SELECT ip FROM ban_history WHERE id > ?"
                   f"{where}", [self.rolled_id, *params])
        fresh = db.execute("SELECT 1 FROM ban_new LIMIT 1").fetchone() is not None
        # banned in the period: first or last ban in it, or (rare) one between them
        cond = ("((first_ban >= ? AND first_ban < ?) OR (last_ban >= ? AND last_ban < ?) OR "
                "(first_ban < ? AND last_ban >= ? AND EXISTS (SELECT 1 FROM ban_history h "
                "WHERE h.ip = roll_ban_ip.ip AND (roll_ban_ip.jail = '*' OR "
                "h.jail = roll_ban_ip.jail) AND h.banned_at >= ? AND h.banned_at < ?)))")
        cargs = [since, until, since, until, since, until, since, until]
        names = sorted(j for j in self.jails() if jails is None or j in jails)
        # (checked, zones) of each address banned in the period, in disjoint parts; sign -1:
        # the ban_new addresses of a part that has them too
        parts: list[tuple[str, list[Any], int]] = []
        alone = "" if len(names) <= 1 else " AND shared = 0"
        every = {row[0] for row in db.execute("SELECT jail FROM roll_ban_jails "
                                              "WHERE jail != '*'")}
        whole = len(names) > 1 and (jails is None or every <= set(jails))
        if whole:  # addresses banned in several jails: their row of all jails
            names.append("*")
            alone = " AND (shared = 0 OR jail = '*')"
        for name in names:
            parts.append((f"SELECT checked, zones FROM roll_ban_ip WHERE jail = ?{alone} AND "
                          f"{cond}", [name, *cargs], 1))
            if fresh:
                parts.append(("SELECT checked, zones FROM temp.ban_new n CROSS JOIN roll_ban_ip "
                              f"ON roll_ban_ip.ip = n.ip WHERE jail = ?{alone} AND {cond}",
                              [name, *cargs], -1))
        if len(names) > 1 and not whole:
            parts.append((f"SELECT checked, zones FROM roll_ban_ip WHERE shared = 1 AND {cond}"
                          f"{where} AND ip NOT IN (SELECT ip FROM temp.ban_new) GROUP BY ip",
                          [*cargs, *params], 1))
        parts.append((
            "SELECT CASE WHEN e.dnsbl_checked THEN 1 ELSE 0 END AS checked, CASE WHEN "
            "e.dnsbl_checked THEN e.dnsbl_zones ELSE '' END AS zones FROM temp.ban_new n "
            "LEFT JOIN enrichment e ON e.ip = n.ip WHERE EXISTS (SELECT 1 FROM ban_history h "
            "WHERE h.ip = n.ip AND h.banned_at >= ? AND h.banned_at < ?"
            f"{_in(jails, 'h.jail')[0]})", [since, until, *params], 1))
        answers = [row[0] for row in db.execute("SELECT zones FROM roll_zones")]
        counts: Counter[tuple[bool, str]] = Counter()
        banned = 0
        for sql, args, sign in parts:
            if len(answers) > 24:  # many DNSBL answers: group (a sort) rather than sum each
                for checked, zones, n in db.execute(f"SELECT checked, zones, count(*) FROM "
                                                    f"({sql}) GROUP BY 1, 2", args):
                    counts[(bool(checked), zones)] += sign * n
                    banned += sign * n
                continue
            tally = "".join(", coalesce(sum(zones = ?), 0)" for _ in answers)
            row = db.execute(f"SELECT count(*), coalesce(sum(checked), 0){tally} FROM ({sql})",
                             [*answers, *args]).fetchone()
            banned += sign * row[0]
            for answer, n in zip(answers, row[2:], strict=True):
                counts[(True, answer)] += sign * n
            counts[(True, "")] += sign * (row[1] - sum(row[2:]))
            counts[(False, "")] += sign * (row[0] - row[1])
        return _dnsbl_figures(banned, counts)


# -- the report ----------------------------------------------------------------------------


def _attempts(db: sqlite3.Connection, since: float, until: float,
              jails: Sequence[str] | None, by_day: bool
              ) -> tuple[dict[str, Counter[int]], dict[str, Counter[str]]]:
    rolled = rolled_until(db)
    where, params = _in(jails)
    hours: dict[str, Counter[int]] = defaultdict(Counter)
    users: dict[str, Counter[str]] = defaultdict(Counter)
    first, last = int(since // HOUR), int(min(until, rolled) // HOUR)
    raw = [max(since, rolled), until]
    if not by_day:
        rows = db.execute(
            "SELECT hour, jail, user, sum(count) FROM roll_hour_user WHERE hour >= ? AND "
            "hour < ?" + where + " GROUP BY hour, jail, user "
            "UNION ALL SELECT CAST(t / 3600 AS INTEGER), jail, coalesce(user, ''), "
            "sum(count) FROM failures WHERE t >= ? AND t < ?" + where + " GROUP BY 1, 2, 3",
            [first, last, *params, *raw, *params])
        for hour, jail, user, count in rows:
            hours[jail][hour] += count
            users[jail][user] += count
        return hours, users
    for jail, hour, count in db.execute(
            "SELECT jail, hour, sum(count) FROM roll_hour_user WHERE hour >= ? AND "
            "hour < ?" + where + " GROUP BY hour, jail UNION ALL SELECT jail, "
            "CAST(t / 3600 AS INTEGER), sum(count) FROM failures WHERE t >= ? AND t < ?"
            + where + " GROUP BY 1, 2", [first, last, *params, *raw, *params]):
        hours[jail][hour] += count
    # accounts: whole UTC days from roll_day_user, the hours at either end by the hour
    low, high = -(-first // 24), last // 24
    if low < high:
        parts = ("SELECT jail, user, count FROM roll_day_user WHERE day >= ? AND day < ?"
                 + where + " UNION ALL SELECT jail, user, count FROM roll_hour_user WHERE "
                 "((hour >= ? AND hour < ?) OR (hour >= ? AND hour < ?))" + where)
        args: list[Any] = [low, high, *params, first, low * 24, high * 24, last, *params]
    else:
        parts = ("SELECT jail, user, count FROM roll_hour_user WHERE hour >= ? AND hour < ?"
                 + where)
        args = [first, last, *params]
    for jail, user, count in db.execute(
            f"SELECT jail, user, sum(count) FROM ({parts} UNION ALL SELECT jail, "
            "coalesce(user, ''), count FROM failures WHERE t >= ? AND t < ?" + where + ") "
            "GROUP BY jail, user", [*args, *raw, *params]):
        users[jail][user] += count
    return hours, users


def _section(addresses: _AddressSource, bans: _BanSource, jail: str | None,
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
    figures = addresses.addresses(jail)
    ranked = sorted(figures.countries, key=lambda e: (-e[2], e[0]))
    until_entry = None
    if until_country:
        for rank, entry in enumerate(ranked, start=1):
            if entry[0] == until_country.upper():
                until_entry = {"country": entry[0], "rank": rank, "attempts": entry[2]}
                break
    top_n = max(TOP, until_entry["rank"]) if until_entry else TOP
    ordered = sorted(figures.months.items())
    rdns = [[m, round(v[3] / v[2], 4) if v[2] else None, v[3], v[2]] for m, v in ordered]
    new_returning = [[m, v[1], v[0] - v[1]] for m, v in ordered]
    selected = [jail] if jail is not None else selection
    bans_month: Counter[str] = Counter()
    for hour, count in bans.starts(selected, since, until).items():
        bans_month[clock.hour_labels(hour)[0]] += count
    priv = Counter({u: users[u] for u in privileged if users.get(u)})
    return {
        "attempts_total": sum(per_hour), "addresses_total": figures.total,
        "bans_total": sum(bans_month.values()),
        "attempts_per_month": [[k, per_month[k]] for k in sorted(per_month)],
        "attempts_per_day": [[k, per_day[k]] for k in sorted(per_day)],
        "attempts_per_hour_of_day": per_hour,
        "privileged_attempts": [[u, n] for u, n in _ranked(priv)],
        "privileged_total": sum(priv.values()),
        "bans_per_month": [[k, bans_month[k]] for k in sorted(bans_month)],
        "ban_table_size": _table_size(bans, selected, clock, since, until),
        "top_countries": ranked[:top_n], "until_country": until_entry,
        "rdns_share_per_month": rdns,
        "top_accounts": [[u or "(none)", n] for u, n in _ranked(users, TOP)],
        "dnsbl": bans.dnsbl(selected, since, until),
        "new_vs_returning_per_month": new_returning,
        "longest_running": [{"ip": ip, "first": first, "last": last,
                             "days": round((last - first) / DAY, 2), "attempts": n}
                            for ip, first, last, n in figures.longest],
        "most_persistent": [{"ip": ip, "attempts": n, "active_days": days, "first": first,
                             "last": last} for ip, n, days, first, last in figures.persistent],
    }


def _table_size(bans: _BanSource, jails: Sequence[str] | None, clock: _Clock, since: float,
                until: float) -> list[list[Any]]:
    """Active bans at the end of each local day of the period: the bans started by then
    (by UTC hour, before ``until``) less those ended by then, counted from the first ban."""
    first = bans.first(jails, until)
    if first is None:
        return []
    tz = clock.tz
    day = datetime.fromtimestamp(max(since, first), tz).date()
    last = datetime.fromtimestamp(until, tz).date()
    h1 = clock.first_hour_of(day)
    active = bans.cumulative(jails, h1, until)
    starts, ends = bans.hourly(jails, h1, until)
    delta: Counter[str] = Counter()
    for hour, count in starts.items():
        delta[clock.hour_labels(hour)[1]] += count
    for hour, count in ends.items():
        delta[clock.hour_labels(hour)[1]] -= count
    out: list[list[Any]] = []
    while day <= last:
        key = day.isoformat()
        active += delta[key]
        out.append([key, active])
        day += timedelta(days=1)
    return out


def _use_rollups(db: sqlite3.Connection, method: str) -> bool:
    """The report tables whenever the store has them (faster for any period: the scan reads
    every address's facts and first day whatever the period), unless asked to scan."""
    if method not in ("auto", "rollups", "scan"):
        raise ValueError(f"unknown method {method!r}")
    return method != "scan" and _table_exists(db, "roll_ip")


def compute_report(db: sqlite3.Connection, *, since: float, until: float, tz: tzinfo,
                   jails: Sequence[str] | None = None, privileged: Sequence[str] = ("root",),
                   until_country: str | None = None, host: str = "",
                   now: float | None = None, method: str = "auto") -> dict[str, Any]:
    """The report's numbers. ``method``: ``rollups`` (the report tables), ``scan`` (the
    reference the tests compare them with), ``auto`` (the tables if the store has them)."""
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")  # one snapshot: a roll-up committing meanwhile changes nothing
    try:
        return _compute(db, since, until, tz, jails, privileged, until_country, host, now,
                        _use_rollups(db, method))
    finally:
        if own:
            db.rollback()


def _compute(db: sqlite3.Connection, since: float, until: float, tz: tzinfo,
             jails: Sequence[str] | None, privileged: Sequence[str],
             until_country: str | None, host: str, now: float | None,
             rollups: bool) -> dict[str, Any]:
    end = datetime.fromtimestamp(until, tz)
    offset_delta = end.utcoffset() or timedelta(0)
    clock = _Clock(tz, offset_delta.total_seconds())
    hours, users = _attempts(db, since, until, jails, rollups)
    addresses: _AddressSource
    bans: _BanSource
    if rollups:
        addresses, bans = _Rollups(db, since, until, jails, clock), _RollupBans(db)
    else:
        scan = _Scan(db, since, until, jails, tz)
        addresses = scan
        bans = _ScanBans(db, {ip: zones for ip, zones in scan.facts.dnsbl.items()})
    names = sorted(set(hours) | addresses.jails())
    overall_hours: Counter[int] = Counter()
    overall_users: Counter[str] = Counter()
    per_service: dict[str, Counter[str]] = defaultdict(Counter)
    for name in names:
        overall_hours.update(hours[name])
        overall_users.update(users[name])
        per_service[service_of(name)].update(users[name])
    shared = (clock, privileged, until_country, since, until)
    overall = _section(addresses, bans, None, jails, overall_hours, overall_users, *shared)
    ban_jails = bans.jails()
    per_jail: dict[str, Any] = {}
    for name in names:
        # one jail and nobody else's bans: its section IS the overall one, computed once
        same = len(names) == 1 and ban_jails <= {name}
        per_jail[name] = overall if same else _section(addresses, bans, name, None,
                                                       hours[name], users[name], *shared)
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
        "top_accounts_by_service": {svc: [[u or "(none)", n] for u, n in _ranked(c, TOP)]
                                    for svc, c in sorted(per_service.items())},
    }

