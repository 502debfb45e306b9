"""SQLite store (WAL): current bans, ban history, file positions.

Writes of one processed chunk go in one transaction; with WAL and synchronous=NORMAL a
commit costs tens of microseconds and survives a process crash.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from tailban.core.events import Ban, Failure, Success, Unban
from tailban.sources.follower import Position
from tailban.stores.fleet import Outgoing
from tailban.stores.history import REPORT_BACKFILL, REPORT_TABLES
from tailban.stores.migrations import Migrator, Step

_V1 = (
    """CREATE TABLE IF NOT EXISTS bans (
    jail TEXT NOT NULL,
    ip TEXT NOT NULL,
    banned_at REAL NOT NULL,
    expires_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    line TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'log',
    PRIMARY KEY (jail, ip)
)""",
    "CREATE INDEX IF NOT EXISTS bans_expires ON bans (expires_at)",
    """CREATE TABLE IF NOT EXISTS ban_history (
    id INTEGER PRIMARY KEY,
    jail TEXT NOT NULL,
    ip TEXT NOT NULL,
    banned_at REAL NOT NULL,
    expires_at REAL,
    ended_at REAL,
    end_reason TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    line TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'log'
)""",
    "CREATE INDEX IF NOT EXISTS ban_history_ip ON ban_history (ip, banned_at)",
    "CREATE INDEX IF NOT EXISTS ban_history_banned_at ON ban_history (banned_at)",
    """CREATE TABLE IF NOT EXISTS positions (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    fingerprint TEXT NOT NULL
)""",
)
LOCAL_STEPS: tuple[Step, ...] = (
    Step(1, "bans, ban history, file positions", _V1),
    Step(2, "fleet outbox: bans waiting to be published", (
        """CREATE TABLE IF NOT EXISTS fleet_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            ip TEXT NOT NULL,
            jail TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            banned_at REAL NOT NULL,
            expires_at REAL
        )""",
    )),
    Step(3, "enrichment cache: what is known about an address, with its age", (
        """CREATE TABLE IF NOT EXISTS enrichment (
            ip TEXT PRIMARY KEY,
            fetched_at REAL NOT NULL,
            data TEXT NOT NULL
        )""",
    )),
    Step(4, "attack history for reports: raw failures and successes, hourly roll-ups", (
        """CREATE TABLE IF NOT EXISTS failures (
            t REAL NOT NULL,
            jail TEXT NOT NULL,
            ip TEXT NOT NULL,
            user TEXT,
            rule TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            line TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS failures_t ON failures (t)",
        "CREATE INDEX IF NOT EXISTS failures_ip ON failures (ip, t)",
        """CREATE TABLE IF NOT EXISTS successes (
            t REAL NOT NULL,
            jail TEXT NOT NULL,
            ip TEXT NOT NULL,
            user TEXT,
            rule TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS successes_t ON successes (t)",
        """CREATE TABLE IF NOT EXISTS roll_hour_user (
            hour INTEGER NOT NULL,
            jail TEXT NOT NULL,
            user TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (hour, jail, user)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS roll_day_ip (
            day INTEGER NOT NULL,
            jail TEXT NOT NULL,
            ip TEXT NOT NULL,
            count INTEGER NOT NULL,
            first REAL NOT NULL,
            last REAL NOT NULL,
            PRIMARY KEY (day, jail, ip)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS roll_day_ip_ip ON roll_day_ip (ip)",
        """CREATE TABLE IF NOT EXISTS incidents (
            ip TEXT NOT NULL,
            sent_at REAL NOT NULL,
            template TEXT NOT NULL,
            recipient TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS incidents_ip ON incidents (ip, sent_at)",
    )),
    Step(5, "enrichment facts the reports join on, as columns (no JSON parsing per report)", (
        "ALTER TABLE enrichment ADD COLUMN country TEXT",
        "ALTER TABLE enrichment ADD COLUMN country_name TEXT",
        "ALTER TABLE enrichment ADD COLUMN named INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE enrichment ADD COLUMN dnsbl_checked INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE enrichment ADD COLUMN dnsbl_zones TEXT NOT NULL DEFAULT ''",
        """UPDATE enrichment SET
            country = json_extract(data, '$.country_iso'),
            country_name = json_extract(data, '$.country_name'),
            named = coalesce(json_array_length(data, '$.rdns_confirmed'), 0) > 0,
            dnsbl_checked = coalesce(json_array_length(data, '$.dnsbl_checked'), 0) > 0,
            dnsbl_zones = coalesce((SELECT group_concat(json_extract(z.value, '$.zone'), ' ')
                                    FROM json_each(data, '$.dnsbl') z), '')""",
    )),
    Step(6, "anomaly alerts and the detectors' state", (
        """CREATE TABLE IF NOT EXISTS alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            t REAL NOT NULL,
            kind TEXT NOT NULL,
            jail TEXT NOT NULL,
            subject TEXT NOT NULL,
            score REAL NOT NULL,
            reasons TEXT NOT NULL,
            details TEXT NOT NULL,
            action TEXT NOT NULL DEFAULT 'alert',
            acked_at REAL,
            mailed INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX IF NOT EXISTS alerts_t ON alerts (t)",
        """CREATE TABLE IF NOT EXISTS anomaly_state (
            name TEXT PRIMARY KEY,
            data TEXT NOT NULL
        )""",
    )),
    Step(7, "first day each address was seen (reports: new versus returning attackers)", (
        """CREATE TABLE IF NOT EXISTS addresses (
            ip TEXT PRIMARY KEY,
            first_day INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "INSERT OR IGNORE INTO addresses SELECT ip, min(day) FROM roll_day_ip GROUP BY ip",
    )),
    Step(8, "report tables kept by the roll-up (per address, per month, bans per hour), "
         "filled from the existing roll-ups, ban history and enrichment cache",
         REPORT_TABLES + REPORT_BACKFILL),
    Step(9, "no index of raw failures by address: random inserts into it were two thirds "
         "of the cost of storing a failure; incidents find an address's rows through the "
         "daily roll-ups", (
             "DROP INDEX IF EXISTS failures_ip",
         )),
)


LINE_KEPT = 300  # characters of a failure's log line kept as incident evidence


class PastBans(dict[str, int]):
    """Bans per address for bantime.increment: read from the history the first time an
    address is banned again, then counted in memory (the jail adds each new ban)."""

    def __init__(self, store: SqliteStore, jail: str | None) -> None:
        super().__init__()
        self._store = store
        self._jail = jail

    def get(self, ip: str, default: int = 0) -> int:  # type: ignore[override]
        try:
            return self[ip]
        except KeyError:
            count = self[ip] = self._store.past_bans(self._jail, ip)
            return count


class SqliteStore:
    """The daemon's durable state; used from one thread (the event loop)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        db = self._db

        def execute(sql: str, params: Sequence[object]) -> None:
            db.execute(sql, params)

        db.execute("BEGIN IMMEDIATE")
        try:
            Migrator("sqlite", execute, lambda sql, params: db.execute(sql, params).fetchall(),
                     "meta").apply(LOCAL_STEPS)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def shrink_memory(self) -> None:
        """Free the connection's page cache (it refills as needed)."""
        self._db.execute("PRAGMA shrink_memory")

    def close(self) -> None:
        self._db.close()

    # -- bans ---------------------------------------------------------------------------

    def load_bans(self) -> list[Ban]:
        """The active bans, without their log lines (the ledger keeps none: ban_lines)."""
        rows = self._db.execute(
            "SELECT jail, ip, banned_at, expires_at, failures, '', source FROM bans")
        # one string object per jail name and source, not one per row
        names: dict[str, str] = {}
        return [Ban(names.setdefault(jail, jail), ip, banned_at, expires_at, failures, line,
                    names.setdefault(source, source))
                for jail, ip, banned_at, expires_at, failures, line, source in rows]

    def lines_of(self, bans: Sequence[Ban]) -> dict[tuple[str, str], str]:
        """The log lines of these bans, by (jail, ip), through the primary key."""
        by_jail: dict[str, list[str]] = {}
        for ban in bans:
            by_jail.setdefault(ban.jail, []).append(ban.ip)
        found: dict[tuple[str, str], str] = {}
        for jail, ips in by_jail.items():
            for start in range(0, len(ips), 500):
                part = ips[start:start + 500]
                marks = ",".join("?" * len(part))
                for ip, line in self._db.execute(
                        f"SELECT ip, line FROM bans WHERE jail = ? AND ip IN ({marks})",
                        [jail, *part]):
                    found[(jail, ip)] = line
        return found

    def ban_lines(self, jail: str | None = None, ip: str | None = None
                  ) -> dict[tuple[str, str], str]:
        """The log line of each active ban, by (jail, ip): the ledger does not keep them."""
        sql = "SELECT jail, ip, line FROM bans"
        where = [(c, v) for c, v in (("jail", jail), ("ip", ip)) if v is not None]
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)
        rows = self._db.execute(sql, [v for _, v in where])
        return {(name, addr): line for name, addr, line in rows}

    def record(self, bans: Iterable[Ban] = (), unbans: Iterable[Unban] = (),
               positions: Iterable[Position] = (),
               outbox: Sequence[Outgoing] = (),
               failures: Sequence[tuple[str, Failure]] = (),
               successes: Sequence[tuple[str, Success]] = ()) -> list[int]:
        """Everything one processed chunk changed, in one transaction.

        Returns the outbox sequence numbers of ``outbox`` (what the fleet publisher must
        confirm before those rows are deleted).
        """
        ban_rows = [(b.jail, b.ip, b.banned_at, b.expires_at, b.failures, b.line, b.source)
                    for b in bans]
        unban_rows = [(u.at, u.reason, u.jail, u.ip) for u in unbans]
        pos_rows = [(p.path, p.dev, p.ino, p.offset, p.fingerprint) for p in positions]
        if not (ban_rows or unban_rows or pos_rows or outbox or failures or successes):
            return []
        seqs: list[int] = []
        db = self._db
        db.execute("BEGIN")
        try:
            if unban_rows:
                db.executemany(
                    "UPDATE ban_history SET ended_at = ?, end_reason = ? WHERE id = ("
                    "SELECT max(id) FROM ban_history WHERE jail = ? AND ip = ?) "
                    "AND ended_at IS NULL", unban_rows)
                db.executemany("DELETE FROM bans WHERE jail = ? AND ip = ?",
                               [(u[2], u[3]) for u in unban_rows])
            if ban_rows:
                db.executemany("INSERT OR REPLACE INTO bans VALUES (?, ?, ?, ?, ?, ?, ?)",
                               ban_rows)
                db.executemany(
                    "INSERT INTO ban_history (jail, ip, banned_at, expires_at, failures, line,"
                    " source) VALUES (?, ?, ?, ?, ?, ?, ?)", ban_rows)
            if pos_rows:
                db.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?)",
                               pos_rows)
            if failures:
                db.executemany("INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(f.time, jail, f.ip, f.user, f.rule, f.count, f.line[:LINE_KEPT])
                                for jail, f in failures if f.ip is not None])
            if successes:
                db.executemany("INSERT INTO successes VALUES (?, ?, ?, ?, ?)",
                               [(x.time, jail, x.ip, x.user, x.rule) for jail, x in successes])
            if outbox:
                db.executemany("INSERT INTO fleet_outbox (kind, ip, jail, reason, banned_at,"
                               " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                               [(o.kind, o.ip, o.jail, o.reason, o.banned_at, o.expires_at)
                                for o in outbox])
                last = int(db.execute("SELECT max(seq) FROM fleet_outbox").fetchone()[0])
                seqs = list(range(last - len(outbox) + 1, last + 1))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seqs

    # -- fleet --------------------------------------------------------------------------

    def fleet_outbox(self) -> list[tuple[int, Outgoing]]:
        rows = self._db.execute("SELECT seq, kind, ip, jail, reason, banned_at, expires_at "
                                "FROM fleet_outbox ORDER BY seq")
        return [(row[0], Outgoing(*row[1:])) for row in rows]

    def fleet_published(self, seqs: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM fleet_outbox WHERE seq = ?", [(s,) for s in seqs])

    # -- enrichment ---------------------------------------------------------------------

    def save_enrichment(self, ip: str, fetched_at: float, data: str, *,
                        country: str | None = None, country_name: str | None = None,
                        named: bool = False, dnsbl_checked: bool = False,
                        dnsbl_zones: str = "") -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO enrichment (ip, fetched_at, data, country, country_name, "
            "named, dnsbl_checked, dnsbl_zones) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ip, fetched_at, data, country, country_name, named, dnsbl_checked, dnsbl_zones))

    def enrichment_of(self, ips: Sequence[str]) -> dict[str, str]:
        """Stored enrichment JSON by address (chunked: SQLite limits parameters)."""
        found: dict[str, str] = {}
        for start in range(0, len(ips), 500):
            part = list(ips[start:start + 500])
            marks = ",".join("?" * len(part))
            for ip, data in self._db.execute(
                    f"SELECT ip, data FROM enrichment WHERE ip IN ({marks})", part):
                found[ip] = data
        return found

    def history_of(self, ip: str, limit: int = 100) -> list[dict[str, object]]:
        rows = self._db.execute(
            "SELECT jail, banned_at, expires_at, ended_at, end_reason, failures, line, source "
            "FROM ban_history WHERE ip = ? ORDER BY banned_at DESC LIMIT ?", (ip, limit))
        keys = ("jail", "banned_at", "expires_at", "ended_at", "end_reason", "failures",
                "line", "source")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- anomaly alerts -------------------------------------------------------------------

    def add_alert(self, t: float, kind: str, jail: str, subject: str, score: float,
                  reasons: str, details: str, action: str) -> int:
        cur = self._db.execute(
            "INSERT INTO alerts (t, kind, jail, subject, score, reasons, details, action) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (t, kind, jail, subject, score, reasons, details, action))
        return int(cur.lastrowid or 0)

    def alert(self, alert_id: int) -> tuple[object, ...] | None:
        row = self._db.execute("SELECT id, t, kind, jail, subject, score, reasons, details, "
                               "action, acked_at FROM alerts WHERE id = ?",
                               (alert_id,)).fetchone()
        return None if row is None else tuple(row)

    def ack_alert(self, alert_id: int, at: float) -> None:
        self._db.execute("UPDATE alerts SET acked_at = ? WHERE id = ?", (at, alert_id))

    def save_state(self, name: str, data: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO anomaly_state VALUES (?, ?)", (name, data))

    def load_state(self, name: str) -> str | None:
        row = self._db.execute("SELECT data FROM anomaly_state WHERE name = ?",
                               (name,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def connection(self) -> sqlite3.Connection:
        """For the history roll-ups (stores/history.py), on this same thread."""
        return self._db

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bans_since(self, since: float) -> list[dict[str, object]]:
        rows = self._db.execute("SELECT jail, ip, banned_at FROM ban_history WHERE banned_at >= ?"
                                " ORDER BY banned_at", (since,))
        return [{"jail": j, "ip": ip, "banned_at": at} for j, ip, at in rows]

    def past_bans(self, jail: str | None, ip: str) -> int:
        """Bans of ``ip`` so far in ``jail`` (None: in any jail)."""
        if jail is None:
            row = self._db.execute("SELECT count(*) FROM ban_history WHERE ip = ?", (ip,))
        else:
            row = self._db.execute(
                "SELECT count(*) FROM ban_history WHERE ip = ? AND jail = ?", (ip, jail))
        return int(row.fetchone()[0])

    def purge_history(self, older_than: float) -> int:
        cur = self._db.execute(
            "DELETE FROM ban_history WHERE ended_at IS NOT NULL AND ended_at < ?", (older_than,))
        return cur.rowcount

    # -- positions ----------------------------------------------------------------------

    def load_positions(self) -> dict[str, Position]:
        rows = self._db.execute("SELECT path, dev, ino, offset, fingerprint FROM positions")
        return {row[0]: Position(*row) for row in rows}


class EnrichmentCache:
    """A second, read-only connection for the enrichment thread (WAL: never blocks writers)."""

    def __init__(self, path: str) -> None:
        uri = f"file:{path}?mode=ro" if path != ":memory:" else ":memory:"
        self._db = sqlite3.connect(uri, uri=path != ":memory:", check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=2000")

    def get(self, ip: str) -> tuple[float, str] | None:
        try:
            row = self._db.execute("SELECT fetched_at, data FROM enrichment WHERE ip = ?",
                                   (ip,)).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else (float(row[0]), str(row[1]))

    def close(self) -> None:
        self._db.close()
