"""The report from the report tables equals the report from a scan of the history.

Random histories (several jails, late rows, purges, enrichment facts that come, change and
go, bans that end, run for ever or end before they start) are written through the store and
rolled up the way the daemon does it; then every report is computed both ways, for periods
that cut months, hours and days, in zones with whole, half and +13/+14 hour offsets.
The tables kept by the roll-up must also equal the same tables rebuilt from scratch.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tailban.core.events import Ban, Failure, Unban
from tailban.reports.compute import compute_report, open_readonly
from tailban.stores.history import purge, rebuild_report_tables, roll_up
from tailban.stores.sqlite import SqliteStore

HOUR = 3600.0
DAY = 86400.0
START = 1_760_000_000.0  # 2025-10-09
ZONES = ["UTC", "Asia/Tokyo", "Asia/Kolkata", "Pacific/Auckland", "America/St_Johns",
         "Pacific/Kiritimati"]
USERS = ["root", "root", "admin", "alice", "oracle", "", "postgres"]
COUNTRIES = [("CN", "China"), ("US", "United States"), ("NL", "Netherlands"), ("", None),
             (None, None)]


def build(path: Path, seed: int, days: int = 300) -> float:
    """A random history written and rolled up as the daemon does; returns its 'now'."""
    rng = random.Random(seed)
    store = SqliteStore(str(path))
    db = store.connection
    jails = ["sshd", "postfix", "dovecot"][:rng.choice([1, 2, 3])]
    ips = [f"198.51.{rng.randrange(3)}.{i}" for i in range(70)] + [
        f"2001:db8::{i:x}" for i in range(10)]
    heavy = ips[:6]  # persistent addresses, active most days
    t = START
    banned: dict[tuple[str, str], float] = {}
    end = START + days * DAY
    while t < end:
        failures = []
        for _ in range(rng.randrange(0, 25)):
            ip = rng.choice(heavy) if rng.random() < 0.3 else rng.choice(ips)
            when = t - rng.random() * 6 * HOUR
            if rng.random() < 0.04:
                when -= rng.random() * 40 * DAY  # a late row (replayed log)
            failures.append((rng.choice(jails), Failure(
                ip, ip, when, rng.choice(USERS) or None, "failed_password",
                rng.choice([1, 1, 1, 3]), "line")))
        bans, unbans = [], []
        for _ in range(rng.randrange(0, 4)):
            jail, ip = rng.choice(jails + ["recidive"]), rng.choice(ips)
            at = t + (rng.random() * 3 * HOUR if rng.random() < 0.1 else -rng.random() * HOUR)
            expiry = None if rng.random() < 0.1 else at + rng.choice([600, 3600, 86400, 7e6])
            bans.append(Ban(jail, ip, at, expiry, 3))
            banned[(jail, ip)] = at
        for key in list(banned):
            if rng.random() < 0.3:
                unbans.append(Unban(key[0], key[1], t - rng.random() * 60))
                del banned[key]
        store.record(bans=bans, unbans=unbans, failures=failures)
        for _ in range(rng.randrange(0, 3)):
            ip = rng.choice(ips)
            roll = rng.random()
            if roll < 0.15:
                db.execute("DELETE FROM enrichment WHERE ip = ?", (ip,))
            elif roll < 0.3:
                db.execute("UPDATE enrichment SET named = 1 - named, dnsbl_zones = '' "
                           "WHERE ip = ?", (ip,))
            else:
                code, name = rng.choice(COUNTRIES)
                checked = rng.random() < 0.7
                zones = rng.choice(["", "zen.example.org", "zen.example.org b.example.net"])
                store.save_enrichment(ip, t, json.dumps({"ip": ip}), country=code,
                                      country_name=name, named=rng.random() < 0.3,
                                      dnsbl_checked=checked,
                                      dnsbl_zones=zones if checked else "")
        if rng.random() < 0.6:
            roll_up(db, t)
        if rng.random() < 0.1:
            purge(db, t, raw=30 * DAY, keep=rng.choice([120, 200, 400]) * DAY)
        if rng.random() < 0.05:
            store.purge_history(t - 150 * DAY)
        t += rng.choice([0.3, 1, 5, 20, 30, 50]) * HOUR
    # bans starting and ending in the hours that the periods' ends cut
    edge = 0
    for since, until in periods(t):
        for at, ended in ((since - 50, until - 20), (since + 40, until - 5),
                          (since + 5, None), (until - 30, until - 10), (until + 9, until + 60),
                          (since - 7, since - 3), (until - 5, None)):
            edge += 1
            ip, jail = f"203.0.113.{edge}", jails[edge % len(jails)]
            store.record(bans=[Ban(jail, ip, at, at + 7200, 1)])
            if ended is not None:
                store.record(unbans=[Unban(jail, ip, ended)])
    roll_up(db, t - 2 * HOUR)
    # the last hours stay raw, as between two roll-ups: failures, and bans of addresses
    # banned before (and now again) or never
    store.record(failures=[(jails[0], Failure(ips[0], ips[0], t - 10.0, "root", "r", 1, "x"))]
                 + [(rng.choice(jails), Failure(ip, ip, t - rng.random() * HOUR, "admin", "r", 1,
                                                "x")) for ip in rng.sample(ips, 8)])
    for ip in rng.sample(ips, 5) + ["192.0.2.1", "192.0.2.2"]:
        jail = rng.choice(jails)
        store.record(bans=[Ban(jail, ip, t - rng.random() * HOUR, t + 600, 1)])
        if rng.random() < 0.5:
            store.record(unbans=[Unban(jail, ip, t - 1)])
    store.close()
    return t


def periods(now: float) -> list[tuple[float, float]]:
    return [
        (now - 365 * DAY, now),
        (now - 400 * DAY, now),
        (now - 30 * DAY, now),
        (now - 200 * DAY + 1234.5, now - 40 * DAY + 77.7),  # cut hours, days, months
        (now - 120 * DAY - 0.25 * HOUR, now - 1.5 * HOUR),
        (START + 17 * DAY, START + 49 * DAY),  # whole UTC days, in the past
        (now - 2 * HOUR, now + DAY),
    ]


def report(path: Path, method: str, since: float, until: float, zone: str,
           jails: list[str] | None) -> dict[str, Any]:
    db = open_readonly(str(path))
    try:
        return compute_report(db, since=since, until=until, tz=ZoneInfo(zone), jails=jails,
                              privileged=("root", "admin"), until_country="NL",
                              now=until, method=method)
    finally:
        db.close()


# (seed, days of history); 60 and 61 once caught an address of several jails going missing
@pytest.mark.parametrize(("seed", "days"), [(1, 300), (2, 300), (3, 150), (4, 420), (60, 60),
                                            (61, 150)])
def test_report_tables_give_the_scan_s_numbers(tmp_path: Path, seed: int, days: int) -> None:
    path = tmp_path / "store.sqlite3"
    now = build(path, seed, days)
    db = sqlite3.connect(path)
    jails = [row[0] for row in db.execute("SELECT DISTINCT jail FROM roll_day_ip ORDER BY 1")]
    db.close()
    selections: list[list[str] | None] = [None, jails[:1], jails, jails[:2] + ["recidive"],
                                          ["recidive"]]
    compared = 0
    for index, (since, until) in enumerate(periods(now)):
        zone = ZONES[(index + seed) % len(ZONES)]
        for selection in selections if index < 4 else [None]:
            fast = report(path, "rollups", since, until, zone, selection)
            slow = report(path, "scan", since, until, zone, selection)
            assert fast == slow, (since, until, zone, selection)
            compared += 1
    assert compared >= 23
    # something to compare: addresses, months, bans and listings all present
    year = report(path, "rollups", now - 365 * DAY, now, "UTC", None)["overall"]
    assert year["addresses_total"] > 20 and len(year["new_vs_returning_per_month"]) >= 2
    assert year["bans_total"] > 20 and year["dnsbl"]["listed"] > 0


@pytest.mark.parametrize("seed", [5, 6])
def test_every_zone_and_both_ways_on_one_store(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "store.sqlite3"
    now = build(path, seed, days=150)
    for zone in ZONES:
        for since, until in periods(now)[:5]:
            assert report(path, "rollups", since, until, zone, None) == \
                report(path, "scan", since, until, zone, None), (zone, since, until)


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    try:
        return {
            "roll_ip": db.execute("SELECT * FROM roll_ip ORDER BY jail, ip").fetchall(),
            "roll_month": db.execute(
                "SELECT * FROM roll_month WHERE active OR new OR looked OR named "
                "ORDER BY jail, month").fetchall(),
            "roll_day_user": db.execute(
                "SELECT * FROM roll_day_user ORDER BY day, jail, user").fetchall(),
            "roll_ban_ip": db.execute(
                "SELECT * FROM roll_ban_ip ORDER BY jail, ip").fetchall(),
        }
    finally:
        db.close()


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_tables_kept_by_the_roll_up_equal_tables_rebuilt(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "store.sqlite3"
    build(path, seed)
    store = SqliteStore(str(path))
    roll_up(store.connection, 2_000_000_000.0)  # everything rolled, every ban settled
    store.close()
    kept = _tables(path)
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(path, copy)
    store = SqliteStore(str(copy))
    rebuild_report_tables(store.connection)
    store.close()
    assert kept == _tables(copy)
    assert kept["roll_ip"] and kept["roll_month"] and kept["roll_ban_ip"]


def test_many_dnsbl_answers_and_a_period_inside_one_hour(tmp_path: Path) -> None:
    """More DNSBL answers than the report sums one by one; a period of 15 minutes just after
    midnight in a half-hour zone (its end lies in an hour of the day before)."""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(str(path))
    zones = [f"z{i}.example.org" for i in range(30)]
    # 2026-03-10 00:05 in Kolkata is 2026-03-09 18:35 UTC
    since = datetime(2026, 3, 10, 0, 5, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp()
    for i in range(60):
        ip = f"192.0.2.{i}"
        at = since - 1800 + i * 60
        store.record(bans=[Ban("sshd", ip, at, at + 300, 1)],
                     failures=[("sshd", Failure(ip, ip, at - 5, "root", "r", 1, "x"))])
        store.record(unbans=[Unban("sshd", ip, at + 120)])
        store.save_enrichment(ip, at, "{}", country="NL", named=i % 2 == 0, dnsbl_checked=True,
                              dnsbl_zones=" ".join(zones[i % 30: i % 30 + 1 + i % 3]))
    roll_up(store.connection, since + 10 * DAY)
    store.close()
    for start, end in ((since, since + 900), (since - DAY, since + DAY)):
        fast = report(path, "rollups", start, end, "Asia/Kolkata", None)
        assert fast == report(path, "scan", start, end, "Asia/Kolkata", None)
    assert len(fast["overall"]["dnsbl"]["by_zone"]) == 30
    assert fast["overall"]["ban_table_size"]


def test_bans_without_failures_are_rolled_up(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(str(path))
    store.record(bans=[Ban("recidive", "192.0.2.9", START, START + 60, 1)])
    store.record(unbans=[Unban("recidive", "192.0.2.9", START + 60)])
    assert roll_up(store.connection, START + DAY) == 0
    rows = store.connection.execute("SELECT jail, started, ended FROM roll_ban_hour").fetchall()
    store.close()
    assert rows == [("recidive", 1, 0), ("recidive", 0, 1)] or rows == [("recidive", 1, 1)]
    fast = report(path, "rollups", START - DAY, START + DAY, "UTC", None)
    assert fast == report(path, "scan", START - DAY, START + DAY, "UTC", None)
    assert fast["overall"]["bans_total"] == 1


def test_a_ban_id_used_again_after_the_highest_was_purged(tmp_path: Path) -> None:
    """ban_history ids are reused once the highest is deleted: the new ban still counts."""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(str(path))
    for i in range(3):
        store.record(bans=[Ban("sshd", f"192.0.2.{i}", START + i, START + 60, 1)])
        store.record(unbans=[Unban("sshd", f"192.0.2.{i}", START + 60)])
    roll_up(store.connection, START + DAY)
    store.purge_history(START + 2 * DAY)  # every ban, the highest id too
    store.record(bans=[Ban("sshd", "192.0.2.7", START + 3 * DAY, None, 1)])
    assert store.connection.execute("SELECT max(id) FROM ban_history").fetchone()[0] == 1
    for now in (START + 3 * DAY + 10, START + 5 * DAY):
        roll_up(store.connection, now)
        fast = report(path, "rollups", START - DAY, now, "UTC", None)
        assert fast == report(path, "scan", START - DAY, now, "UTC", None)
        assert fast["overall"]["bans_total"] == 1
    store.close()
