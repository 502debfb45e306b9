#!/usr/bin/env python3
"""`tailban report` wall time on a year of history (default 10M failures), built directly.

    python3 bench/report.py --failures 10000000 --db /var/tmp/tbbench/report-year.sqlite3

The store is filled the way a year of a busy server leaves it with the default retention:
hourly and daily roll-ups for 365 days, the raw failures (with their log lines) of the last
30 days, the ban history and enrichment facts of the banned addresses, and the report tables
the roll-up keeps (filled from those at the end, as schema step 8 does). Then it times the
report (text, JSON, HTML) from the command line, as an administrator runs it, prints the
file size and bytes per failure, and the roll-up's cost per hour on a copy of that store
(an hour of failures and bans added, then rolled up as the daemon does).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tailban.core.events import Ban, Failure, Unban  # noqa: E402
from tailban.stores.history import rebuild_report_tables, roll_up  # noqa: E402
from tailban.stores.sqlite import SqliteStore  # noqa: E402

USERS = ["root"] * 30 + ["admin", "test", "user", "oracle", "postgres", "ubuntu", "git",
                         "pi", "support", "mysql", "guest", "ftpuser", "deploy", "alice"]
COUNTRIES = [("CN", "China"), ("US", "United States"), ("RU", "Russia"), ("BR", "Brazil"),
             ("IN", "India"), ("VN", "Viet Nam"), ("DE", "Germany"), ("KR", "Korea"),
             ("JP", "Japan"), ("NL", "Netherlands")]


def build(path: Path, failures: int, seed: int) -> float:
    rng = random.Random(seed)
    if path.exists():
        path.unlink()
    store = SqliteStore(str(path))
    db = store.connection
    now = time.time()
    start = now - 365 * 86400
    per_day = failures // 365
    pool = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
            f"{rng.randrange(1, 255)}" for _ in range(300_000)]
    raw_from = now - 30 * 86400
    hour_rows: dict[tuple[int, str, str], int] = {}
    day_rows = []
    raw_rows = []
    bans = []
    for day in range(365):
        t0 = start + day * 86400
        # a few heavy hitters and a long tail of botnet addresses each day
        active = rng.sample(pool, 2000)
        weights = [50 if i < 40 else 1 for i in range(len(active))]
        picks = rng.choices(active, weights=weights, k=per_day)
        counts: dict[str, list[float]] = {}
        for ip in picks:
            t = t0 + rng.random() * 86400
            user = rng.choice(USERS)
            entry = counts.setdefault(ip, [0, t, t])
            entry[0] += 1
            entry[1] = min(entry[1], t)
            entry[2] = max(entry[2], t)
            if t >= raw_from:
                raw_rows.append((t, "sshd", ip, user, "failed_password", 1,
                                 f"Nov 23 10:00:00 web1 sshd[1234]: Failed password for {user}"
                                 f" from {ip} port 40000 ssh2"))
            else:
                key = (int(t // 3600), "sshd", user)
                hour_rows[key] = hour_rows.get(key, 0) + 1
        for ip, (n, first, last) in counts.items():
            if last < raw_from:
                day_rows.append((int(first // 86400), "sshd", ip, n, first, last))
            if n >= 5:
                bans.append(("sshd", ip, first, first + 3600, first + 3600))
    db.execute("BEGIN")
    db.executemany("INSERT INTO roll_hour_user VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                   "count = count + excluded.count",
                   [(h, j, u, n) for (h, j, u), n in hour_rows.items()])
    db.executemany("INSERT INTO roll_day_ip VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
                   "SET count = count + excluded.count", day_rows)
    db.executemany("INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, ?)", raw_rows)
    db.executemany("INSERT INTO ban_history (jail, ip, banned_at, expires_at, ended_at, "
                   "end_reason) VALUES (?, ?, ?, ?, ?, 'expired')", bans)
    db.execute("COMMIT")
    for ip in {b[1] for b in bans}:
        code, name = rng.choice(COUNTRIES)
        named = rng.random() < 0.2
        listed = rng.random() < 0.5
        store.save_enrichment(ip, now, json.dumps({
            "ip": ip, "fetched_at": now, "country_iso": code, "country_name": name,
            "rdns": ["h.example.net"] if named else [],
            "rdns_confirmed": ["h.example.net"] if named else [],
            "dnsbl": [{"zone": "zen.spamhaus.org"}] if listed else [],
            "dnsbl_checked": ["zen.spamhaus.org"]}), country=code, country_name=name,
            named=named, dnsbl_checked=True, dnsbl_zones="zen.spamhaus.org" if listed else "")
    db.execute("BEGIN")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('history_rolled_until', ?)",
               (str(float(int(raw_from // 3600) * 3600)),))
    # the first day of each address, which the roll-up keeps along with roll_day_ip
    db.execute("INSERT INTO addresses SELECT ip, min(day) FROM roll_day_ip GROUP BY ip "
               "ON CONFLICT (ip) DO UPDATE SET first_day = min(first_day, excluded.first_day)")
    db.execute("COMMIT")
    roll_up(db, now)  # the raw rows' completed hours, as the daemon would have
    # the roll-ups above were written directly: fill the report tables from them
    rebuild_report_tables(db)
    db.execute("VACUUM")
    store.close()
    return per_day * 365


def rollup_cost(path: Path, hours: int, seed: int) -> list[float]:
    """Seconds per roll_up() of one more hour (failures at the year's rate, bans, unbans,
    enrichment facts of the banned), on a copy of the store."""
    copy = path.with_name(path.name + ".rollup")
    shutil.copy(path, copy)
    rng = random.Random(seed)
    store = SqliteStore(str(copy))
    db = store.connection
    try:
        start = float(db.execute("SELECT value FROM meta WHERE key = 'history_rolled_until'"
                                 ).fetchone()[0]) + 3600
        roll_up(db, start)  # the hour under way when the store was built
        pool = [row[0] for row in db.execute("SELECT ip FROM addresses ORDER BY random() "
                                             "LIMIT 20000")]
        per_hour = max(1, int(db.execute("SELECT sum(count) FROM roll_hour_user"
                                          ).fetchone()[0] / (365 * 24)))
        pending: list[Unban] = []
        times = []
        for hour in range(hours):
            t0 = start + hour * 3600
            active = rng.sample(pool, 300) + [f"10.{hour % 250}.{i // 250}.{i % 250}"
                                              for i in range(30)]
            failures = [("sshd", Failure(ip, ip, t0 + rng.random() * 3600, rng.choice(USERS),
                                         "failed_password", 1, "Failed password for root"))
                        for ip in rng.choices(active, k=per_hour)]
            bans = [Ban("sshd", ip, t0 + rng.random() * 3600, t0 + 7200, 5)
                    for ip in active[:per_hour // 17 + 1]]
            store.record(failures=failures, bans=bans, unbans=pending)
            pending = [Unban("sshd", b.ip, (b.expires_at or t0) + 1) for b in bans]
            for ban in bans:
                code, name = rng.choice(COUNTRIES)
                store.save_enrichment(ban.ip, t0, "{}", country=code, country_name=name,
                                      named=rng.random() < 0.2, dnsbl_checked=True)
            began = time.perf_counter()
            roll_up(db, t0 + 3600 + 1)
            times.append(time.perf_counter() - began)
        return times
    finally:
        store.close()
        for leftover in copy.parent.glob(copy.name + "*"):
            leftover.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--failures", type=int, default=10_000_000)
    ap.add_argument("--db", type=Path, default=Path("/var/tmp/tbbench/report-year.sqlite3"))
    ap.add_argument("--reuse", action="store_true", help="keep an existing --db")
    ap.add_argument("--rollup-hours", type=int, default=6,
                    help="hours rolled up on a copy of the store to time the roll-up (0: skip)")
    args = ap.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    if not (args.reuse and args.db.exists()):
        began = time.perf_counter()
        total = build(args.db, args.failures, 1)
        print(f"built {args.db}: {total:,} failures in {time.perf_counter() - began:.0f} s")
    size = args.db.stat().st_size
    print(f"store size {size / 2**20:.0f} MiB for {args.failures:,} failures "
          f"({size / args.failures:.1f} bytes per failure, raw lines of 30 days included)")
    conf = args.db.parent / "report-conf"
    conf.mkdir(exist_ok=True)
    (conf / "jail.conf").write_text("[sshd]\nenabled = true\nlogpath = /dev/null\n")
    for fmt in ("text", "json", "html"):
        times = []
        for _ in range(3):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "tailban", "-c", str(conf), "report", "--db",
                            str(args.db), "--since", "1y", "--format", fmt, "--out",
                            os.devnull], check=True, env={**os.environ, "PYTHONPATH":
                                                          str(ROOT / "src")})
            times.append(time.perf_counter() - began)
        print(f"report --since 1y --format {fmt}: best {min(times):.2f} s, "
              f"worst {max(times):.2f} s (3 runs, whole command)")
    if args.rollup_hours > 0:
        rolled = rollup_cost(args.db, args.rollup_hours, 2)
        print(f"roll-up of one hour on this store: median {statistics.median(rolled) * 1000:.0f}"
              f" ms, worst {max(rolled) * 1000:.0f} ms ({len(rolled)} hours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
