"""End to end: bans survive a daemon restart in the kernel, expire there without the
daemon, leave with ``stop --flush``; CLI bans and unbans are in the kernel on return."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from conftest import DaemonHandle, syslog_line, wait_for
from e2e_support import (
    A4,
    B4,
    B6,
    S_A4,
    S_B4,
    S_B6,
    WAIT,
    World,
    append,
    banned,
    world_fixture,  # noqa: F401 (the `world` fixture)
)

pytestmark = pytest.mark.root

OFFLINE = "10.200.9.9"  # fails while the daemon is stopped (needs no route)


def failed_password(ip: str, pid: int) -> str:
    return syslog_line(f"sshd[{pid}]: Failed password for root from {ip} port {40000 + pid} ssh2")


def sshd_jail(logpath: str, bantime: str = "10m") -> str:
    return ("[sshd]\nenabled = true\nport = 22\n"
            f"logpath = {logpath}\nmaxretry = 3\nfindtime = 10m\nbantime = {bantime}\n")


def start_banned(world: World, make_daemon: Callable[..., DaemonHandle],
                 bantime: str = "10m") -> DaemonHandle:
    """Listener on S:22, a daemon in S, and A banned in sshd through three log lines."""
    world.listen(22)
    auth_log = world.tmp / "auth.log"
    auth_log.write_text(syslog_line("sshd[100]: Server listening on 0.0.0.0 port 22."))
    daemon = make_daemon(sshd_jail(str(auth_log), bantime), ns=world.s)
    daemon.start()
    assert world.reachable(world.a, S_A4, 22)
    append(auth_log, "".join(failed_password(A4, pid) for pid in (101, 102, 103)))
    world.wait_banned("sshd-v4", A4)
    return daemon


def test_restart_never_lets_a_banned_address_through(world: World, make_daemon) -> None:
    daemon = start_banned(world, make_daemon)
    auth_log = world.tmp / "auth.log"
    (row,) = banned(daemon)
    assert row["ip"] == A4
    attacker = world.prober(world.a, S_A4, 22)
    control = world.prober(world.b, S_B4, 22)
    try:
        assert wait_for(lambda: attacker.attempts >= 5 and control.attempts >= 5, WAIT)
        started = time.monotonic()
        daemon.stop()
        # the kernel table stays while no daemon runs
        assert A4 in world.elements("sshd-v4")
        # failures logged while no daemon runs are read from the saved position
        append(auth_log, "".join(failed_password(OFFLINE, pid) for pid in (201, 202, 203)))
        during = attacker.attempts
        daemon.start()
        restart_seconds = time.monotonic() - started
        after = attacker.attempts
        assert wait_for(lambda: attacker.attempts >= after + 10, WAIT)
    finally:
        attacker.stop()
        control.stop()
    assert attacker.successes == 0, (
        f"A connected {attacker.successes} times of {attacker.attempts} during the restart "
        f"({restart_seconds:.2f}s)")
    assert after > during, "no probe ran while the daemon was starting"
    assert attacker.attempts >= 15
    # the probes themselves work: B got through every time
    assert control.attempts >= 10 and control.successes == control.attempts, control.results

    # After the restart the ban is the same one, with its original expiry.
    world.wait_banned("sshd-v4", OFFLINE)
    again, offline = banned(daemon)
    assert (again["jail"], again["ip"]) == ("sshd", A4)
    assert (offline["jail"], offline["ip"]) == ("sshd", OFFLINE)
    assert again["banned_at"] == pytest.approx(row["banned_at"], abs=0.01)
    assert again["expires_at"] == pytest.approx(row["expires_at"], abs=0.01)
    remaining = row["expires_at"] - time.time()
    assert world.elements("sshd-v4")[A4]["expires"] == pytest.approx(remaining, abs=3)
    assert not world.reachable(world.a, S_A4, 22)

    # `stop --flush` removes the table before it returns: A gets in again.
    done = daemon.cli("stop", "--flush")
    assert "flushed" in done.stdout, done.stdout
    assert not world.table_exists(), world.nft("list", "ruleset").stdout
    assert world.reachable(world.a, S_A4, 22)
    daemon.stop()  # reap the process


def test_kernel_expires_a_ban_without_the_daemon(world: World, make_daemon) -> None:
    daemon = start_banned(world, make_daemon, bantime="2s")
    element = world.elements("sshd-v4")[A4]
    assert 1 <= element["timeout"] <= 2, element
    (row,) = banned(daemon)
    daemon.stop()
    stopped = time.time()
    assert stopped < row["expires_at"], f"stopping took {stopped - row['banned_at']:.2f}s"
    assert A4 in world.elements("sshd-v4"), "the ban left the kernel with the daemon"
    assert not world.reachable(world.a, S_A4, 22, timeout=0.2)

    assert wait_for(lambda: world.elements("sshd-v4") == {}, 2 + WAIT, 0.05), (
        world.elements("sshd-v4"))
    gone_after = time.time() - row["banned_at"]
    assert gone_after >= 1.5, f"element gone after {gone_after:.2f}s, bantime is 2s"
    assert world.table_exists(), "the table must stay: only the element timed out"
    assert world.reachable(world.a, S_A4, 22)
    assert "Unban" not in daemon.log.read_text(), "the daemon, not the kernel, unbanned"

    # `stop --flush` without a daemon still removes the table.
    done = daemon.cli("stop", "--flush")
    assert "not running" in done.stdout, done.stdout
    assert not world.table_exists()


def test_cli_ban_and_unban_are_in_the_kernel_on_return(world: World, make_daemon) -> None:
    world.listen(22)
    auth_log = world.tmp / "auth.log"
    auth_log.write_text("")
    daemon: DaemonHandle = make_daemon(sshd_jail(str(auth_log)), ns=world.s)
    daemon.start()
    assert world.reachable(world.b, S_B4, 22)

    done = daemon.cli("ban", "sshd", B4)
    assert "warning" not in done.stdout, done.stdout
    assert B4 in world.elements("sshd-v4")
    assert not world.reachable(world.b, S_B4, 22)
    assert world.reachable(world.b, S_B6, 22), "an IPv4 ban must not touch IPv6"
    assert world.reachable(world.a, S_A4, 22)

    done = daemon.cli("unban", B4)
    assert B4 not in world.elements("sshd-v4")
    assert world.reachable(world.b, S_B4, 22), "unban returned before the kernel had it"

    done = daemon.cli("ban", "sshd", B6, "--bantime", "1h")
    assert "warning" not in done.stdout, done.stdout
    assert world.elements("sshd-v6")[B6]["timeout"] == pytest.approx(3600, abs=5)
    assert not world.reachable(world.b, S_B6, 22)
    assert world.reachable(world.b, S_B4, 22)
    (row,) = banned(daemon)
    assert row["expires_at"] - row["banned_at"] == pytest.approx(3600, abs=1)

    # someone deletes the table: `reconcile` puts the ban back before it returns
    world.nft("delete", "table", "inet", "tailban")
    assert world.reachable(world.b, S_B6, 22)
    daemon.cli("reconcile")
    assert B6 in world.elements("sshd-v6")
    assert not world.reachable(world.b, S_B6, 22)

    daemon.cli("unban", B6, "--jail", "sshd")
    assert world.elements("sshd-v6") == {}
    assert world.reachable(world.b, S_B6, 22)
    assert daemon.cli("unban", B6, check=False).returncode != 0, "unban of an unbanned IP"
