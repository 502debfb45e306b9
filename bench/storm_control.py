#!/usr/bin/env python3
"""Does the control socket answer during a storm? ``status`` and ``unban`` round trips.

Starts ``tailban run`` in a network namespace of its own (nftables there, never the host's),
bans --manual addresses by hand, then writes --storm addresses x 3 failure lines to the log
at once and, until every storm address is banned, sends ``status`` and ``unban`` (of one of
the hand-banned addresses, waiting for the kernel as the CLI does) over the control socket,
timing each round trip. The daemon's output goes to WORK/daemon.log. Prints JSON: round
trips (p50, p95, max), the slow_unban three of each with when they were sent, how many
answers came while the storm was still being banned, and how long the storm took.
Needs root.

    .venv/bin/python bench/storm_control.py --storm 10000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent / "shared" / "bench"))
sys.path.insert(0, str(REPO / "bench"))


def storm_lines(count: int, now: float) -> str:
    from gen_authlog import sshd_failure_lines

    lines: list[str] = []
    for n in range(count):
        ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}"
        lines += sshd_failure_lines(ip, 3, now, pid=1000 + n % 60000, port=20000 + n % 40000)
    return "\n".join(lines) + "\n"


def summary(samples: list[float]) -> dict[str, float | int]:
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
            "max_ms": round(ms[-1], 2)}


def measure(work: Path, storm: int, manual: int, every: float,
            extra_conf: str = "") -> dict[str, object]:
    from netns_daemon import daemon_in_netns

    from tailban.control.client import call

    shutil.rmtree(work, ignore_errors=True)
    conf = work / "conf"
    conf.mkdir(parents=True)
    sock = str(work / "t.sock")
    (conf / "tailban.conf").write_text(f"[Definition]\nsocket = {sock}\n"
                                       f"dbfile = {work}/t.sqlite3\nloglevel = WARNING\n"
                                       + extra_conf.replace("\\n", "\n") + "\n")
    log = work / "auth.log"
    log.write_text("")
    (conf / "jail.conf").write_text(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\n"
                                    "maxretry = 3\nfindtime = 10m\nbantime = 1h\n")
    with daemon_in_netns(conf, "tbstorm", work / "daemon.log") as daemon:
        while not os.path.exists(sock) or _ping(sock) is False:
            if daemon.proc.poll() is not None or time.monotonic() - daemon.started > 60:
                raise RuntimeError("daemon did not start")
            time.sleep(0.02)
        manual_ips = [f"192.0.2.{n + 1}" for n in range(manual)]
        for ip in manual_ips:
            call(sock, "ban", jail="sshd", ip=ip)
        text = storm_lines(storm, time.time())
        status_rtt: list[float] = []
        unban_rtt: list[float] = []
        during = 0
        banned = 0
        slow_unban: list[tuple[float, float, int]] = []
        slow_status: list[tuple[float, float, int]] = []
        start = time.monotonic()
        t_start = time.perf_counter()
        with log.open("a") as f:
            f.write(text)
        while banned < storm + len(manual_ips) - len(unban_rtt):
            if time.monotonic() - start > 120:
                raise RuntimeError(f"storm not banned in 120 s ({banned} bans)")
            t = time.perf_counter()
            status = call(sock, "status")
            status_rtt.append(time.perf_counter() - t)
            banned = int(status["jails"]["sshd"]["currently_banned"])
            slow_status.append((round(status_rtt[-1] * 1000, 1), round(t - t_start, 3), banned))
            if manual_ips:
                t = time.perf_counter()
                call(sock, "unban", ip=manual_ips.pop())
                unban_rtt.append(time.perf_counter() - t)
                slow_unban.append((round(unban_rtt[-1] * 1000, 1), round(t - t_start, 3), banned))
                if banned < storm:
                    during += 1
            time.sleep(every)
        storm_s = time.monotonic() - start
        return {"storm_addresses": storm, "storm_banned_s": round(storm_s, 3),
                "answers_during_storm": during, "status": summary(status_rtt),
                "unban": summary(unban_rtt),
                "slow_unban": {what: [{"ms": ms, "at_s": at, "bans_then": n}
                                   for ms, at, n in sorted(samples, reverse=True)[:3]]
                            for what, samples in (("status", slow_status), ("unban", slow_unban))}}


def _ping(sock: str) -> bool:
    from tailban.control.client import CommandFailed, DaemonUnavailable, call

    try:
        call(sock, "ping", timeout=2)
    except (DaemonUnavailable, CommandFailed):
        return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/var/tmp/tbstorm")
    ap.add_argument("--storm", type=int, default=10000, help="addresses, 3 failures each")
    ap.add_argument("--manual", type=int, default=50, help="hand bans to unban during it")
    ap.add_argument("--every", type=float, default=0.01, help="seconds between requests")
    ap.add_argument("--conf", default="", help="extra tailban.conf text ('\\n' for new lines)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (a network namespace and nftables)", file=sys.stderr)
        return 2
    print(json.dumps(measure(Path(args.work), args.storm, args.manual, args.every,
                                 args.conf), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
