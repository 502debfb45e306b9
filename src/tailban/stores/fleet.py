"""The fleet tables: bans and unbans every host publishes and every host reads.

Two adapters with one schema (``migrations.FLEET_STEPS``): PostgreSQL for a real fleet
(``LISTEN/NOTIFY`` wakes readers) and SQLite for one machine and for tests. Both are used
from the fleet threads only, never from the ban path.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tailban.stores.migrations import FLEET_STEPS, Migrator, latest

CHANNEL = "tailban_fleet"
# Readers see rows in id order; concurrent publishers could commit ids out of order and a
# reader would skip the late one, so publishers serialise on this advisory lock.
PUBLISH_LOCK = 7_263_517
MIGRATE_LOCK = 7_263_518
COLUMNS = "id, kind, ip, jail, host, grp, reason, banned_at, expires_at"


class FleetStoreError(Exception):
    """The fleet database is unreachable, refuses us, or has an older schema."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event this host publishes."""

    kind: str  # "ban" | "unban"
    ip: str
    jail: str  # "" in an unban: every jail
    reason: str
    banned_at: float
    expires_at: float | None


# A row as read back: (id, kind, ip, jail, host, grp, reason, banned_at, expires_at).
# Deliberately untyped: any host with write access could have written anything.
RawRow = tuple[Any, ...]


class FleetStore(Protocol):
    dialect: str

    def migrate(self) -> list[int]: ...
    def publish(self, host: str, group: str, events: Sequence[Outgoing]) -> int: ...
    def read_after(self, last_id: int, limit: int) -> list[RawRow]: ...
    def max_id(self) -> int: ...
    def wait(self, timeout: float) -> bool: ...
    def expire(self, now: float, keep: float) -> int: ...
    def active_bans(self, now: float) -> list[RawRow]: ...
    def close(self) -> None: ...


def open_fleet_store(url: str, **options: Any) -> FleetStore:
    if url.startswith(("postgresql://", "postgres://")) or "=" in url.split("/")[0]:
        return PostgresFleetStore(url, **options)
    if url.startswith("sqlite:///"):
        return SqliteFleetStore(url[len("sqlite://"):])
    raise FleetStoreError(f"unsupported fleet store {redact(url)!r} "
                          "(postgresql://... or sqlite:///path)")


def redact(url: str) -> str:
    """The URL without its password, for logs and ``status``."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


# -- PostgreSQL -----------------------------------------------------------------------------


class PostgresFleetStore:
    """psycopg 3, autocommit connection; one instance per thread."""

    dialect = "postgresql"

    def __init__(self, url: str, *, password: str | None = None, connect_timeout: float = 5.0,
                 listen: bool = False, **tls: str) -> None:
        import psycopg

        kwargs: dict[str, Any] = {k: v for k, v in tls.items() if v}
        if password:
            kwargs["password"] = password
        try:
            self._conn = psycopg.connect(url, autocommit=True,
                                         connect_timeout=max(1, int(connect_timeout)),
                                         application_name="tailban", **kwargs)
        except psycopg.Error as exc:
            raise FleetStoreError(f"cannot connect to {redact(url)}: "
                                  f"{_one_line(exc)}") from None
        self._psycopg = psycopg
        if listen:
            self._run(f"LISTEN {CHANNEL}")

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self._conn.execute(sql, params)
            return cur.fetchall() if cur.description else []
        except self._psycopg.Error as exc:
            raise FleetStoreError(_one_line(exc)) from None

    def migrate(self) -> list[int]:
        conn = self._conn
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))

                def execute(sql: str, params: Sequence[object]) -> None:
                    conn.execute(sql, params)

                def query(sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
                    return conn.execute(sql, params).fetchall()

                return Migrator("postgresql", execute, query, "fleet_meta").apply(FLEET_STEPS)
        except self._psycopg.Error as exc:
            raise FleetStoreError(f"fleet schema: {_one_line(exc)}") from None

    def schema_version(self) -> int:
        rows = self._run("SELECT value FROM fleet_meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    def publish(self, host: str, group: str, events: Sequence[Outgoing]) -> int:
        """All events in one transaction and one notification; returns the last id."""
        conn = self._conn
        rows = [(e.kind, e.ip, e.jail, host, group, e.reason, e.banned_at, e.expires_at)
                for e in events]
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO fleet_events (kind, ip, jail, host, grp, reason, "
                        "banned_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
                unbans = [(e.ip, e.jail, e.jail) for e in events if e.kind == "unban"]
                if unbans:
                    conn.cursor().executemany(
                        "UPDATE fleet_events SET lifted_at = extract(epoch from now()) "
                        "WHERE kind = 'ban' AND ip = %s AND (jail = %s OR %s = '') "
                        "AND lifted_at IS NULL", unbans)
                last = conn.execute("SELECT max(id) FROM fleet_events").fetchone()
                last_id = int(last[0]) if last and last[0] is not None else 0
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(last_id)))
        except self._psycopg.Error as exc:
            raise FleetStoreError(_one_line(exc)) from None
        return last_id

    def read_after(self, last_id: int, limit: int) -> list[RawRow]:
        return self._run(f"SELECT {COLUMNS} FROM fleet_events WHERE id > %s ORDER BY id "
                         "LIMIT %s", (last_id, limit))

    def max_id(self) -> int:
        rows = self._run("SELECT coalesce(max(id), 0) FROM fleet_events")
        return int(rows[0][0])

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrives or ``timeout`` passes."""
        woke = False
        try:
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                woke = True
                break
            if woke:  # one read serves every notification already queued: drop them
                for _ in self._conn.notifies(timeout=0.0):
                    pass
        except self._psycopg.Error as exc:
            raise FleetStoreError(_one_line(exc)) from None
        return woke

    def expire(self, now: float, keep: float) -> int:
        cutoff = now - keep
        try:
            cur = self._conn.execute(
                "DELETE FROM fleet_events WHERE created_at < %s AND (kind = 'unban' OR "
                "lifted_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at < %s))",
                (cutoff, now))
        except self._psycopg.Error as exc:
            raise FleetStoreError(_one_line(exc)) from None
        return cur.rowcount

    def active_bans(self, now: float) -> list[RawRow]:
        return self._run(f"SELECT {COLUMNS} FROM fleet_events WHERE kind = 'ban' AND "
                         "lifted_at IS NULL AND (expires_at IS NULL OR expires_at > %s) "
                         "ORDER BY id", (now,))

    def close(self) -> None:
        self._conn.close()


# -- SQLite ---------------------------------------------------------------------------------


class SqliteFleetStore:
    """The same tables in a file: several daemons on one machine, and the unit tests.

    SQLite has no notifications: a reader looks after every ``wait`` timeout (one second).
    """

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                       timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise FleetStoreError(f"cannot open {path}: {exc}") from None
        if path != ":memory:":
            os.chmod(path, 0o600)
        self._closed = threading.Event()

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise FleetStoreError(str(exc)) from None

    def migrate(self) -> list[int]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                def execute(sql: str, params: Sequence[object]) -> None:
                    db.execute(sql, params)

                done = Migrator("sqlite", execute,
                                lambda s, p: db.execute(s, p).fetchall(),
                                "fleet_meta").apply(FLEET_STEPS)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise FleetStoreError(f"fleet schema: {exc}") from None
        return done

    def schema_version(self) -> int:
        rows = self._run("SELECT value FROM fleet_meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    def publish(self, host: str, group: str, events: Sequence[Outgoing]) -> int:
        db = self._db
        rows = [(e.kind, e.ip, e.jail, host, group, e.reason, e.banned_at, e.expires_at)
                for e in events]
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO fleet_events (kind, ip, jail, host, grp, reason, "
                               "banned_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                db.executemany("UPDATE fleet_events SET lifted_at = strftime('%s','now') "
                               "WHERE kind = 'ban' AND ip = ? AND (jail = ? OR ? = '') "
                               "AND lifted_at IS NULL",
                               [(e.ip, e.jail, e.jail) for e in events if e.kind == "unban"])
                last = db.execute("SELECT coalesce(max(id), 0) FROM fleet_events").fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise FleetStoreError(str(exc)) from None
        return int(last[0])

    def read_after(self, last_id: int, limit: int) -> list[RawRow]:
        return self._run(f"SELECT {COLUMNS} FROM fleet_events WHERE id > ? ORDER BY id "
                         "LIMIT ?", (last_id, limit))

    def max_id(self) -> int:
        return int(self._run("SELECT coalesce(max(id), 0) FROM fleet_events")[0][0])

    def wait(self, timeout: float) -> bool:
        """No notifications in SQLite: after ``timeout`` the reader should look."""
        return not self._closed.wait(timeout)

    def expire(self, now: float, keep: float) -> int:
        cur = self._db.execute(
            "DELETE FROM fleet_events WHERE created_at < ? AND (kind = 'unban' OR "
            "lifted_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at < ?))",
            (now - keep, now))
        return cur.rowcount

    def active_bans(self, now: float) -> list[RawRow]:
        return self._run(f"SELECT {COLUMNS} FROM fleet_events WHERE kind = 'ban' AND "
                         "lifted_at IS NULL AND (expires_at IS NULL OR expires_at > ?) "
                         "ORDER BY id", (now,))

    def close(self) -> None:
        self._closed.set()
        self._db.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def schema_is_current(store: FleetStore) -> bool:
    version = getattr(store, "schema_version", None)
    try:
        return version is not None and version() >= latest(FLEET_STEPS)
    except FleetStoreError:  # no fleet_meta table at all
        return False
