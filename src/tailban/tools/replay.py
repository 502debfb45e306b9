"""``tailban replay``: a backlog through the daemon's own pipeline, offline.

Same chunked reading, same filters, same counting as the daemon; "now" is each failure's
own time, so the result is what a daemon that had followed the log live would have banned.
Nothing touches the firewall or the daemon's database.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
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
    follower = FileFollower(path, from_start=True, chunk_size=_CHUNK, read_budget=4 * _CHUNK)
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
           progress: Callable[[ReplayResult], None] | None = None,
           store: SqliteStore | None = None) -> ReplayResult:
    """Run every jail over every path; bans come back in the order they were decided.

    With ``store``, each chunk's failures, logins and bans are recorded as the daemon
    records them, so reports can be made from a backlog. ``progress`` is called after
    each chunk with the result so far.
    """
    ledger = BanLedger()
    runners = [Jail(config, ledger) for config in jails]
    result = ReplayResult()
    wall = time.time() if now is None else now
    started = time.perf_counter()
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
            if progress is not None:
                result.seconds = time.perf_counter() - started
                progress(result)
    result.seconds = time.perf_counter() - started
    if store is not None:
        roll_up(store.connection, time.time())
    return result


class ProgressBar:
    """A tqdm bar over the bytes of the logs, with lines/s and bans (for a terminal)."""

    def __init__(self, paths: list[str], out: IO[str]) -> None:
        from tqdm import tqdm

        sizes = [os.path.getsize(p) if p != "-" and os.path.isfile(p) else None for p in paths]
        total = None if None in sizes else sum(s or 0 for s in sizes)
        self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                         file=out, mininterval=0.2, leave=True, dynamic_ncols=True)
        self._done = 0

    def __call__(self, result: ReplayResult) -> None:
        rate = result.lines / max(result.seconds, 1e-9)
        self._bar.set_postfix_str(f"{result.lines:,} lines, {rate:,.0f} lines/s, "
                                  f"{len(result.bans):,} bans", refresh=False)
        self._bar.update(result.bytes_read - self._done)
        self._done = result.bytes_read

    def close(self) -> None:
        self._bar.close()


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
