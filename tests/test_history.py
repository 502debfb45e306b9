"""Roll-ups count every failure exactly once, late ones included; incidents agree."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from tailban.core.events import Failure
from tailban.reports.compute import compute_report, open_readonly
from tailban.stores.history import purge, roll_up
from tailban.stores.sqlite import SqliteStore
from tailban.tools.incident import build_incident

DAY = 86400.0
BASE = 1_790_000_000.0  # 2026-09-21


def fail(t: float, ip: str = "198.51.100.7", user: str = "root") -> tuple[str, Failure]:
    return ("sshd", Failure(ip, ip, t, user, "failed_password", 1, f"line at {t}"))


def totals(path: Path, since: float, until: float) -> int:
    db = open_readonly(str(path))
    try:
        report = compute_report(db, since=since, until=until, tz=UTC)
    finally:
        db.close()
    return int(report["overall"]["attempts_total"])


def test_failures_are_counted_once_across_roll_ups_and_late_arrivals(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(str(path))
    store.record(failures=[fail(BASE + i * 600) for i in range(30)])  # 5 hours
    roll_up(store.connection, BASE + 3 * 3600 + 1)   # hours 0-2 rolled, the rest raw
    assert totals(path, BASE - DAY, BASE + DAY) == 30
    # a replayed older log: failures whose hours were already rolled up
    store.record(failures=[fail(BASE + 60 + i) for i in range(5)])
    roll_up(store.connection, BASE + 3 * 3600 + 2)
    assert totals(path, BASE - DAY, BASE + DAY) == 35
    roll_up(store.connection, BASE + 10 * 3600)
    roll_up(store.connection, BASE + 10 * 3600)  # idempotent
    assert totals(path, BASE - DAY, BASE + DAY) == 35
    # the raw rows stay for `raw` after being rolled: the incident must not count them twice
    incident = build_incident(store.connection, "198.51.100.7", BASE - DAY, UTC)
    assert sum(n for _, n in incident.jails) == 35
    assert len(incident.lines) == 35
    # raw rows older than `raw` go, the roll-ups keep the numbers
    removed_raw, _ = purge(store.connection, BASE + 40 * DAY, raw=30 * DAY, keep=400 * DAY)
    assert removed_raw == 35
    assert totals(path, BASE - DAY, BASE + DAY) == 35
    store.close()


def test_incident_evidence_found_without_an_address_index(tmp_path: Path) -> None:
    """The raw rows of one address: on rolled days, after the last roll-up, and late rows
    of an already rolled time; never another address's rows."""
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    ip, other = "198.51.100.7", "203.0.113.9"
    store.record(failures=[fail(BASE + i * DAY, ip) for i in range(3)]      # days 0-2
                 + [fail(BASE + i * DAY + 5, other) for i in range(5)]      # days 0-4
                 + [fail(BASE + 3 * DAY - 1, ip)])  # in the hour the roll-up leaves out
    roll_up(store.connection, BASE + 3 * DAY)           # days 0-2 rolled
    store.record(failures=[fail(BASE + 3 * DAY + 100, ip)])                 # not rolled yet
    store.record(failures=[fail(BASE + DAY + 50, ip), fail(BASE + 4 * DAY, other)])  # late
    indexes = {row[1] for row in store.connection.execute("PRAGMA index_list(failures)")}
    assert "failures_ip" not in indexes
    incident = build_incident(store.connection, ip, BASE - DAY, UTC)
    assert incident.lines == tuple(f"line at {t}" for t in (
        BASE, BASE + DAY, BASE + DAY + 50, BASE + 2 * DAY, BASE + 3 * DAY - 1,
        BASE + 3 * DAY + 100))
    # since cuts inside a rolled day's span
    later = build_incident(store.connection, ip, BASE + DAY + 10, UTC)
    assert later.lines == tuple(f"line at {t}" for t in (
        BASE + DAY + 50, BASE + 2 * DAY, BASE + 3 * DAY - 1, BASE + 3 * DAY + 100))
    roll_up(store.connection, BASE + 5 * DAY)  # now day 1's span holds rows on both sides
    again = build_incident(store.connection, ip, BASE + DAY + 10, UTC)
    assert again.lines == later.lines
    store.close()
