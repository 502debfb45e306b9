"""Three hosts share bans through a real PostgreSQL server.

Each host is a real daemon in its own network namespace with its own nftables table; the
server listens on a Unix socket that every namespace reaches through the filesystem. An
attacker namespace X is linked to host B, so a real packet proves B enforces a ban that
host A decided.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import DaemonHandle, Namespaces, syslog_line, wait_for
from e2e_support import World

X_ADDR, B_ADDR = "10.201.2.2", "10.201.2.1"
IGNORED_ON_C = "10.201.9.9"


def jails(logpath: Path, extra: str = "") -> str:
    return (f"[DEFAULT]\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\n\n"
            f"[sshd]\nenabled = true\nport = 22\nlogpath = {logpath}\n{extra}")


def fleet_section(pg: Any, host: str) -> str:
    return f"\n[fleet]\nstore = {pg.url()}\nhost = {host}\n"


def failures(ip: str, n: int = 3) -> str:
    return "".join(syslog_line(f"sshd[{300 + i}]: Failed password for root from {ip} port "
                               f"{41000 + i} ssh2") for i in range(n))


def status(daemon: DaemonHandle) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(daemon.cli("status", "--json").stdout)
    return result


def test_three_hosts_share_bans_unbans_and_survive_an_outage(
        netns: Namespaces, make_daemon: Callable[..., DaemonHandle], pg: Any,
        tmp_path: Path) -> None:
    ns_a, ns_b, ns_c, ns_x = (netns.add(n) for n in "ABCX")
    netns.link(ns_x, ns_b, [f"{X_ADDR}/24"], [f"{B_ADDR}/24"])
    # One World per host only for its nftables helpers; B's also runs the listener.
    hosts = {n: World(netns, tmp_path, ns, ns_x, ns_x)
             for n, ns in (("A", ns_a), ("B", ns_b), ("C", ns_c))}
    logs = {n: tmp_path / f"auth-{n}.log" for n in "ABC"}
    for path in logs.values():
        path.write_text("")
    daemons = {
        "A": make_daemon(jails(logs["A"]), ns=ns_a, name="A",
                         extra_daemon=fleet_section(pg, "hostA")),
        "B": make_daemon(jails(logs["B"]), ns=ns_b, name="B",
                         extra_daemon=fleet_section(pg, "hostB")),
        "C": make_daemon(jails(logs["C"], f"ignoreip = 127.0.0.1/8 {IGNORED_ON_C}\n"),
                         ns=ns_c, name="C", extra_daemon=fleet_section(pg, "hostC")),
    }
    try:
        for daemon in daemons.values():
            daemon.start()
        hosts["B"].listen(22)
        assert hosts["B"].reachable(ns_x, B_ADDR, 22)

        def linked(d: DaemonHandle) -> bool:
            fleet = status(d)["fleet"]
            return bool(fleet["publisher"]["connected"] and fleet["subscriber"]["connected"])

        assert wait_for(lambda: all(linked(d) for d in daemons.values()), 15, 0.1)

        # A brute force against A: banned on A, then on B and C.
        with logs["A"].open("a") as f:
            f.write(failures(X_ADDR))
        hosts["A"].wait_banned("sshd-v4", X_ADDR)
        started = time.monotonic()
        for n in "BC":
            hosts[n].wait_banned("sshd-v4", X_ADDR, timeout=5)
        seen_all = time.monotonic() - started
        lag_b = status(daemons["B"])["fleet"]["subscriber"]["lag"]
        print(f"fleet propagation: B lag {lag_b} s (decision on A -> applied on B); "
              f"A's set -> B's and C's sets seen after {seen_all:.3f} s")
        assert lag_b is not None and lag_b < 1.0
        assert not hosts["B"].reachable(ns_x, B_ADDR, 22), "B did not drop the fleet ban"
        rows = json.loads(daemons["B"].cli("banned", "--json").stdout)
        assert [(r["ip"], r["source"]) for r in rows] == [(X_ADDR, "fleet:hostA")]

        # ignoreip wins on C; the row is counted as rejected there, applied on B.
        assert daemons["A"].cli("ban", "sshd", IGNORED_ON_C).returncode == 0
        hosts["B"].wait_banned("sshd-v4", IGNORED_ON_C)
        assert wait_for(lambda: status(daemons["C"])["fleet"]["subscriber"]["rejected"] >= 1,
                        5, 0.1)
        assert not hosts["C"].in_set("sshd-v4", IGNORED_ON_C)

        # A forged row written straight into the database is rejected and logged.
        before = status(daemons["B"])["fleet"]["subscriber"]["rejected"]
        pg.psql("INSERT INTO fleet_events (kind, ip, jail, host, banned_at, expires_at) VALUES "
                "('ban', '10.201.2.9; nft flush ruleset', 'sshd', 'hostA', "
                "extract(epoch from now()), NULL); NOTIFY tailban_fleet")
        assert wait_for(lambda: status(daemons["B"])["fleet"]["subscriber"]["rejected"]
                        == before + 1, 5, 0.1)
        assert "not an address or network" in daemons["B"].log.read_text()
        assert hosts["B"].in_set("sshd-v4", X_ADDR)  # nothing else changed

        # unban --fleet on A clears all three.
        out = daemons["A"].cli("unban", X_ADDR, "--fleet").stdout
        assert "published to the fleet" in out
        assert wait_for(lambda: not any(hosts[n].in_set("sshd-v4", X_ADDR) for n in "ABC"),
                        5, 0.05)
        assert hosts["B"].reachable(ns_x, B_ADDR, 22)

        # The database dies: A still bans locally at once; the others catch up later.
        pg.stop("immediate")
        with logs["A"].open("a") as f:
            f.write(failures("10.201.2.3"))
        hosts["A"].wait_banned("sshd-v4", "10.201.2.3", timeout=5)
        assert wait_for(lambda: not status(daemons["A"])["fleet"]["publisher"]["connected"],
                        10, 0.1)
        assert status(daemons["A"])["fleet"]["publisher"]["outbox"] >= 1
        # C goes down too, and misses what is published while it is away.
        daemons["C"].stop()
        pg.start()
        for n in "B":
            hosts[n].wait_banned("sshd-v4", "10.201.2.3", timeout=40)
        with logs["A"].open("a") as f:
            f.write(failures("10.201.2.4"))
        hosts["B"].wait_banned("sshd-v4", "10.201.2.4", timeout=10)
        daemons["C"].start()
        for ip in ("10.201.2.3", "10.201.2.4"):
            hosts["C"].wait_banned("sshd-v4", ip, timeout=10)
        assert status(daemons["A"])["fleet"]["publisher"]["outbox"] == 0
    finally:
        for world in hosts.values():
            world.close()
