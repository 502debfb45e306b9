#!/usr/bin/env python3
"""What storing a storm's failures costs on a store that already holds weeks of them.

The daemon writes every counted failure to the raw history (``[history] raw``, 30 days by
default) on its main thread. ``e2e_tailban.py``'s burst starts on an empty store, where
any index is in memory; a host under attack for a month holds millions of raw rows. This
script fills the real store's ``failures`` table with ``--rows`` rows (about 100,000 a day
for 30 days by default, from 100,000 addresses), then times ``SqliteStore.record`` of a
storm: ``--storm`` failures from new addresses in chunk-sized transactions, as the daemon
writes them, after one chunk's warm-up.

It measures twice: with today's schema, then with the ``(ip, t)`` index schema step 9
dropped put back, which is what every stored failure cost before. Then what the index
bought: the incident evidence of one address that failed all month (one row in 1,000,
so each day's span in the roll-ups is the whole day), read with and without it.

    python3 bench/history_writes.py [--rows 3000000] [--storm 30000] [--work DIR]

About a minute for the default sizes (building the store is most of it).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DAY = 86400.0
LINE = ("Nov 19 10:00:22 web1 sshd[163851]: Failed password for invalid user mysql from "
        "{ip} port 37546 ssh2")
CHUNK_FAILURES = 1430  # failures in one 128 KiB chunk of the burst's log
PERSISTENT = "192.0.2.99"  # one failure in every 1,000, all month: every day's span is whole


def address(rng: random.Random) -> str:
    return (f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
            f"{rng.randint(1, 254)}")


def fill(path: Path, rows: int, start: float) -> None:
    from tailban.stores.sqlite import SqliteStore

    SqliteStore(str(path)).close()  # the schema at the current version
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    rng = random.Random(6)
    pool = [address(rng) for _ in range(100_000)]
    step = 30 * DAY / max(rows, 1)
    batch = 100_000
    for first in range(0, rows, batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO failures VALUES (?, 'sshd', ?, 'root', "
                       "'failed_password', 1, ?)",
                       ((start + i * step, ip, LINE.format(ip=ip)) for i, ip in
                        ((i, PERSISTENT if i % 1000 == 0 else rng.choice(pool))
                         for i in range(first, min(rows, first + batch)))))
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def storm(path: Path, failures: int, at: float, seed: int) -> float:
    """Seconds ``SqliteStore.record`` spends storing the storm's failures."""
    from tailban.core.events import Failure
    from tailban.stores.sqlite import SqliteStore

    rng = random.Random(seed)
    store = SqliteStore(str(path))
    spent = 0.0
    try:
        for first in range(0, failures, CHUNK_FAILURES):
            chunk = []
            for i in range(first, min(failures, first + CHUNK_FAILURES)):
                ip = address(rng)
                chunk.append(("sshd", Failure(ip, ip, at + i * 1e-4, "root", "failed_password",
                                              1, LINE.format(ip=ip))))
            began = time.perf_counter()
            store.record(failures=chunk)
            spent += time.perf_counter() - began
    finally:
        store.close()
    return spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=3_000_000, help="raw failures already stored")
    ap.add_argument("--storm", type=int, default=30_000, help="failures of the storm")
    ap.add_argument("--work", default="/var/tmp/tailban-bench-history")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    path = work / "store.sqlite3"
    start = time.time() - 30 * DAY
    began = time.perf_counter()
    fill(path, args.rows, start)
    built = time.perf_counter() - began
    # each measurement after one chunk's warm-up (the first write to a store just opened
    # reads its pages from the file, about 0.3 s at 3M rows, once)
    storm(path, CHUNK_FAILURES, time.time(), seed=1)
    now_schema = storm(path, args.storm, time.time() + 1, seed=2)
    db = sqlite3.connect(path)
    db.execute("CREATE INDEX failures_ip ON failures (ip, t)")
    db.close()
    storm(path, CHUNK_FAILURES, time.time() + 2, seed=3)
    with_index = storm(path, args.storm, time.time() + 3, seed=4)
    db = sqlite3.connect(path)
    stored = db.execute("SELECT count(*) FROM failures").fetchone()[0]
    if stored != args.rows + 2 * (args.storm + CHUNK_FAILURES):
        raise SystemExit(f"{stored} failures in the store, not all the storms' ones")
    # What the index cost back: an incident's evidence for an address seen all month
    # (tailban incident, incident.auto), read with and without it.
    from datetime import UTC

    from tailban.stores.history import roll_up
    from tailban.tools.incident import build_incident

    began = time.perf_counter()
    roll_up(db, time.time() + 3600)
    rolled_s = time.perf_counter() - began
    timings = []
    for _ in range(2):
        began = time.perf_counter()
        incident = build_incident(db, PERSISTENT, start - DAY, UTC)
        timings.append(time.perf_counter() - began)
        db.execute("DROP INDEX IF EXISTS failures_ip")
    db.close()
    with_index_incident, incident_s = timings
    result = {"stored_rows": args.rows, "storm_failures": args.storm,
              "build_s": round(built, 1),
              "store_storm_s": round(now_schema, 3),
              "store_storm_with_address_index_s": round(with_index, 3),
              "roll_up_s": round(rolled_s, 1), "incident_lines": len(incident.lines),
              "incident_s": round(incident_s, 3),
              "incident_with_address_index_s": round(with_index_incident, 3)}
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.storm} failures stored on top of {args.rows} raw rows "
              f"(store built in {built:.0f} s):")
        print(f"  schema now (no address index): {now_schema:.3f} s")
        print(f"  with the (ip, t) index of schema step 4: {with_index:.3f} s")
        print(f"incident evidence of an address seen all month ({len(incident.lines)} "
              f"lines, after a {rolled_s:.0f} s roll-up):")
        print(f"  schema now: {incident_s:.3f} s")
        print(f"  with the index: {with_index_incident:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
