#!/usr/bin/env python3
"""Fleet sharing under load: N hosts publishing bans into one private PostgreSQL server.

    sudo python3 bench/fleet.py --hosts 10 --hosts 100 --seconds 20

Each simulated host publishes with tailban's own PostgresFleetStore (one transaction, one
advisory lock and one NOTIFY per batch) at ``--rate`` bans per minute, in batches of one
second. ``--readers`` of them also run tailban's FleetLink subscriber (LISTEN/NOTIFY, read
by id) and time every ban from its ``banned_at`` (the origin's decision) to its delivery.
Database load: commits, inserted rows and the CPU seconds of every postgres process over
the run. Prints a Markdown table; ``--json FILE`` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROCESSES = 4  # publisher processes; each runs its share of the hosts as threads
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from pg_server import PgServer  # noqa: E402
from tailban.config.model import FleetSettings  # noqa: E402
from tailban.daemon.fleet import open_store  # noqa: E402
from tailban.fleet.link import FleetLink  # noqa: E402
from tailban.fleet.policy import FleetDecisions, FleetJailRules, FleetRules  # noqa: E402
from tailban.stores.fleet import Outgoing, PostgresFleetStore  # noqa: E402


def postgres_cpu(server: PgServer) -> float:
    """CPU seconds of the postmaster and all its children so far."""
    pid_file = server.data / "postmaster.pid"
    master = int(pid_file.read_text().split()[0])
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        if int(entry) == master or ppid == master:
            total += (utime + stime) / tick
    return total


def db_counters(server: PgServer) -> tuple[int, int]:
    out = server.psql("SELECT xact_commit, tup_inserted FROM pg_stat_database "
                      "WHERE datname = 'postgres'")
    commits, inserted = out.strip().split("|")
    return int(commits), int(inserted)


def publisher(url: str, host: str, rate: float, stop: threading.Event,
              sent: list[int], errors: list[str]) -> None:
    store = PostgresFleetStore(url)
    per_batch = max(1, round(rate / 60))
    rng = random.Random(host)
    time.sleep(rng.random())  # hosts are not in step
    try:
        while not stop.is_set():
            now = time.time()
            batch = [Outgoing("ban", f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}."
                              f"{rng.randrange(1, 255)}", "sshd", "bench", now, now + 600)
                     for _ in range(per_batch)]
            try:
                store.publish(host, "", batch)
                sent[0] += len(batch)
            except Exception as exc:  # a benchmark counts errors, it does not stop on them
                errors.append(str(exc))
            stop.wait(max(0.0, 1.0 - (time.time() - now)))
    finally:
        store.close()


def publisher_process(url: str, hosts: list[str], rate: float, seconds: float,
                      result: Any) -> None:
    stop = threading.Event()
    sent = [0]
    errors: list[str] = []
    threads = [threading.Thread(target=publisher, args=(url, h, rate, stop, sent, errors),
                                daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(10)
    result.put((sent[0], len(errors)))


def run(server: PgServer, hosts: int, readers: int, rate: float, seconds: float) -> dict[str, Any]:
    url = server.url()
    server.psql("TRUNCATE fleet_events")
    latencies: list[float] = []
    lock = threading.Lock()

    def deliver(decisions: FleetDecisions) -> None:
        now = time.time()
        with lock:
            latencies.extend(now - b.banned_at for b in decisions.bans)

    links = []
    for i in range(readers):
        name = f"reader{i}"
        settings = FleetSettings(store=url, host=name)
        link = FleetLink(lambda listen, s=settings: open_store(s, listen),  # type: ignore[misc]
                         name, "", FleetRules(name, {"sshd": FleetJailRules("sshd")}),
                         deliver, lambda seqs: None)
        link.start(PostgresFleetStore(url).max_id(), [])
        links.append(link)
    time.sleep(1.0)
    names = [f"host{i}" for i in range(hosts)]
    result: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=publisher_process,
                                     args=(url, names[k::PROCESSES], rate, seconds, result))
             for k in range(min(PROCESSES, hosts))]
    cpu0, (commits0, inserted0), t0 = postgres_cpu(server), db_counters(server), time.time()
    for proc in procs:
        proc.start()
    totals = [result.get(timeout=seconds + 60) for _ in procs]
    for proc in procs:
        proc.join(10)
    sent = [sum(t[0] for t in totals)]
    errors = [""] * sum(t[1] for t in totals)
    time.sleep(1.0)  # let readers drain
    elapsed = time.time() - t0
    cpu1, (commits1, inserted1) = postgres_cpu(server), db_counters(server)
    for link in links:
        link.stop()
    lat = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

    return {
        "hosts": hosts, "readers": readers, "rate_per_host_per_min": rate,
        "seconds": round(elapsed, 1), "bans_published": sent[0],
        "bans_per_s": round(sent[0] / elapsed, 1), "errors": len(errors),
        "deliveries_timed": len(lat),
        "latency_ms_p50": pct(0.50), "latency_ms_p95": pct(0.95), "latency_ms_max": pct(1.0),
        "latency_ms_mean": round(statistics.fmean(lat) * 1000, 1) if lat else None,
        "db_commits_per_s": round((commits1 - commits0) / elapsed, 1),
        "db_rows_inserted_per_s": round((inserted1 - inserted0) / elapsed, 1),
        "db_cpu_cores": round((cpu1 - cpu0) / elapsed, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, action="append", help="hosts (repeatable)")
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0, help="bans per host per minute")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = args.hosts or [10, 100]
    server = PgServer(Path(tempfile.mkdtemp(prefix="tailban-pgbench-", dir="/var/tmp")))
    os.chmod(server.base, 0o755)
    results = []
    try:
        server.init()
        server.start()
        PostgresFleetStore(server.url()).migrate()
        for n in counts:
            results.append(run(server, n, min(args.readers, n), args.rate, args.seconds))
            print(json.dumps(results[-1]), flush=True)
    finally:
        server.stop("fast")
        server.remove()
    print("\n| hosts | bans/s published | propagation p50 / p95 / max (ms) | "
          "commits/s | rows/s | postgres CPU (cores) | errors |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['hosts']} | {r['bans_per_s']} | {r['latency_ms_p50']} / "
              f"{r['latency_ms_p95']} / {r['latency_ms_max']} | {r['db_commits_per_s']} | "
              f"{r['db_rows_inserted_per_s']} | {r['db_cpu_cores']} | {r['errors']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
