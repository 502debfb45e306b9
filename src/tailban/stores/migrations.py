"""Numbered schema steps, applied in order, for SQLite and PostgreSQL alike.

One list per kind of database (the daemon's own state, the fleet tables). Each step is
written once with a few dialect placeholders, so both engines get the same tables and an
existing store is brought forward instead of being recreated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Placeholders each dialect fills: an auto-increasing 64-bit key, a float, a timestamp.
DIALECTS: dict[str, dict[str, str]] = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL",
               "now": "(strftime('%s','now'))", "bool": "INTEGER"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION",
                   "now": "extract(epoch from now())", "bool": "BOOLEAN"},
}


@dataclass(frozen=True, slots=True)
class Step:
    version: int
    description: str
    statements: tuple[str, ...]

    def sql(self, dialect: str) -> list[str]:
        values = DIALECTS[dialect]
        return [statement.format(**values) for statement in self.statements]


FLEET_STEPS: tuple[Step, ...] = (
    Step(1, "fleet events (bans and unbans shared by every host)", (
        """CREATE TABLE IF NOT EXISTS fleet_events (
            id {serial},
            kind TEXT NOT NULL,
            ip TEXT NOT NULL,
            jail TEXT NOT NULL,
            host TEXT NOT NULL,
            grp TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            banned_at {float} NOT NULL,
            expires_at {float},
            created_at {float} NOT NULL DEFAULT {now},
            lifted_at {float}
        )""",
        "CREATE INDEX IF NOT EXISTS fleet_events_created ON fleet_events (created_at)",
        "CREATE INDEX IF NOT EXISTS fleet_events_ip ON fleet_events (ip, id)",
    )),
)


class Migrator:
    """Runs the steps a database lacks; ``execute`` and ``query`` are the engine's own."""

    def __init__(self, dialect: str, execute: Callable[[str, Sequence[object]], None],
                 query: Callable[[str, Sequence[object]], list[tuple[object, ...]]],
                 meta_table: str) -> None:
        self.dialect = dialect
        self._execute = execute
        self._query = query
        self.meta = meta_table

    def current(self) -> int:
        self._execute(f"CREATE TABLE IF NOT EXISTS {self.meta} "
                      "(key TEXT PRIMARY KEY, value TEXT NOT NULL)", ())
        rows = self._query(f"SELECT value FROM {self.meta} WHERE key = 'schema_version'", ())
        return int(str(rows[0][0])) if rows else 0

    def pending(self, steps: Sequence[Step]) -> list[Step]:
        have = self.current()
        return [step for step in steps if step.version > have]

    def apply(self, steps: Sequence[Step]) -> list[int]:
        """Apply what is missing (the caller holds the transaction); returns versions."""
        done: list[int] = []
        for step in self.pending(steps):
            for statement in step.sql(self.dialect):
                self._execute(statement, ())
            self._execute(f"DELETE FROM {self.meta} WHERE key = 'schema_version'", ())
            self._execute(f"INSERT INTO {self.meta} (key, value) VALUES ('schema_version', "
                          f"{self._param()})", (str(step.version),))
            done.append(step.version)
        return done

    def _param(self) -> str:
        return "?" if self.dialect == "sqlite" else "%s"


def latest(steps: Sequence[Step]) -> int:
    return max((step.version for step in steps), default=0)
