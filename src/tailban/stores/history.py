"""Keeping a year of attack history small: hourly roll-ups of the raw failures.

Raw failures (with their log line, the evidence for incident reports) are kept for
``history.raw`` (30 days by default); two roll-ups keep what the reports need for
``history.keep`` (400 days): attempts per UTC hour, jail and account, and per UTC day, jail
and address (count, first and last time). Completed hours are rolled up once; the report
reads the roll-ups up to ``rolled_until`` and the raw rows after it, so it is always current.
"""

from __future__ import annotations

import sqlite3

ROLLED_KEY = "history_rolled_until"
ROWID_KEY = "history_rolled_rowid"  # failures up to this rowid were looked at by a roll-up
HOUR = 3600
DAY = 86400


def rolled_until(db: sqlite3.Connection) -> float:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (ROLLED_KEY,)).fetchone()
    return float(row[0]) if row else 0.0


def roll_up(db: sqlite3.Connection, now: float) -> int:
    """Roll every completed hour not rolled yet into the roll-ups; returns rows rolled.

    Rows are picked by time (the hours since the last roll-up) and, for failures written
    late with a time already rolled (a replayed old log), by rowid: each row is rolled
    exactly once.
    """
    start = rolled_until(db)
    end = float(int(now // HOUR) * HOUR)
    row = db.execute("SELECT value FROM meta WHERE key = ?", (ROWID_KEY,)).fetchone()
    seen = int(row[0]) if row else 0
    top = db.execute("SELECT coalesce(max(rowid), 0) FROM failures").fetchone()[0]
    if start == 0.0:
        first = db.execute("SELECT min(t) FROM failures").fetchone()[0]
        if first is None:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [(ROLLED_KEY, str(end)), (ROWID_KEY, str(top))])
            return 0
        start = float(int(first // HOUR) * HOUR)
    if end <= start and top <= seen:
        return 0
    end = max(end, start)
    which = ("(t >= ? AND t < ?) OR (rowid > ? AND rowid <= ? AND t < ?)",
             (start, end, seen, top, start))
    db.execute("BEGIN")
    try:
        db.execute(
            "INSERT INTO roll_hour_user (hour, jail, user, count) "
            "SELECT CAST(t / 3600 AS INTEGER), jail, coalesce(user, ''), sum(count) "
            f"FROM failures WHERE {which[0]} GROUP BY 1, 2, 3 "
            "ON CONFLICT (hour, jail, user) DO UPDATE SET count = count + excluded.count",
            which[1])
        cur = db.execute(
            "INSERT INTO roll_day_ip (day, jail, ip, count, first, last) "
            "SELECT CAST(t / 86400 AS INTEGER), jail, ip, sum(count), min(t), max(t) "
            f"FROM failures WHERE {which[0]} GROUP BY 1, 2, 3 "
            "ON CONFLICT (day, jail, ip) DO UPDATE SET count = count + excluded.count, "
            "first = min(first, excluded.first), last = max(last, excluded.last)",
            which[1])
        rows = cur.rowcount
        db.execute(
            "INSERT INTO addresses (ip, first_day) "
            f"SELECT ip, CAST(min(t) / 86400 AS INTEGER) FROM failures WHERE {which[0]} "
            "GROUP BY ip ON CONFLICT (ip) DO UPDATE SET "
            "first_day = min(first_day, excluded.first_day)", which[1])
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                       [(ROLLED_KEY, str(end)), (ROWID_KEY, str(top))])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return rows


def purge(db: sqlite3.Connection, now: float, raw: float, keep: float) -> tuple[int, int]:
    """Drop raw rows older than ``raw`` (only once rolled up) and everything beyond ``keep``."""
    cutoff_raw = min(now - raw, rolled_until(db))
    cutoff_keep = now - keep
    removed_raw = db.execute("DELETE FROM failures WHERE t < ?", (cutoff_raw,)).rowcount
    removed = db.execute("DELETE FROM roll_hour_user WHERE hour < ?",
                         (int(cutoff_keep // HOUR),)).rowcount
    removed += db.execute("DELETE FROM roll_day_ip WHERE day < ?",
                          (int(cutoff_keep // DAY),)).rowcount
    # an address not seen for `keep` is new again when it comes back
    db.execute("DELETE FROM addresses WHERE first_day < ? AND ip NOT IN "
               "(SELECT ip FROM roll_day_ip)", (int(cutoff_keep // DAY),))
    removed += db.execute("DELETE FROM successes WHERE t < ?", (cutoff_keep,)).rowcount
    removed += db.execute("DELETE FROM alerts WHERE t < ?", (cutoff_keep,)).rowcount
    removed += db.execute("DELETE FROM ban_history WHERE banned_at < ? AND ended_at IS NOT NULL",
                          (cutoff_keep,)).rowcount
    return removed_raw, removed
