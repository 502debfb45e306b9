"""End to end: postfix SASL failure lines -> tailban (postfix-sasl jail) -> nftables in S.

No postfix runs: real smtpd warning lines are appended to the followed mail.log, and
listeners stand in for the mail ports. The jail blocks only its own ports (multiport):
A loses 25, 465 and 587 but keeps 2525; B keeps everything.
"""

from __future__ import annotations

import pytest

from conftest import DaemonHandle, syslog_line, wait_for
from e2e_support import (
    A4,
    A6,
    B4,
    S_A4,
    S_A6,
    S_B4,
    S_B6,
    WAIT,
    World,
    append,
    banned,
    banned_ips,
    jail_status,
    world_fixture,  # noqa: F401 (the `world` fixture)
)

pytestmark = pytest.mark.root

JAIL_PORTS = (25, 465, 587)
OTHER_PORT = 2525


def sasl_failure(ip: str, pid: int = 1234, mech: str = "LOGIN") -> str:
    return syslog_line(f"postfix/smtpd[{pid}]: warning: unknown[{ip}]: SASL {mech} "
                       "authentication failed: UGFzc3dvcmQ6", host="mail")


def postfix_jail(logpath: str) -> str:
    return ("[postfix-sasl]\nenabled = true\nfilter = postfix[mode=auth]\n"
            f"port = 25, 465, 587\nlogpath = {logpath}\n"
            "maxretry = 3\nfindtime = 10m\nbantime = 10m\n")


def test_postfix_sasl_failures_block_the_mail_ports(world: World, make_daemon) -> None:
    world.listen(*JAIL_PORTS, OTHER_PORT)
    mail_log = world.tmp / "mail.log"
    mail_log.write_text(syslog_line("postfix/master[1000]: daemon started -- version 3.7.11",
                                    host="mail"))
    daemon: DaemonHandle = make_daemon(postfix_jail(str(mail_log)), ns=world.s)
    daemon.start()
    for port in (*JAIL_PORTS, OTHER_PORT):
        assert world.reachable(world.a, S_A4, port), port

    # Two failures of B and two of A: nobody is banned.
    append(mail_log, sasl_failure(B4, 2001) + sasl_failure(A4, 2002, "PLAIN")
           + sasl_failure(B4, 2003) + sasl_failure(A4, 2004))
    assert wait_for(lambda: jail_status(daemon, "postfix-sasl")["total_failures"] >= 4,
                    WAIT, 0.05)
    assert jail_status(daemon, "postfix-sasl")["total_failures"] == 4
    assert banned(daemon) == []
    assert world.elements("postfix-sasl-v4") == {}

    # A's third failure bans A on the jail's ports only.
    append(mail_log, sasl_failure(A4, 2005))
    world.wait_banned("postfix-sasl-v4", A4)
    assert banned_ips(daemon) == {A4}
    assert [r["jail"] for r in banned(daemon)] == ["postfix-sasl"]
    assert set(world.elements("postfix-sasl-v4")) == {A4}
    for port in JAIL_PORTS:
        assert not world.reachable(world.a, S_A4, port), f"banned A still reaches {port}"
        assert world.reachable(world.b, S_B4, port), f"B lost port {port}"
    assert world.reachable(world.a, S_A4, OTHER_PORT), "a port outside the jail was blocked"

    # IPv6: the same for A's IPv6 address (postfix writes it bare inside the brackets).
    append(mail_log, "".join(sasl_failure(A6, 3000 + i, "CRAM-MD5") for i in range(3)))
    world.wait_banned("postfix-sasl-v6", A6)
    assert not world.reachable(world.a, S_A6, 25)
    assert not world.reachable(world.a, S_A6, 587)
    assert world.reachable(world.a, S_A6, OTHER_PORT)
    assert world.reachable(world.b, S_B6, 25)

    # unban restores every port.
    daemon.cli("unban", A4)
    daemon.cli("unban", A6)
    assert world.elements("postfix-sasl-v4") == {}
    assert world.elements("postfix-sasl-v6") == {}
    for port in JAIL_PORTS:
        assert wait_for(lambda p=port: world.reachable(world.a, S_A4, p), WAIT, 0.05), port
    assert world.reachable(world.a, S_A6, 465)
    assert banned(daemon) == []
