#!/usr/bin/env python3
"""Scale of state (issue 6, point 4): start-up and memory with a large store.

Builds (once, reused with --reuse) a store holding 100,000 active bans and a 10-million-row
ban history, then measures, each in a fresh process:

* ``store``: what the daemon does with the store before it can ban (open + migrate, load
  the active bans into the ledger), and what bantime.increment costs per repeat ban (the
  address's past bans read from the history when it happens);
* ``daemon`` (root; ``--daemon``): ``tailban run`` in its own network namespace on that
  store: seconds until it answers ``ping`` with all 100,000 bans in the kernel set, and
  its RSS then;
* ``counting``: RSS of one jail counting 100,000 distinct addresses (one failure each,
  none reaching maxretry), against the same process before.

    python3 bench/state.py [--bans 100000] [--history 10000000] [--reuse] [--daemon]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))


def rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hwm_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def address(n: int) -> str:
    return f"{10 + (n >> 24) % 200}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def build(path: Path, bans: int, history: int) -> None:
    from tailban.stores.sqlite import SqliteStore

    if path.exists():
        path.unlink()
    SqliteStore(str(path)).close()  # schema at the current version
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    now = time.time()
    rng = random.Random(6)
    cols = [row[1] for row in db.execute("PRAGMA table_info(ban_history)")]
    print(f"ban_history columns: {cols}", file=sys.stderr)
    batch = 200_000
    started = time.monotonic()
    for start in range(0, history, batch):
        rows = []
        for _ in range(start, min(history, start + batch)):
            t = now - 365 * 86400 * rng.random()
            rows.append(("sshd", address(rng.randrange(3_000_000)), t, t + 600, t + 600, 5,
                         "Failed password for root from x port 1 ssh2", "log"))
        db.executemany("INSERT INTO ban_history (jail, ip, banned_at, expires_at, ended_at, "
                       "failures, line, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.commit()
        print(f"  history {start + len(rows):,} ({time.monotonic() - started:.0f} s)",
              file=sys.stderr)
    rows = [("sshd", address(50_000_000 + n), now, now + 7 * 86400, 5, "x", "log")
            for n in range(bans)]
    db.executemany("INSERT INTO bans (jail, ip, banned_at, expires_at, failures, line, source) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO ban_history (jail, ip, banned_at, expires_at, failures, line, "
                   "source) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def measure_store(path: str, increment: bool) -> dict[str, float]:
    """Run in a child: the daemon's store work before it can ban."""
    base = rss_mib()
    t0 = time.perf_counter()
    from tailban.bans.ledger import BanLedger
    from tailban.stores.sqlite import SqliteStore

    store = SqliteStore(path)
    opened = time.perf_counter()
    bans = store.load_bans()
    ledger = BanLedger(bans)
    loaded = time.perf_counter()
    result = {"open_s": opened - t0, "load_bans_s": loaded - opened, "total_s": loaded - t0,
              "bans": len(ledger), "rss_mib": rss_mib(), "rss_before_mib": base}
    if increment:  # what a repeat ban costs: its past bans are read when it happens
        from tailban.stores.sqlite import PastBans

        past = PastBans(store, "sshd")
        rng = random.Random(3)
        probes = [address(rng.randrange(3_000_000)) for _ in range(2000)]
        t1 = time.perf_counter()
        found = sum(past.get(ip) for ip in probes)
        result["past_bans_lookup_us"] = (time.perf_counter() - t1) / len(probes) * 1e6
        result["past_bans_found"] = found
    store.close()
    return result


def measure_counting(addresses: int) -> dict[str, float]:
    from tailban.bans.ledger import BanLedger
    from tailban.config.load import load_config

    confdir = Path(os.environ["TB_CONF"])
    config = load_config(str(confdir)).jails["sshd"]
    from tailban.jails.jail import Jail

    jail = Jail(config, BanLedger())
    now = time.time()
    before = rss_mib()
    chunk: list[bytes] = []
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime(now))
    for n in range(addresses):
        chunk.append(f"{stamp} h sshd[{n % 30000}]: Failed password for root from "
                     f"{address(n)} port 4 ssh2\n".encode())
        if len(chunk) == 10_000:
            jail.feed(b"".join(chunk), now)
            chunk = []
    if chunk:
        jail.feed(b"".join(chunk), now)
    return {"addresses": len(jail.policy.window), "rss_before_mib": before,
            "rss_after_mib": rss_mib(), "rss_delta_mib": rss_mib() - before}


def child(kind: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], check=True,
                         capture_output=True, text=True).stdout
    return dict(json.loads(out.splitlines()[-1]))


def measure_daemon(work: Path, store: Path) -> dict[str, float]:
    from netns_daemon import daemon_in_netns

    conf = work / "conf"
    shutil.rmtree(conf, ignore_errors=True)
    conf.mkdir(parents=True)
    db = work / "daemon.sqlite3"
    shutil.copy(store, db)
    (conf / "tailban.conf").write_text(f"[Definition]\nsocket = {work}/t.sock\n"
                                       f"dbfile = {db}\nloglevel = WARNING\n")
    log = work / "auth.log"
    log.write_text("")
    (conf / "jail.conf").write_text(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\n")
    with daemon_in_netns(conf, "tbstate") as daemon:
        while daemon.run("ping").returncode != 0:
            if daemon.proc.poll() is not None or time.monotonic() - daemon.started > 120:
                raise RuntimeError("daemon did not start")
            time.sleep(0.02)
        ready = time.monotonic() - daemon.started
        listed = daemon.run("nft", "-j", "list", "set", "inet", "tailban", "sshd-v4").stdout
        elements = sum(len(item["set"].get("elem", [])) for item in json.loads(listed)["nftables"]
                       if "set" in item)
        pids = subprocess.run(["pgrep", "-f", f"{conf} run"], capture_output=True,
                              text=True).stdout.split()
        rss = max((rss_mib(p) for p in pids), default=0.0)
        hwm_ready = max((hwm_mib(p) for p in pids), default=0.0)
        # the listing commands over 100,000 bans: the daemon's answer alone (read off the
        # socket), the CLI's wall time, and what the daemon keeps afterwards
        began = time.monotonic()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(work / "t.sock"))
            client.sendall(b'{"cmd":"banned","args":{}}\n')
            answer = 0
            while part := client.recv(1 << 20):
                answer += len(part)
        answer_s = time.monotonic() - began
        began = time.monotonic()
        listing = daemon.run("banned", "--json")
        banned_s = time.monotonic() - began
        if listing.returncode != 0 or len(json.loads(listing.stdout)) != elements:
            raise RuntimeError(f"banned --json did not list the {elements} bans: "
                               f"{listing.returncode} {listing.stderr[-500:]!r}")
        began = time.monotonic()
        daemon.run("status")
        status_s = time.monotonic() - began
        hwm = max((hwm_mib(p) for p in pids), default=0.0)
        after = max((rss_mib(p) for p in pids), default=0.0)
        return {"ready_s": ready, "kernel_elements": elements, "rss_mib": rss,
                "hwm_mib_at_ready": hwm_ready, "banned_answer_s": answer_s,
                "banned_answer_mb": answer / 1e6, "banned_json_cli_s": banned_s,
                "status_s": status_s, "rss_mib_after_banned": after,
                "hwm_mib_after_banned": hwm}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--work", default="/var/tmp/tbstate")
    ap.add_argument("--bans", type=int, default=100_000)
    ap.add_argument("--history", type=int, default=10_000_000)
    ap.add_argument("--addresses", type=int, default=100_000)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--daemon", action="store_true", help="also start the daemon (root)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (measure_store(rest[0], rest[1] == "on") if kind == "store"
                  else measure_counting(int(rest[0])))
        print(json.dumps(result))
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store.sqlite3"
    if not (args.reuse and store.exists()):
        started = time.monotonic()
        build(store, args.bans, args.history)
        print(f"built {store} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    size = store.stat().st_size / 2**20
    conf = work / "count-conf"
    conf.mkdir(exist_ok=True)
    (conf / "jail.conf").write_text("[sshd]\nenabled = true\nlogpath = /var/log/auth.log\n"
                                    "maxretry = 5\nfindtime = 1h\n")
    os.environ["TB_CONF"] = str(conf)
    results: dict[str, object] = {"store_mib": round(size), "bans": args.bans,
                                  "history": args.history}
    runs = [child("store", str(store), "on") for _ in range(3)]
    results["store"] = min(runs, key=lambda r: r["total_s"])
    results["counting"] = child("counting", str(args.addresses))
    if args.daemon:
        results["daemon"] = measure_daemon(work, store)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
