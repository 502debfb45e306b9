"""End to end: real sshd -> real rsyslogd -> auth.log -> tailban -> nftables in S.

A fails to log in with a wrong password; after maxretry failures A's SYNs to S:22 are
dropped while B still connects; ``tailban unban`` gives A its access back. The same for
IPv6, where bans live in the jail's ``-v6`` set.
"""

from __future__ import annotations

import time

import pytest

from conftest import DaemonHandle, wait_for
from e2e_support import (
    A4,
    A6,
    S_A4,
    S_A6,
    S_B4,
    S_B6,
    WAIT,
    World,
    banned,
    banned_ips,
    jail_status,
    ssh_fail,
    start_sshd,
    world_fixture,  # noqa: F401 (the `world` fixture)
)

pytestmark = pytest.mark.root


def sshd_jail(logpath: str) -> str:
    return ("[sshd]\nenabled = true\nport = 22\n"
            f"logpath = {logpath}\nmaxretry = 3\nfindtime = 10m\nbantime = 10m\n")


def test_sshd_failures_ban_the_attacker_only(world: World, make_daemon) -> None:
    server = start_sshd(world)
    daemon: DaemonHandle = make_daemon(sshd_jail(str(server.auth_log)), ns=world.s)
    daemon.start()
    for host in (S_A4, S_A6, S_B4, S_B6):
        assert world.reachable(world.a if host in (S_A4, S_A6) else world.b, host, 22), host

    # Two failures: counted, nobody banned yet.
    for _ in range(2):
        ssh_fail(world, server, world.a, S_A4)
    assert wait_for(lambda: jail_status(daemon, "sshd")["total_failures"] >= 2, WAIT, 0.05)
    assert jail_status(daemon, "sshd")["total_failures"] == 2
    assert banned(daemon) == []
    assert world.elements("sshd-v4") == {}
    assert world.reachable(world.a, S_A4, 22)

    # The third one bans A's IPv4 address, in the kernel and in the daemon's list.
    before = time.time()
    ssh_fail(world, server, world.a, S_A4)
    world.wait_banned("sshd-v4", A4)
    assert world.elements("sshd-v6") == {}
    rows = banned(daemon)
    assert [(r["jail"], r["ip"]) for r in rows] == [("sshd", A4)]
    row = rows[0]
    assert row["failures"] >= 3
    assert before - 5 <= row["banned_at"] <= time.time() + 1
    assert row["expires_at"] == pytest.approx(row["banned_at"] + 600, abs=1)
    # the kernel element carries the remaining bantime
    assert world.elements("sshd-v4")[A4].get("timeout", 0) == pytest.approx(600, abs=5)

    assert not world.reachable(world.a, S_A4, 22), "banned A still reaches S:22 over IPv4"
    assert world.reachable(world.b, S_B4, 22), "B lost access although it never failed"
    assert world.reachable(world.a, S_A6, 22), "A's IPv6 address was never banned"

    # IPv6: three failures from A's IPv6 address ban it in sshd-v6.
    for _ in range(3):
        ssh_fail(world, server, world.a, S_A6)
    world.wait_banned("sshd-v6", A6)
    assert banned_ips(daemon, "sshd") == {A4, A6}
    assert not world.reachable(world.a, S_A6, 22), "banned A still reaches S:22 over IPv6"
    assert world.reachable(world.b, S_B6, 22), "B lost IPv6 access"
    assert world.reachable(world.b, S_B4, 22)

    # unban restores access, one address at a time.
    daemon.cli("unban", A4)
    assert A4 not in world.elements("sshd-v4")
    assert wait_for(lambda: world.reachable(world.a, S_A4, 22), WAIT, 0.05)
    assert not world.reachable(world.a, S_A6, 22), "unbanning A4 must not unban A6"
    daemon.cli("unban", A6, "--jail", "sshd")
    assert world.elements("sshd-v6") == {}
    assert wait_for(lambda: world.reachable(world.a, S_A6, 22), WAIT, 0.05)
    assert banned(daemon) == []

    # sshd itself still works for A: a new failure is logged and counted from zero.
    ssh_fail(world, server, world.a, S_A4)
    assert world.reachable(world.a, S_A4, 22)
    assert banned(daemon) == []
