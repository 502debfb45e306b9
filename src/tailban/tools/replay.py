"""``tailban replay``: a backlog through the daemon's own pipeline, offline.

Same chunked reading, same filters, same counting as the daemon; "now" is each failure's
own time, so the result is what a daemon that had followed the log live would have banned.
Nothing touches the firewall or the daemon's database.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from tailban.bans.ledger import BanLedger
from tailban.config.model import JailConfig
from tailban.core.events import Ban
from tailban.jails.jail import Jail
from tailban.sources.follower import FileFollower
from tailban.stores.history import roll_up
from tailban.stores.sqlite import SqliteStore

_CHUNK = 4 << 20


@dataclass(slots=True)
class ReplayResult:
    bytes_read: int = 0
    lines: int = 0
    failures: int = 0
    bans: list[Ban] = field(default_factory=list)
    seconds: float = 0.0


def chunks_of(path: str) -> Iterator[bytes]:
    """Whole-line chunks of a file (``-``: standard input), the last line even unterminated."""
    if path == "-":
        stream = sys.stdin.buffer
        rest = b""
        while block := stream.read(_CHUNK):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                yield data[:cut]
        if rest:
            yield rest + b"\n"
        return
    follower = FileFollower(path, from_start=True, chunk_size=_CHUNK)
    try:
        if follower.error:
            raise OSError(follower.error)
        while True:
            got = follower.read()
            if not got:
                break
            yield from got
        yield from follower.read_final()
        if follower.error:
            raise OSError(follower.error)
    finally:
        follower.close()


def replay(paths: list[str], jails: list[JailConfig], *, now: float | None = None,
           progress: IO[str] | None = None, store: SqliteStore | None = None) -> ReplayResult:
    """Run every jail over every path; bans come back in the order they were decided.

    With ``store``, each chunk's failures, logins and bans are recorded as the daemon
    records them, so reports can be made from a backlog.
    """
    ledger = BanLedger()
    runners = [Jail(config, ledger) for config in jails]
    result = ReplayResult()
    wall = time.time() if now is None else now
    started = time.perf_counter()
    last_report = started
    for path in paths:
        for chunk in chunks_of(path):
            result.bytes_read += len(chunk)
            result.lines += chunk.count(b"\n")
            for jail in runners:
                fed = jail.feed(chunk, wall, replay=True)
                result.failures += sum(f.count for f in fed.failures)
                result.bans.extend(fed.bans)
                if store is not None:
                    ignored = jail.config.ignoreip
                    store.record(fed.bans, failures=[
                        (jail.name, f) for f in fed.failures
                        if f.ip is not None and f.ip not in ignored],
                        successes=[(jail.name, x) for x in fed.successes])
            if progress is not None and time.perf_counter() - last_report > 0.2:
                last_report = time.perf_counter()
                rate = result.lines / max(last_report - started, 1e-9)
                progress.write(f"\r{path}: {result.lines:,} lines, {len(result.bans):,} bans, "
                               f"{rate:,.0f} lines/s")
                progress.flush()
    result.seconds = time.perf_counter() - started
    if store is not None:
        roll_up(store.connection, time.time())
    if progress is not None:
        progress.write("\n")
    return result


def ban_record(ban: Ban) -> dict[str, object]:
    return {"ban": ban.ip, "jail": ban.jail, "epoch": ban.banned_at,
            "time": datetime.fromtimestamp(ban.banned_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "failures": ban.failures,
            "until": None if ban.expires_at is None else ban.expires_at}


def write_report(result: ReplayResult, out: IO[str], as_json: bool) -> None:
    if as_json:
        for ban in result.bans:
            out.write(json.dumps(ban_record(ban)) + "\n")
        out.write(json.dumps({"summary": {
            "lines": result.lines, "failures": result.failures, "bans": len(result.bans),
            "addresses": len({b.ip for b in result.bans}), "seconds": round(result.seconds, 3),
            "lines_per_s": round(result.lines / max(result.seconds, 1e-9))}}) + "\n")
        return
    for ban in result.bans:
        rec = ban_record(ban)
        out.write(f"{rec['time']}  ban {ban.ip:<39} {ban.jail}  ({ban.failures} failures)\n")
    rate = result.lines / max(result.seconds, 1e-9)
    out.write(f"{result.lines:,} lines, {result.failures:,} failures, {len(result.bans):,} bans "
              f"of {len({b.ip for b in result.bans}):,} addresses in {result.seconds:.2f} s "
              f"({rate:,.0f} lines/s)\n")
