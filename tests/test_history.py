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
