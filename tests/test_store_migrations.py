"""A store written by an older tailban is brought forward in place, its data kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tailban.core.events import Ban, Failure
from tailban.stores.history import roll_up
from tailban.stores.sqlite import LOCAL_STEPS, SqliteStore

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
        assert store.load_bans() == [Ban("sshd", "203.0.113.5", 1000.0, None, 3, "line", "log")]
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
            "successes", "roll_hour_user", "roll_day_ip", "incidents"} <= tables
