#!/usr/bin/env python3
"""Cost of a ban in each Linux firewall backend, in one batch and one spawn at a time.

For every backend (nftables, iptables with ipset, iptables-rules, route) this measures, each
time in a private network namespace that it creates with ``ip netns add`` and always deletes:

1. one ``apply`` of a FirewallBatch of 10,000 distinct IPv4 bans (total s, us per ban);
2. the per-ban cost of a small batch (100 bans, median of 5) with 0, 10k and 50k bans
   already in place (iptables-rules is capped at 10k: one rule per ban gets slow);
3. for comparison, one spawned command per ban on the same kernel objects, as fail2ban and
   sshguard do it (``nft add element``, ``ipset add``, ``iptables-legacy -I``,
   ``ip route replace``; median of 50 spawns), see ``../shared/bench/fw_cost.py``;
4. the TCP connect rate of an unbanned client through 10,000 bans (two namespaces joined by
   a veth pair, as ``../shared/bench/packet_path.py`` does).

The backend itself runs in a worker process started with ``ip netns exec NS`` that refuses
to work in the host's namespace; it builds the backend exactly as the daemon does
(``make_backend(kind)``: libnftables in-process, python-iptables in-process), so no figure
includes an ``ip netns exec`` spawn that the daemon would not pay.

  sudo python3 bench/firewall.py            # full run, a few minutes
  sudo python3 bench/firewall.py --small    # smoke run: 1,000 bans, no 50k step
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

KINDS = ("nftables", "iptables", "iptables-rules", "route")
JAIL = "bench"
TABLE = "tailban"
SERVER_IP, CLIENT_IP, PORT = "10.213.0.1", "10.213.0.2", 22
RULES_CAP = 10_000
DEFAULT_JSON = Path("/var/tmp/tbbench/firewall.json")


def address(index: int) -> str:
    """The index-th of 2**24 distinct, well spread IPv4 addresses in 11.0.0.0/8."""
    mixed = (index * 2654435761) % (1 << 24)  # odd multiplier: a bijection mod 2**24
    return str(ipaddress.IPv4Address((11 << 24) + mixed))


# -- worker side: runs inside a namespace -------------------------------------------------


def netns_id() -> str:
    return os.readlink("/proc/self/ns/net")  # "net:[inode]"


def in_private_netns() -> bool:
    """True when this process's namespace is not the parent's (passed in TBFW_HOST_NETNS)."""
    host = os.environ.get("TBFW_HOST_NETNS")
    return bool(host) and netns_id() != host


class Worker:
    """One backend in the current (private) namespace, with a cursor over fresh addresses."""

    def __init__(self, kind: str) -> None:
        if not in_private_netns():
            raise SystemExit("worker refuses to run in the host's network namespace")
        from tailban.firewall.base import JailFirewall
        from tailban.firewall.registry import make_backend

        self.kind = kind
        self.backend = make_backend(kind, table=TABLE)
        self.jail = JailFirewall(JAIL, ("22",), "tcp", False, "drop")
        self.backend.start([self.jail])
        self.cursor = 0
        self.existing = 0

    def fresh(self, count: int) -> list[str]:
        ips = [address(i) for i in range(self.cursor, self.cursor + count)]
        self.cursor += count
        return ips

    def apply(self, count: int) -> float:
        """Apply ``count`` new bans in one batch; the seconds ``apply`` took."""
        from tailban.core.events import Ban
        from tailban.firewall.base import FirewallBatch

        now = time.time()
        batch = FirewallBatch()
        for ip in self.fresh(count):
            batch.ban(Ban(JAIL, ip, now, now + 86400, 5, "bench"))
        t0 = time.perf_counter()
        self.backend.apply(batch, now)
        elapsed = time.perf_counter() - t0
        self.existing += count
        return elapsed

    def spawn_argv(self, ip: str) -> list[str]:
        if self.kind == "nftables":
            return ["nft", "add", "element", "inet", TABLE, f"{JAIL}-v4",
                    f"{{ {ip} timeout 86400s }}"]
        if self.kind == "iptables":
            return ["ipset", "add", self.backend.set_name(JAIL, 4), ip, "timeout", "86400",
                    "-exist"]
        if self.kind == "iptables-rules":  # the backend's tables are the legacy ones
            return ["iptables-legacy", "-w", "-I", self.backend.chain_name(JAIL), "1", "-s",
                    ip, "-j", "DROP"]
        return ["ip", "route", "replace", "blackhole", ip, "proto", "242"]

    def spawns(self, count: int) -> list[float]:
        times = []
        for ip in self.fresh(count):
            argv = self.spawn_argv(ip)
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        self.existing += count
        return times

    def count(self) -> int:
        """Bans the kernel holds (route: every blackhole route, the spawned ones too)."""
        if self.kind == "route":  # list() only reports the routes the backend made
            out = subprocess.run(["ip", "-4", "route", "show", "type", "blackhole"],
                                 check=True, capture_output=True, text=True).stdout
            return len(out.splitlines())
        return len(self.backend.list().get(JAIL, ()))


def worker_measure(kind: str, bulk: int, levels: list[int], small: int, repeats: int,
                   spawns: int) -> dict:
    w = Worker(kind)
    out: dict = {"kind": kind, "levels": []}
    runner = getattr(getattr(w.backend, "runner", None), "kind", None)
    if runner:
        out["nft_runner"] = runner
    if bulk:
        seconds = w.apply(bulk)
        out["bulk"] = {"bans": bulk, "seconds": seconds, "us_per_ban": 1e6 * seconds / bulk,
                       "listed": w.count()}
    for level in levels:
        if level > w.existing:
            w.apply(level - w.existing)  # untimed top-up
        start = w.existing
        per_ban = [1e6 * w.apply(small) / small for _ in range(repeats)]
        spawn = [1e6 * s for s in w.spawns(spawns)]
        out["levels"].append({
            "level": level, "existing_at_start": start, "batch": small, "repeats": repeats,
            "batch_us_per_ban_median": statistics.median(per_ban),
            "batch_us_per_ban_all": per_ban,
            "spawn_us_median": statistics.median(spawn), "spawn_us_max": max(spawn),
            "spawns": spawns})
    out["listed_at_end"] = w.count()
    out["expected_at_end"] = w.existing
    return out


def worker_serve(kind: str, bans: int) -> None:
    """Load ``bans`` bans, say so on stdout, then accept connections until killed."""
    loaded = 0.0
    if kind != "none":
        w = Worker(kind)
        loaded = w.apply(bans)
    elif not in_private_netns():
        raise SystemExit("worker refuses to run in the host's network namespace")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((SERVER_IP, PORT))
    srv.listen(4096)
    print(json.dumps({"ready": True, "load_seconds": loaded}), flush=True)
    while True:
        conn, _ = srv.accept()
        conn.close()


def worker_client(connects: int) -> dict:
    lat = []
    t0 = time.perf_counter()
    for _ in range(connects):
        a = time.perf_counter()
        s = socket.create_connection((SERVER_IP, PORT), timeout=5)
        # RST on close: no TIME_WAIT, so thousands of connects never run out of ports
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        lat.append(time.perf_counter() - a)
    wall = time.perf_counter() - t0
    lat.sort()
    return {"connects": connects, "per_s": connects / wall,
            "p50_us": 1e6 * statistics.median(lat), "p95_us": 1e6 * lat[int(0.95 * len(lat))]}


# -- parent side: namespaces, always deleted ------------------------------------------------


class Namespaces:
    """Named network namespaces and child processes, all removed by ``close``."""

    def __init__(self) -> None:
        self.tag = f"tbfw{os.getpid() % 100000}"
        self.names: list[str] = []
        self.children: list[subprocess.Popen] = []
        self.serial = 0

    def add(self, label: str) -> str:
        self.serial += 1
        name = f"{self.tag}-{label}{self.serial}"
        self.names.append(name)  # before creating: a half-made one is deleted too
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.run(name, ["ip", "link", "set", "lo", "up"])
        return name

    def argv(self, ns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def run(self, ns: str, argv: list[str]) -> str:
        done = subprocess.run(self.argv(ns, argv), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])} in {ns}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def delete(self, ns: str) -> None:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if ns in self.names:
            self.names.remove(ns)

    def close(self) -> None:
        for child in self.children:  # only the processes this script started
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        self.children.clear()
        for ns in list(self.names):
            self.delete(ns)


def me(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def measure(nss: Namespaces, kind: str, bulk: int, levels: list[int], small: int,
            repeats: int, spawns: int) -> dict:
    ns = nss.add("m")
    try:
        out = nss.run(ns, me("--worker-measure", kind, "--bulk", str(bulk), "--levels",
                             ",".join(map(str, levels)), "--batch", str(small),
                             "--repeats", str(repeats), "--spawns", str(spawns)))
        return json.loads(out)
    finally:
        nss.delete(ns)


def connect_rate(nss: Namespaces, kind: str, bans: int, connects: int, repeats: int) -> dict:
    srv, cli = nss.add("s"), nss.add("c")
    try:
        a, b = f"{nss.tag}a", f"{nss.tag}b"
        subprocess.run(["ip", "link", "add", a, "netns", srv, "type", "veth", "peer", "name",
                        b, "netns", cli], check=True)
        nss.run(srv, ["ip", "addr", "add", f"{SERVER_IP}/30", "dev", a])
        nss.run(cli, ["ip", "addr", "add", f"{CLIENT_IP}/30", "dev", b])
        nss.run(srv, ["ip", "link", "set", a, "up"])
        nss.run(cli, ["ip", "link", "set", b, "up"])
        server = subprocess.Popen(nss.argv(srv, me("--worker-serve", kind, "--bulk",
                                                   str(bans))),
                                  stdout=subprocess.PIPE, text=True)
        nss.children.append(server)
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise RuntimeError(f"server for {kind} did not start")
        runs = [json.loads(nss.run(cli, me("--worker-client", str(connects))))
                for _ in range(repeats)]
        server.terminate()
        server.wait(timeout=10)
        return {"kind": kind, "bans": bans if kind != "none" else 0, "runs": runs,
                "per_s_median": statistics.median(r["per_s"] for r in runs),
                "p50_us_median": statistics.median(r["p50_us"] for r in runs)}
    finally:
        nss.close()  # the server is dead or killed here; both namespaces go


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def table(results: dict, bulk: int, levels: list[int]) -> str:
    cap = results["rules_cap"]
    names = [f"{n // 1000}k" if n >= 1000 else str(n) for n in [0, *levels]]
    head = (["backend", f"{bulk // 1000}k in 1 batch (s)", "µs/ban"]
            + [f"batch of {results['batch']} @{n} (µs/ban)" for n in names]
            + [f"1 spawn/ban @{n} (µs)" for n in names]
            + [f"connects/s, {bulk // 1000}k bans"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    conn = {row["kind"]: row for row in results.get("connect", [])}
    none = conn.get("none")
    lines_none = f"(no bans: {fmt(none['per_s_median'], 0)}/s)" if none else ""
    for kind in results["kinds"]:
        row = results["backends"].get(kind)
        if row is None:
            continue
        by_level = {lv["level"]: lv for lv in row["zero"]["levels"] + row["main"]["levels"]}
        bulk_row = row["main"].get("bulk", {})
        label = kind + (" (ipset)" if kind == "iptables" else "")
        cells = [label, fmt(bulk_row.get("seconds"), 3), fmt(bulk_row.get("us_per_ban"))]
        for key in ("batch_us_per_ban_median", "spawn_us_median"):
            for n in [0, *levels]:
                lv = by_level.get(n)
                if lv is None and n in row.get("capped", []):
                    cells.append(f"— (capped at {cap:,})")
                else:
                    cells.append(fmt(lv[key] if lv else None))
        cells.append(fmt(conn[kind]["per_s_median"], 0) if kind in conn else "—")
        lines.append("| " + " | ".join(cells) + " |")
    if lines_none:
        lines.append("")
        lines.append(f"Connect rate without any backend {lines_none}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="1,000 bans, no 50k step")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--batch", type=int, default=100, help="bans per small batch")
    ap.add_argument("--repeats", type=int, default=5, help="small batches per level")
    ap.add_argument("--spawns", type=int, default=50, help="single-ban spawns per level")
    ap.add_argument("--connects", type=int, default=3000)
    ap.add_argument("--connect-repeats", type=int, default=3)
    ap.add_argument("--no-connect", action="store_true", help="skip the connect rate")
    ap.add_argument("--rules-cap", type=int, default=RULES_CAP,
                    help="highest existing-ban level for iptables-rules (default %(default)s)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    # worker modes (run inside a namespace by this script)
    ap.add_argument("--worker-measure", metavar="KIND", help=argparse.SUPPRESS)
    ap.add_argument("--worker-serve", metavar="KIND", help=argparse.SUPPRESS)
    ap.add_argument("--worker-client", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--bulk", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--levels", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker_measure:
        levels = [int(x) for x in args.levels.split(",") if x]
        print(json.dumps(worker_measure(args.worker_measure, args.bulk, levels, args.batch,
                                        args.repeats, args.spawns)))
        return 0
    if args.worker_serve:
        worker_serve(args.worker_serve, args.bulk)
        return 0
    if args.worker_client:
        print(json.dumps(worker_client(args.worker_client)))
        return 0

    if os.geteuid() != 0:
        print("run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    bulk = 1_000 if args.small else 10_000
    levels = [bulk] if args.small else [10_000, 50_000]
    if args.small:
        args.connects, args.connect_repeats = min(args.connects, 500), 1
    kinds = [k for k in args.kinds.split(",") if k]
    results: dict = {"kinds": kinds, "bulk": bulk, "levels": [0, *levels],
                     "batch": args.batch, "repeats": args.repeats, "spawns": args.spawns,
                     "rules_cap": args.rules_cap, "backends": {}, "connect": [],
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    os.environ["TBFW_HOST_NETNS"] = netns_id()  # the workers refuse to run in it
    nss = Namespaces()
    try:
        for kind in kinds:
            mine = [n for n in levels if kind != "iptables-rules" or n <= args.rules_cap]
            capped = [n for n in levels if n not in mine]
            if capped:
                print(f"{kind}: existing-ban levels {capped} skipped, capped at {args.rules_cap} "
                      "(one rule per ban: the 50k top-up alone takes too long)", flush=True)
            t0 = time.perf_counter()
            zero = measure(nss, kind, 0, [0], args.batch, args.repeats, args.spawns)
            main_ = measure(nss, kind, bulk, mine, args.batch, args.repeats, args.spawns)
            results["backends"][kind] = {"zero": zero, "main": main_, "capped": capped}
            b = main_["bulk"]
            print(f"{kind:15s} {b['bans']} bans in one batch: {b['seconds']:.3f} s "
                  f"({b['us_per_ban']:.1f} µs/ban; listed {b['listed']})", flush=True)
            for lv in zero["levels"] + main_["levels"]:
                print(f"{kind:15s} @{lv['existing_at_start']:6d}: batch of {lv['batch']} "
                      f"{lv['batch_us_per_ban_median']:9.1f} µs/ban, one spawn per ban "
                      f"{lv['spawn_us_median']:9.1f} µs", flush=True)
            if main_["listed_at_end"] != main_["expected_at_end"]:
                print(f"{kind:15s} WARNING: kernel lists {main_['listed_at_end']} bans, "
                      f"expected {main_['expected_at_end']}", flush=True)
            print(f"{kind:15s} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if not args.no_connect:
            for kind in ["none", *kinds]:
                row = connect_rate(nss, kind, bulk, args.connects, args.connect_repeats)
                results["connect"].append(row)
                print(f"connect {kind:15s} bans={row['bans']:6d} "
                      f"{row['per_s_median']:8.0f}/s p50={row['p50_us_median']:7.1f} µs",
                      flush=True)
    except KeyboardInterrupt:
        print("interrupted: deleting the namespaces", file=sys.stderr)
        return 130
    finally:
        nss.close()

    print()
    text = table(results, bulk, levels)
    print(text)
    results["table"] = text
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
