"""Keeping a year of attack history small: hourly roll-ups of the raw failures.

Raw failures (with their log line, the evidence for incident reports) are kept for
``history.raw`` (30 days by default); two roll-ups keep what the reports need for
``history.keep`` (400 days): attempts per UTC hour, jail and account, and per UTC day, jail
and address (count, first and last time). Completed hours are rolled up once; the report
reads the roll-ups up to ``rolled_until`` and the raw rows after it, so it is always current.

The same roll-up keeps the report tables (schema step 8) in step, so that a report over a
year reads thousands of rows instead of millions:

* ``roll_ip``: per jail and address, the sums of its ``roll_day_ip`` rows (attempts, first
  and last time, active days) and a copy of the address's enrichment facts (country,
  forward-confirmed name), clustered by jail and country; an address in several jails has
  ``shared`` set and one more row, over all jails, with the jail ``*``;
* ``roll_month``: per jail (and ``*`` for all jails) and UTC month, the addresses active in
  it, those new in it (first day ever in that month), and those of them with enrichment
  facts and with a name;
* ``roll_day_user``: attempts per UTC day, jail and account (``roll_hour_user`` by day);
* ``roll_ban_hour`` / ``roll_ban_open``: bans that have ended (``ended_at`` set, before the
  last completed hour) counted by the hour they started and the hour they ended; a rolled
  ban that may still change is listed in ``roll_ban_open`` and read from ``ban_history``;
* ``roll_ban_ip``: per jail and address (and ``*`` likewise), the first and last ban start
  and a copy of the DNSBL facts (``roll_zones`` lists the DNSBL answers seen, to count by).

The enrichment facts copies are kept by triggers on ``enrichment`` (see
:data:`REPORT_TABLES`); a ban deleted from ``ban_history`` is taken out of the ban tables by
a trigger too. Everything else happens here, in :func:`roll_up` and :func:`purge`. What the
tables rely on: rows of ``roll_day_ip`` and ``addresses`` change only here, and a ban's row
does not change once it has ended (the store sets ``ended_at`` once).
"""

from __future__ import annotations

import sqlite3
import time

ROLLED_KEY = "history_rolled_until"
ROWID_KEY = "history_rolled_rowid"  # failures up to this rowid were looked at by a roll-up
BANS_ID_KEY = "history_bans_rolled_id"  # bans up to this id are in the ban report tables
BANS_SETTLED_KEY = "history_bans_settled_until"  # bans that ended before this are counted
HOUR = 3600
DAY = 86400


def month_sql(day: str) -> str:
    """SQL: the month number (year * 12 + month - 1) of the UTC day ``day``."""
    return (f"(CAST(strftime('%Y', {day} * 86400, 'unixepoch') AS INTEGER) * 12 + "
            f"CAST(strftime('%m', {day} * 86400, 'unixepoch') AS INTEGER) - 1)")


def month_start_sql(day: str) -> str:
    """SQL: the first UTC day of the month of the UTC day ``day``."""
    return (f"(CAST(strftime('%s', {day} * 86400, 'unixepoch', 'start of month') "
            "AS INTEGER) / 86400)")


def month_end_sql(day: str) -> str:
    """SQL: the last UTC day of the month of the UTC day ``day``."""
    return (f"(CAST(strftime('%s', {day} * 86400, 'unixepoch', 'start of month', "
            "'+1 month') AS INTEGER) / 86400 - 1)")


def month_of_day(day: int) -> int:
    """Python twin of :func:`month_sql`."""
    tm = time.gmtime(day * DAY)
    return tm.tm_year * 12 + tm.tm_mon - 1


_BANS_ROLLED = (f"coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = "
                f"'{BANS_ID_KEY}'), 0)")
_SETTLED = (f"(ended_at IS NOT NULL AND max(ended_at, banned_at) < coalesce((SELECT "
            f"CAST(value AS REAL) FROM meta WHERE key = '{BANS_SETTLED_KEY}'), 0))")


def _facts_sync(ip: str) -> list[str]:
    """Trigger body: bring the report tables' copy of ``ip``'s facts up to date."""
    snap = f"(SELECT named FROM roll_ip WHERE ip = {ip} LIMIT 1)"
    looked = f"(SELECT count(*) FROM roll_ip WHERE ip = {ip} AND named IS NOT NULL) > 0"
    now_named = f"coalesce((SELECT named FROM enrichment WHERE ip = {ip}), 0)"
    now_looked = f"EXISTS (SELECT 1 FROM enrichment WHERE ip = {ip})"
    month = month_sql("day")
    return [
        # the months the address is active in: take the old facts out, put the new ones in
        f"UPDATE roll_month SET looked = looked + ({now_looked}) - ({looked}), "
        f"named = named + {now_named} - coalesce({snap}, 0) "
        f"WHERE (jail, month) IN (SELECT jail, {month} FROM roll_day_ip WHERE ip = {ip} "
        f"UNION SELECT '*', {month} FROM roll_day_ip WHERE ip = {ip})",
        f"UPDATE roll_ip SET country = coalesce((SELECT country FROM enrichment WHERE "
        f"ip = {ip}), ''), named = (SELECT named FROM enrichment WHERE ip = {ip}) "
        f"WHERE ip = {ip}",
        f"UPDATE roll_ban_ip SET checked = coalesce((SELECT CASE WHEN dnsbl_checked THEN 1 "
        f"ELSE 0 END FROM enrichment WHERE ip = {ip}), 0), zones = coalesce((SELECT CASE "
        f"WHEN dnsbl_checked THEN dnsbl_zones ELSE '' END FROM enrichment WHERE ip = {ip}), "
        f"'') WHERE jail IN (SELECT jail FROM roll_ban_jails) AND ip = {ip}",
        f"INSERT OR IGNORE INTO roll_zones (zones) SELECT dnsbl_zones FROM enrichment "
        f"WHERE ip = {ip} AND dnsbl_checked AND dnsbl_zones != ''",
    ]


def _facts_differ(ip: str) -> str:
    """SQL: the report tables' copy of ``ip``'s facts is not what the cache holds now (the
    triggers' guard: most cache writes, refreshes and addresses not rolled up yet, change
    nothing there)."""
    fact = "(SELECT {} FROM enrichment WHERE ip = " + ip + ")"
    checked = fact.format("CASE WHEN dnsbl_checked THEN 1 ELSE 0 END")
    zones = fact.format("CASE WHEN dnsbl_checked THEN dnsbl_zones ELSE '' END")
    return (
        f"EXISTS (SELECT 1 FROM roll_ip r WHERE r.ip = {ip} AND (r.country IS NOT "
        f"coalesce({fact.format('country')}, '') OR r.named IS NOT {fact.format('named')})) "
        f"OR EXISTS (SELECT 1 FROM roll_ban_ip b WHERE b.jail IN (SELECT jail FROM "
        f"roll_ban_jails) AND b.ip = {ip} AND (b.checked IS NOT coalesce({checked}, 0) OR "
        f"b.zones IS NOT coalesce({zones}, ''))) "
        f"OR EXISTS (SELECT 1 FROM enrichment e WHERE e.ip = {ip} AND e.dnsbl_checked AND "
        f"e.dnsbl_zones != '' AND NOT EXISTS (SELECT 1 FROM roll_zones z WHERE "
        f"z.zones = e.dnsbl_zones))")


def _trigger(name: str, event: str, body: list[str], when: str = "") -> str:
    return (f"CREATE TRIGGER IF NOT EXISTS {name} {event} {when}BEGIN "
            + "; ".join(body) + "; END")


def _all_jails(ips: str) -> list[str]:
    """SQL: for the addresses in ``ips`` (a list or a SELECT), roll_ip's ``shared`` flag
    (rows in several jails) and the row of all jails (``*``) that such an address has."""
    several = ("(SELECT count(*) FROM roll_ip r WHERE r.ip = roll_ip.ip AND "
               "r.jail != '*')")
    return [
        f"UPDATE roll_ip SET shared = {several} > 1 WHERE ip IN ({ips}) AND jail != '*'",
        f"DELETE FROM roll_ip WHERE jail = '*' AND ip IN ({ips}) AND {several} < 2",
        "INSERT INTO roll_ip (jail, country, ip, count, first, last, days, named) "
        "SELECT '*', country, ip, sum(count), min(first), max(last), max(days), named "
        f"FROM roll_ip WHERE ip IN ({ips}) AND jail != '*' GROUP BY ip HAVING count(*) > 1 "
        "ON CONFLICT (ip, jail) DO UPDATE SET count = excluded.count, first = "
        "excluded.first, last = excluded.last, days = excluded.days",
    ]


def _all_jails_bans(ips: str) -> list[str]:
    """SQL: the same for roll_ban_ip (first and last ban in any jail)."""
    real = "jail IN (SELECT jail FROM roll_ban_jails WHERE jail != '*')"
    several = f"(SELECT count(*) FROM roll_ban_ip b WHERE b.{real} AND b.ip = roll_ban_ip.ip)"
    return [
        f"UPDATE roll_ban_ip SET shared = {several} > 1 WHERE {real} AND ip IN ({ips})",
        f"DELETE FROM roll_ban_ip WHERE jail = '*' AND ip IN ({ips}) AND {several} < 2",
        "INSERT INTO roll_ban_ip (jail, ip, first_ban, last_ban, checked, zones) "
        "SELECT '*', ip, min(first_ban), max(last_ban), checked, zones FROM roll_ban_ip "
        f"WHERE {real} AND ip IN ({ips}) GROUP BY ip HAVING count(*) > 1 "
        "ON CONFLICT (jail, ip) DO UPDATE SET first_ban = excluded.first_ban, "
        "last_ban = excluded.last_ban",
    ]


_BAN_FORGET = [
    # a ban counted in roll_ban_hour (not open) leaves its start and end hour
    "UPDATE roll_ban_hour SET started = started - 1 WHERE jail = OLD.jail AND "
    "hour = CAST(OLD.banned_at / 3600 AS INTEGER) AND NOT EXISTS "
    "(SELECT 1 FROM roll_ban_open WHERE id = OLD.id)",
    "UPDATE roll_ban_hour SET ended = ended - 1 WHERE jail = OLD.jail AND "
    "hour = CAST(max(OLD.ended_at, OLD.banned_at) / 3600 AS INTEGER) AND NOT EXISTS "
    "(SELECT 1 FROM roll_ban_open WHERE id = OLD.id)",
    "DELETE FROM roll_ban_open WHERE id = OLD.id",
    f"DELETE FROM roll_ban_ip WHERE ip = OLD.ip AND jail = OLD.jail AND NOT EXISTS "
    f"(SELECT 1 FROM ban_history WHERE ip = OLD.ip AND jail = OLD.jail AND id <= "
    f"{_BANS_ROLLED})",
    f"UPDATE roll_ban_ip SET first_ban = (SELECT min(banned_at) FROM ban_history WHERE "
    f"ip = OLD.ip AND jail = OLD.jail AND id <= {_BANS_ROLLED}), last_ban = (SELECT "
    f"max(banned_at) FROM ban_history WHERE ip = OLD.ip AND jail = OLD.jail AND id <= "
    f"{_BANS_ROLLED}) WHERE ip = OLD.ip AND jail = OLD.jail",
    *_all_jails_bans("OLD.ip"),
    # ids are reused once the highest is deleted: the next ban must not look rolled already
    f"UPDATE meta SET value = CAST((SELECT coalesce(max(id), 0) FROM ban_history) AS TEXT) "
    f"WHERE key = '{BANS_ID_KEY}' AND CAST(value AS INTEGER) > (SELECT coalesce(max(id), 0) "
    "FROM ban_history)",
]

REPORT_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS roll_ip (
        jail TEXT NOT NULL,
        country TEXT NOT NULL,
        ip TEXT NOT NULL,
        count INTEGER NOT NULL,
        first REAL NOT NULL,
        last REAL NOT NULL,
        days INTEGER NOT NULL,
        shared INTEGER NOT NULL DEFAULT 0,
        named INTEGER,
        PRIMARY KEY (jail, country, ip)
    ) WITHOUT ROWID""",
    "CREATE UNIQUE INDEX IF NOT EXISTS roll_ip_ip ON roll_ip (ip, jail)",
    """CREATE TABLE IF NOT EXISTS roll_month (
        jail TEXT NOT NULL,
        month INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        new INTEGER NOT NULL DEFAULT 0,
        looked INTEGER NOT NULL DEFAULT 0,
        named INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (jail, month)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS roll_day_user (
        day INTEGER NOT NULL,
        jail TEXT NOT NULL,
        user TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day, jail, user)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS roll_ban_hour (
        jail TEXT NOT NULL,
        hour INTEGER NOT NULL,
        started INTEGER NOT NULL DEFAULT 0,
        ended INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (jail, hour)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS roll_ban_open (id INTEGER PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS roll_ban_ip (
        jail TEXT NOT NULL,
        ip TEXT NOT NULL,
        first_ban REAL NOT NULL,
        last_ban REAL NOT NULL,
        shared INTEGER NOT NULL DEFAULT 0,
        checked INTEGER NOT NULL,
        zones TEXT NOT NULL,
        PRIMARY KEY (jail, ip)
    ) WITHOUT ROWID""",
    # the jails of roll_ban_ip (an address's rows are found jail by jail), and every DNSBL
    # answer (zones listing an address) seen: the report counts per answer
    "CREATE TABLE IF NOT EXISTS roll_ban_jails (jail TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS roll_zones (zones TEXT PRIMARY KEY) WITHOUT ROWID",
    # the enrichment facts copies follow every change of the enrichment cache
    _trigger("roll_facts_added", "AFTER INSERT ON enrichment", _facts_sync("NEW.ip"),
             f"WHEN {_facts_differ('NEW.ip')} "),
    _trigger("roll_facts_changed", "AFTER UPDATE ON enrichment",
             _facts_sync("OLD.ip") + _facts_sync("NEW.ip"),
             f"WHEN OLD.ip IS NOT NEW.ip OR {_facts_differ('NEW.ip')} "),
    _trigger("roll_facts_removed", "AFTER DELETE ON enrichment", _facts_sync("OLD.ip"),
             f"WHEN {_facts_differ('OLD.ip')} "),
    # a rolled ban deleted from the history (purges) leaves the ban tables
    _trigger("roll_ban_forget", "AFTER DELETE ON ban_history", _BAN_FORGET,
             f"WHEN OLD.id <= {_BANS_ROLLED} "),
)

_MONTH = month_sql("r.day")
_SNAPSHOT = "(SELECT named FROM roll_ip s WHERE s.ip = p.ip LIMIT 1)"
_FIRST_MONTH = ("(SELECT " + month_sql("a.first_day") + " FROM addresses a "
                "WHERE a.ip = p.ip)")


def _month_counts(pairs: str, sign: int) -> str:
    """SQL adding (``sign`` 1) or taking out (-1) the (jail, month, ip) rows of ``pairs``
    to or from roll_month: active, new in that month, with facts, with a name."""
    return (
        "INSERT INTO roll_month (jail, month, active, new, looked, named) "
        f"SELECT jail, month, {sign} * count(*), {sign} * coalesce(sum(month = fm), 0), "
        f"{sign} * coalesce(sum(named IS NOT NULL), 0), {sign} * coalesce(sum(named), 0) "
        f"FROM (SELECT p.jail AS jail, p.month AS month, {_FIRST_MONTH} AS fm, "
        f"{_SNAPSHOT} AS named FROM {pairs} p) WHERE true GROUP BY jail, month "
        "ON CONFLICT (jail, month) DO UPDATE SET active = active + excluded.active, "
        "new = new + excluded.new, looked = looked + excluded.looked, "
        "named = named + excluded.named")


def _contribution(ips: str, sign: int) -> str:
    """SQL: the whole contribution to roll_month of the addresses in table ``ips``."""
    pairs = (f"(SELECT DISTINCT r.jail AS jail, {_MONTH} AS month, r.ip AS ip "
             f"FROM roll_day_ip r WHERE r.ip IN (SELECT ip FROM {ips}) UNION "
             f"SELECT '*', {_MONTH}, r.ip FROM roll_day_ip r WHERE r.ip IN "
             f"(SELECT ip FROM {ips}))")
    return _month_counts(pairs, sign)


# Filling the report tables from the roll-ups, ban history and enrichment cache: schema
# step 8 on an existing store, and rebuild_report_tables().
REPORT_BACKFILL: tuple[str, ...] = (
    "DELETE FROM roll_ip",
    "DELETE FROM roll_month",
    "DELETE FROM roll_day_user",
    "DELETE FROM roll_ban_hour",
    "DELETE FROM roll_ban_open",
    "DELETE FROM roll_ban_ip",
    "DELETE FROM roll_ban_jails",
    "INSERT INTO roll_day_user (day, jail, user, count) SELECT hour / 24, jail, user, "
    "sum(count) FROM roll_hour_user GROUP BY 1, 2, 3",
    "INSERT INTO roll_ip (jail, country, ip, count, first, last, days, named) "
    "SELECT r.jail, coalesce(e.country, ''), r.ip, r.n, r.first, r.last, r.days, "
    "e.named FROM (SELECT jail, ip, sum(count) AS n, min(first) AS first, "
    "max(last) AS last, count(*) AS days FROM roll_day_ip GROUP BY jail, ip) r "
    "LEFT JOIN enrichment e ON e.ip = r.ip",
    "UPDATE roll_ip SET shared = 1 WHERE ip IN (SELECT ip FROM roll_ip GROUP BY ip "
    "HAVING count(*) > 1)",
    "INSERT INTO roll_ip (jail, country, ip, count, first, last, days, named) "
    "SELECT '*', country, ip, sum(count), min(first), max(last), max(days), named "
    "FROM roll_ip WHERE shared = 1 GROUP BY ip",
    "INSERT INTO roll_month (jail, month, active, new, looked, named) "
    "SELECT jail, month, count(*), coalesce(sum(month = fm), 0), "
    "coalesce(sum(named IS NOT NULL), 0), coalesce(sum(named), 0) FROM ("
    f"SELECT DISTINCT r.jail AS jail, {_MONTH} AS month, r.ip AS ip FROM roll_day_ip r "
    f"UNION SELECT '*', {_MONTH}, r.ip FROM roll_day_ip r) p "
    "LEFT JOIN (SELECT ip AS aip, " + month_sql("first_day") + " AS fm FROM addresses) "
    "ON aip = p.ip LEFT JOIN (SELECT ip AS sip, named FROM roll_ip GROUP BY ip) "
    "ON sip = p.ip GROUP BY jail, month",
    f"INSERT OR REPLACE INTO meta (key, value) VALUES ('{BANS_ID_KEY}', "
    "(SELECT CAST(coalesce(max(id), 0) AS TEXT) FROM ban_history))",
    f"INSERT OR REPLACE INTO meta (key, value) VALUES ('{BANS_SETTLED_KEY}', "
    "CAST(CAST(strftime('%s', 'now') AS INTEGER) / 3600 * 3600 AS TEXT))",
    "INSERT INTO roll_ban_hour (jail, hour, started, ended) SELECT jail, hour, sum(s), "
    "sum(e) FROM (SELECT jail, CAST(banned_at / 3600 AS INTEGER) AS hour, 1 AS s, 0 AS e "
    f"FROM ban_history WHERE {_SETTLED} UNION ALL SELECT jail, "
    "CAST(max(ended_at, banned_at) / 3600 AS INTEGER), 0, 1 FROM ban_history "
    f"WHERE {_SETTLED}) GROUP BY jail, hour",
    f"INSERT INTO roll_ban_open (id) SELECT id FROM ban_history WHERE NOT {_SETTLED}",
    "INSERT INTO roll_ban_ip (jail, ip, first_ban, last_ban, checked, zones) "
    "SELECT b.jail, b.ip, b.first_ban, b.last_ban, CASE WHEN e.dnsbl_checked THEN 1 ELSE 0 "
    "END, CASE WHEN e.dnsbl_checked THEN e.dnsbl_zones ELSE '' END "
    "FROM (SELECT jail, ip, min(banned_at) AS first_ban, max(banned_at) AS last_ban "
    "FROM ban_history GROUP BY jail, ip) b LEFT JOIN enrichment e ON e.ip = b.ip",
    "INSERT OR IGNORE INTO roll_ban_jails (jail) SELECT DISTINCT jail FROM roll_ban_ip",
    "INSERT OR IGNORE INTO roll_ban_jails (jail) VALUES ('*')",
    "INSERT OR IGNORE INTO roll_zones (zones) SELECT DISTINCT dnsbl_zones FROM enrichment "
    "WHERE dnsbl_checked AND dnsbl_zones != ''",
    "UPDATE roll_ban_ip SET shared = 1 WHERE ip IN (SELECT ip FROM roll_ban_ip GROUP BY ip "
    "HAVING count(*) > 1)",
    "INSERT INTO roll_ban_ip (jail, ip, first_ban, last_ban, checked, zones) "
    "SELECT '*', ip, min(first_ban), max(last_ban), checked, zones FROM roll_ban_ip "
    "WHERE shared = 1 GROUP BY ip",
)


def rebuild_report_tables(db: sqlite3.Connection) -> None:
    """Refill the report tables from scratch (what schema step 8 does to a store)."""
    db.execute("BEGIN")
    try:
        for statement in REPORT_BACKFILL:
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def rolled_until(db: sqlite3.Connection) -> float:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (ROLLED_KEY,)).fetchone()
    return float(row[0]) if row else 0.0


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def roll_up(db: sqlite3.Connection, now: float) -> int:
    """Roll every completed hour not rolled yet into the roll-ups; returns rows rolled.

    Rows are picked by time (the hours since the last roll-up) and, for failures written
    late with a time already rolled (a replayed old log), by rowid: each row is rolled
    exactly once. New bans, and bans that have ended since, go into the ban report tables.
    """
    start = rolled_until(db)
    end = float(int(now // HOUR) * HOUR)
    seen = int(_meta(db, ROWID_KEY) or 0)
    top = db.execute("SELECT coalesce(max(rowid), 0) FROM failures").fetchone()[0]
    bans_seen = int(_meta(db, BANS_ID_KEY) or 0)
    bans_top = db.execute("SELECT coalesce(max(id), 0) FROM ban_history").fetchone()[0]
    settled = float(_meta(db, BANS_SETTLED_KEY) or 0.0)
    bans_due = bans_top > bans_seen or end > settled
    if start == 0.0:
        first = db.execute("SELECT min(t) FROM failures").fetchone()[0]
        if first is None:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [(ROLLED_KEY, str(end)), (ROWID_KEY, str(top))])
            if bans_due:
                db.execute("BEGIN")
                try:
                    _roll_bans(db, bans_seen, bans_top, max(settled, end))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            return 0
        start = float(int(first // HOUR) * HOUR)
    failures_due = not (end <= start and top <= seen)
    if not failures_due and not bans_due:
        return 0
    rows = 0
    db.execute("BEGIN")
    try:
        if failures_due:
            end = max(end, start)
            rows = _roll_failures(db, "(t >= ? AND t < ?) OR (rowid > ? AND rowid <= ? AND "
                                  "t < ?)", (start, end, seen, top, start))
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [(ROLLED_KEY, str(end)), (ROWID_KEY, str(top))])
        if bans_due:
            _roll_bans(db, bans_seen, bans_top, max(settled, end))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return rows


def _temp_tables(db: sqlite3.Connection) -> None:
    db.execute("CREATE TEMP TABLE IF NOT EXISTS roll_batch (day INTEGER NOT NULL, "
               "jail TEXT NOT NULL, ip TEXT NOT NULL, n INTEGER NOT NULL, first REAL NOT NULL, "
               "last REAL NOT NULL, fresh INTEGER NOT NULL DEFAULT 0, "
               "PRIMARY KEY (day, jail, ip)) WITHOUT ROWID")
    db.execute("CREATE TEMP TABLE IF NOT EXISTS roll_moved (ip TEXT PRIMARY KEY) WITHOUT ROWID")
    db.execute("CREATE TEMP TABLE IF NOT EXISTS roll_pairs (jail TEXT NOT NULL, "
               "ip TEXT NOT NULL, month INTEGER NOT NULL, PRIMARY KEY (jail, ip, month)) "
               "WITHOUT ROWID")
    for table in ("roll_batch", "roll_moved", "roll_pairs"):
        db.execute(f"DELETE FROM temp.{table}")


def _roll_failures(db: sqlite3.Connection, which: str, params: tuple[float, ...]) -> int:
    """One roll-up of the failures picked by ``which``; the caller holds the transaction."""
    db.execute(
        "INSERT INTO roll_hour_user (hour, jail, user, count) "
        "SELECT CAST(t / 3600 AS INTEGER), jail, coalesce(user, ''), sum(count) "
        f"FROM failures WHERE {which} GROUP BY 1, 2, 3 "
        "ON CONFLICT (hour, jail, user) DO UPDATE SET count = count + excluded.count", params)
    db.execute(
        "INSERT INTO roll_day_user (day, jail, user, count) "
        "SELECT CAST(t / 86400 AS INTEGER), jail, coalesce(user, ''), sum(count) "
        f"FROM failures WHERE {which} GROUP BY 1, 2, 3 "
        "ON CONFLICT (day, jail, user) DO UPDATE SET count = count + excluded.count", params)
    _temp_tables(db)
    db.execute("INSERT INTO temp.roll_batch (day, jail, ip, n, first, last) "
               "SELECT CAST(t / 86400 AS INTEGER), jail, ip, sum(count), min(t), max(t) "
               f"FROM failures WHERE {which} GROUP BY 1, 2, 3", params)
    db.execute("UPDATE temp.roll_batch SET fresh = NOT EXISTS (SELECT 1 FROM roll_day_ip r "
               "WHERE r.day = roll_batch.day AND r.jail = roll_batch.jail AND "
               "r.ip = roll_batch.ip)")
    # Months: an address whose first day moves earlier (late rows) is recounted in full;
    # for the others only the (jail, address, month) pairs the batch adds are counted.
    db.execute("INSERT INTO temp.roll_moved (ip) SELECT b.ip FROM temp.roll_batch b "
               "JOIN addresses a ON a.ip = b.ip GROUP BY b.ip HAVING min(b.day) < "
               "min(a.first_day)")
    db.execute(_contribution("temp.roll_moved", -1))
    month = month_sql("b.day")
    since, until = month_start_sql("b.day"), month_end_sql("b.day")
    db.execute(
        f"INSERT OR IGNORE INTO temp.roll_pairs (jail, ip, month) SELECT b.jail, b.ip, {month} "
        "FROM temp.roll_batch b WHERE b.ip NOT IN (SELECT ip FROM temp.roll_moved) AND NOT "
        "EXISTS (SELECT 1 FROM roll_day_ip r WHERE r.ip = b.ip AND r.jail = b.jail AND "
        f"r.day BETWEEN {since} AND {until})")
    db.execute(
        f"INSERT OR IGNORE INTO temp.roll_pairs (jail, ip, month) SELECT '*', b.ip, {month} "
        "FROM temp.roll_batch b WHERE b.ip NOT IN (SELECT ip FROM temp.roll_moved) AND NOT "
        f"EXISTS (SELECT 1 FROM roll_day_ip r WHERE r.ip = b.ip AND r.day BETWEEN {since} "
        f"AND {until})")
    cur = db.execute(
        "INSERT INTO roll_day_ip (day, jail, ip, count, first, last) "
        "SELECT day, jail, ip, n, first, last FROM temp.roll_batch WHERE true "
        "ON CONFLICT (day, jail, ip) DO UPDATE SET count = count + excluded.count, "
        "first = min(first, excluded.first), last = max(last, excluded.last)")
    rows = cur.rowcount
    db.execute(
        "INSERT INTO addresses (ip, first_day) SELECT ip, min(day) FROM temp.roll_batch "
        "GROUP BY ip ON CONFLICT (ip) DO UPDATE SET "
        "first_day = min(first_day, excluded.first_day)")
    db.execute(
        "INSERT INTO roll_ip (jail, country, ip, count, first, last, days, named) "
        "SELECT b.jail, coalesce(e.country, ''), b.ip, b.n, b.first, b.last, b.days, "
        "e.named FROM (SELECT jail, ip, sum(n) AS n, min(first) AS first, "
        "max(last) AS last, sum(fresh) AS days FROM temp.roll_batch GROUP BY jail, ip) b "
        "LEFT JOIN enrichment e ON e.ip = b.ip WHERE true "
        "ON CONFLICT (ip, jail) DO UPDATE SET count = count + excluded.count, "
        "first = min(first, excluded.first), last = max(last, excluded.last), "
        "days = days + excluded.days")
    for statement in _all_jails("SELECT ip FROM temp.roll_batch"):
        db.execute(statement)
    db.execute(_month_counts("temp.roll_pairs", 1))
    db.execute(_contribution("temp.roll_moved", 1))
    return rows


def _roll_bans(db: sqlite3.Connection, seen: int, top: int, settled_until: float) -> None:
    """New bans into the ban report tables, and open bans that have ended since."""
    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                   [(BANS_SETTLED_KEY, str(settled_until))])
    ended = ("ended_at IS NOT NULL AND max(ended_at, banned_at) < ?")
    for which, params in (
            ("id IN (SELECT id FROM roll_ban_open)", ()),
            ("id > ? AND id <= ?", (seen, top))):
        db.execute(
            "INSERT INTO roll_ban_hour (jail, hour, started, ended) SELECT jail, hour, "
            "sum(s), sum(e) FROM (SELECT jail, CAST(banned_at / 3600 AS INTEGER) AS hour, "
            f"1 AS s, 0 AS e FROM ban_history WHERE ({which}) AND {ended} UNION ALL SELECT "
            "jail, CAST(max(ended_at, banned_at) / 3600 AS INTEGER), 0, 1 FROM ban_history "
            f"WHERE ({which}) AND {ended}) WHERE true GROUP BY jail, hour "
            "ON CONFLICT (jail, hour) DO UPDATE SET started = started + excluded.started, "
            "ended = ended + excluded.ended",
            (*params, settled_until, *params, settled_until))
        if not params:
            db.execute(f"DELETE FROM roll_ban_open WHERE id IN (SELECT id FROM ban_history "
                       f"WHERE id IN (SELECT id FROM roll_ban_open) AND {ended})",
                       (settled_until,))
    db.execute(f"INSERT INTO roll_ban_open (id) SELECT id FROM ban_history WHERE id > ? AND "
               f"id <= ? AND NOT ({ended})", (seen, top, settled_until))
    db.execute(
        "INSERT INTO roll_ban_ip (jail, ip, first_ban, last_ban, checked, zones) "
        "SELECT b.jail, b.ip, b.first_ban, b.last_ban, CASE WHEN e.dnsbl_checked THEN 1 "
        "ELSE 0 END, CASE WHEN e.dnsbl_checked THEN e.dnsbl_zones ELSE '' END "
        "FROM (SELECT jail, ip, min(banned_at) AS first_ban, max(banned_at) AS last_ban "
        "FROM ban_history WHERE id > ? AND id <= ? GROUP BY jail, ip) b "
        "LEFT JOIN enrichment e ON e.ip = b.ip WHERE true ON CONFLICT (jail, ip) DO UPDATE "
        "SET first_ban = min(first_ban, excluded.first_ban), "
        "last_ban = max(last_ban, excluded.last_ban)", (seen, top))
    db.execute("INSERT OR IGNORE INTO roll_ban_jails (jail) SELECT DISTINCT jail FROM "
               "ban_history WHERE id > ? AND id <= ?", (seen, top))
    db.execute("CREATE TEMP TABLE IF NOT EXISTS roll_ban_batch (ip TEXT PRIMARY KEY) "
               "WITHOUT ROWID")
    db.execute("DELETE FROM temp.roll_ban_batch")
    db.execute("INSERT OR IGNORE INTO temp.roll_ban_batch SELECT ip FROM ban_history WHERE "
               "id > ? AND id <= ?", (seen, top))
    for statement in _all_jails_bans("SELECT ip FROM temp.roll_ban_batch"):
        db.execute(statement)
    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(BANS_ID_KEY, str(top))])


def purge(db: sqlite3.Connection, now: float, raw: float, keep: float) -> tuple[int, int]:
    """Drop raw rows older than ``raw`` (only once rolled up) and everything beyond ``keep``."""
    cutoff_raw = min(now - raw, rolled_until(db))
    cutoff_keep = now - keep
    cutoff_day = int(cutoff_keep // DAY)
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")
    try:
        removed_raw = db.execute("DELETE FROM failures WHERE t < ?", (cutoff_raw,)).rowcount
        # roll_day_user stays the sum of roll_hour_user's hours of each day, cut-off day too
        cutoff_hour = int(cutoff_keep // HOUR)
        db.execute("DELETE FROM roll_day_user WHERE day < ?", (cutoff_hour // 24,))
        db.execute("UPDATE roll_day_user SET count = count - (SELECT sum(h.count) FROM "
                   "roll_hour_user h WHERE h.hour >= ? AND h.hour < ? AND "
                   "h.jail = roll_day_user.jail AND h.user = roll_day_user.user) "
                   "WHERE day = ? AND EXISTS (SELECT 1 FROM roll_hour_user h WHERE "
                   "h.hour >= ? AND h.hour < ? AND h.jail = roll_day_user.jail AND "
                   "h.user = roll_day_user.user)",
                   (cutoff_hour // 24 * 24, cutoff_hour, cutoff_hour // 24,
                    cutoff_hour // 24 * 24, cutoff_hour))
        db.execute("DELETE FROM roll_day_user WHERE day = ? AND count = 0", (cutoff_hour // 24,))
        removed = db.execute("DELETE FROM roll_hour_user WHERE hour < ?",
                             (cutoff_hour,)).rowcount
        removed += _purge_days(db, cutoff_day)
        # an address not seen for `keep` is new again when it comes back
        db.execute("DELETE FROM addresses WHERE first_day < ? AND ip NOT IN "
                   "(SELECT ip FROM roll_day_ip)", (cutoff_day,))
        removed += db.execute("DELETE FROM successes WHERE t < ?", (cutoff_keep,)).rowcount
        removed += db.execute("DELETE FROM alerts WHERE t < ?", (cutoff_keep,)).rowcount
        removed += db.execute("DELETE FROM ban_history WHERE banned_at < ? AND ended_at IS "
                              "NOT NULL", (cutoff_keep,)).rowcount
        if own:
            db.execute("COMMIT")
    except BaseException:
        if own:
            db.execute("ROLLBACK")
        raise
    return removed_raw, removed


def _purge_days(db: sqlite3.Connection, cutoff_day: int) -> int:
    """Delete the daily roll-ups before ``cutoff_day`` and take them out of the report
    tables (only the rows that go are read)."""
    if db.execute("SELECT 1 FROM roll_day_ip WHERE day < ? LIMIT 1",
                  (cutoff_day,)).fetchone() is None:
        return 0
    db.execute("CREATE TEMP TABLE IF NOT EXISTS roll_gone (jail TEXT NOT NULL, "
               "ip TEXT NOT NULL, n INTEGER NOT NULL, days INTEGER NOT NULL, "
               "PRIMARY KEY (jail, ip)) WITHOUT ROWID")
    db.execute("CREATE TEMP TABLE IF NOT EXISTS roll_gone_pairs (jail TEXT NOT NULL, "
               "ip TEXT NOT NULL, month INTEGER NOT NULL, PRIMARY KEY (jail, ip, month)) "
               "WITHOUT ROWID")
    db.execute("DELETE FROM temp.roll_gone")
    db.execute("DELETE FROM temp.roll_gone_pairs")
    db.execute("INSERT INTO temp.roll_gone SELECT jail, ip, sum(count), count(*) "
               "FROM roll_day_ip WHERE day < ? GROUP BY jail, ip", (cutoff_day,))
    month = month_sql("day")
    db.execute(f"INSERT OR IGNORE INTO temp.roll_gone_pairs SELECT jail, ip, {month} "
               "FROM roll_day_ip WHERE day < ?", (cutoff_day,))
    db.execute(f"INSERT OR IGNORE INTO temp.roll_gone_pairs SELECT '*', ip, {month} "
               "FROM roll_day_ip WHERE day < ?", (cutoff_day,))
    removed = int(db.execute("DELETE FROM roll_day_ip WHERE day < ?",
                             (cutoff_day,)).rowcount)
    # a pair stays if the address still has a row in that month (the cut-off's month)
    start, end = month_start_sql("?"), month_end_sql("?")
    db.execute("DELETE FROM temp.roll_gone_pairs WHERE jail != '*' AND EXISTS (SELECT 1 "
               "FROM roll_day_ip r WHERE r.ip = roll_gone_pairs.ip AND r.jail = "
               f"roll_gone_pairs.jail AND r.day BETWEEN {start} AND {end} AND "
               f"{month_sql('r.day')} = roll_gone_pairs.month)", (cutoff_day, cutoff_day))
    db.execute("DELETE FROM temp.roll_gone_pairs WHERE jail = '*' AND EXISTS (SELECT 1 "
               "FROM roll_day_ip r WHERE r.ip = roll_gone_pairs.ip AND r.day BETWEEN "
               f"{start} AND {end} AND {month_sql('r.day')} = roll_gone_pairs.month)",
               (cutoff_day, cutoff_day))
    db.execute(_month_counts("temp.roll_gone_pairs", -1))
    # per jail and address: subtract what went; the first time is that of the first day left
    db.execute("DELETE FROM roll_ip WHERE (ip, jail) IN (SELECT g.ip, g.jail FROM "
               "temp.roll_gone g JOIN roll_ip r ON r.ip = g.ip AND r.jail = g.jail "
               "WHERE r.days = g.days)")
    db.execute("UPDATE roll_ip SET count = count - (SELECT n FROM temp.roll_gone g WHERE "
               "g.ip = roll_ip.ip AND g.jail = roll_ip.jail), days = days - (SELECT days "
               "FROM temp.roll_gone g WHERE g.ip = roll_ip.ip AND g.jail = roll_ip.jail), "
               "first = (SELECT r.first FROM roll_day_ip r WHERE r.ip = roll_ip.ip AND "
               "r.jail = roll_ip.jail ORDER BY r.day LIMIT 1) "
               "WHERE (ip, jail) IN (SELECT ip, jail FROM temp.roll_gone)")
    for statement in _all_jails("SELECT ip FROM temp.roll_gone"):
        db.execute(statement)
    return removed
