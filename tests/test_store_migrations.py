"""A store written by an older tailban is brought forward in place, its data kept."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC
from pathlib import Path

from tailban.core.events import Ban, Failure, Unban
from tailban.reports.compute import compute_report, open_readonly
from tailban.stores.history import roll_up
from tailban.stores.sqlite import LOCAL_STEPS, SqliteStore

# what schema step 8 adds (the report tables kept by the roll-up)
STEP_8_TABLES = ("roll_ip", "roll_month", "roll_day_user", "roll_ban_hour", "roll_ban_open",
                 "roll_ban_ip", "roll_ban_jails", "roll_zones")

# What tailban 0.1.0 (schema version 1) created, verbatim.
V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE bans (jail TEXT NOT NULL, ip TEXT NOT NULL, banned_at REAL NOT NULL,
    expires_at REAL, failures INTEGER NOT NULL DEFAULT 0, line TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'log', PRIMARY KEY (jail, ip));
CREATE TABLE ban_history (id INTEGER PRIMARY KEY, jail TEXT NOT NULL, ip TEXT NOT NULL,
    banned_at REAL NOT NULL, expires_at REAL, ended_at REAL, end_reason TEXT,
    failures INTEGER NOT NULL DEFAULT 0, line TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'log');
CREATE TABLE positions (path TEXT PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    offset INTEGER NOT NULL, fingerprint TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO bans VALUES ('sshd', '203.0.113.5', 1000.0, NULL, 3, 'line', 'log');
INSERT INTO ban_history (jail, ip, banned_at, failures) VALUES ('sshd', '203.0.113.5', 1000.0, 3);
INSERT INTO positions VALUES ('/var/log/auth.log', 1, 2, 300, 'abc');
"""


def test_a_version_1_store_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(V1)
    old.close()
    store = SqliteStore(str(path))
    try:
        assert store.get_meta("schema_version") == str(LOCAL_STEPS[-1].version)
        assert store.load_bans() == [Ban("sshd", "203.0.113.5", 1000.0, None, 3, "", "log")]
        assert store.ban_lines() == {("sshd", "203.0.113.5"): "line"}
        assert store.load_positions()["/var/log/auth.log"].offset == 300
        assert store.past_bans("sshd", "203.0.113.5") == 1
        assert store.past_bans(None, "203.0.113.5") == 1
        # the new tables work
        store.record(failures=[("sshd", Failure("198.51.100.1", "198.51.100.1", 7200.0,
                                                "root", "failed_password", 1, "x"))])
        assert roll_up(store.connection, 20000.0) == 1
        seqs = store.record(outbox=[])
        assert seqs == []
    finally:
        store.close()
    # opening again changes nothing
    again = SqliteStore(str(path))
    assert again.get_meta("schema_version") == str(LOCAL_STEPS[-1].version)
    again.close()


def test_a_new_store_gets_every_step(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "new.sqlite3"))
    tables = {row[0] for row in store.connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    store.close()
    assert {"bans", "ban_history", "positions", "fleet_outbox", "enrichment", "failures",
            "successes", "roll_hour_user", "roll_day_ip", "incidents", "addresses",
            *STEP_8_TABLES} <= tables


def test_a_version_7_store_gets_its_report_tables_filled(tmp_path: Path) -> None:
    """Step 8 back-fills the report tables from what an older tailban left: the reports
    made from them equal the reports made by scanning, and later roll-ups carry on."""
    path = tmp_path / "v7.sqlite3"
    store = SqliteStore(str(path))
    db = store.connection
    rng = random.Random(3)
    base = 1_770_000_000.0
    for day in range(120):
        t = base + day * 86400
        ips = [f"198.51.100.{rng.randrange(40)}" for _ in range(15)]
        store.record(failures=[(rng.choice(["sshd", "postfix"]), Failure(
            ip, ip, t + rng.random() * 80000, rng.choice(["root", "bob"]), "r", 1, "x"))
            for ip in ips], bans=[Ban("sshd", ips[0], t + 100, t + 700, 3)])
        if day % 3:
            store.record(unbans=[Unban("sshd", ips[0], t + 700)])
        store.save_enrichment(ips[1], t, json.dumps({}), country=rng.choice(["CN", "NL"]),
                              country_name="x", named=day % 2 == 0, dnsbl_checked=True,
                              dnsbl_zones=rng.choice(["", "zen.example.org"]))
        if day % 7 == 0:
            roll_up(db, t)
    # what version 7 had: no report tables, triggers or their meta keys
    db.execute("BEGIN")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                              ).fetchall():
        db.execute(f"DROP TRIGGER {name}")
    for table in STEP_8_TABLES:
        db.execute(f"DROP TABLE {table}")
    db.execute("DELETE FROM meta WHERE key LIKE 'history_bans_%'")
    db.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    db.execute("COMMIT")
    # ...and wrote some more, with its own roll-up (no report tables to keep)
    db.execute("INSERT INTO ban_history (jail, ip, banned_at, expires_at, ended_at) "
               "VALUES ('sshd', '203.0.113.1', ?, ?, ?)", (base + 50 * 86400, None, None))
    store.close()

    store = SqliteStore(str(path))  # migrates
    assert store.get_meta("schema_version") == str(LOCAL_STEPS[-1].version)
    roll_up(store.connection, base + 121 * 86400)
    store.close()
    for since, until in ((base - 86400, base + 200 * 86400), (base + 30.5 * 86400,
                                                              base + 80.25 * 86400)):
        reports = []
        for method in ("rollups", "scan"):
            ro = open_readonly(str(path))
            try:
                reports.append(compute_report(ro, since=since, until=until, tz=UTC,
                                              method=method, now=until))
            finally:
                ro.close()
        assert reports[0] == reports[1]
        assert reports[0]["overall"]["addresses_total"] > 30
        assert reports[0]["overall"]["dnsbl"]["checked"] > 0


def test_shrink_memory_gives_back_the_page_cache(tmp_path: Path) -> None:
    """After a storm the daemon asks the store to free its page cache; the store goes on."""
    import ctypes
    import ctypes.util

    from conftest import require

    name = ctypes.util.find_library("sqlite3")
    require(name is not None, "libsqlite3 is not a shared library here")
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    try:
        failures = [("sshd", Failure(f"10.0.{n >> 8 & 255}.{n & 255}", None, 1000.0 + n,
                                     "root", "sshd:failed-password", 1, "x" * 150))
                    for n in range(20000)]
        store.record(failures=failures)
        full = lib.sqlite3_memory_used()
        store.shrink_memory()
        assert lib.sqlite3_memory_used() < full - 500_000
        store.record(failures=failures[:10])
        count = store.connection.execute("SELECT count(*) FROM failures").fetchone()[0]
        assert count == 20010
    finally:
        store.close()
