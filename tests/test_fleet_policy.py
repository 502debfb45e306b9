"""The judge of fleet rows: forged or malformed rows never reach the firewall."""

from __future__ import annotations

import pytest

from tailban.core.addresses import IgnoreList
from tailban.fleet.policy import FleetJailRules, FleetRules, judge

NOW = 1_800_000_000.0


def rules(**jail: object) -> FleetRules:
    sshd = FleetJailRules("sshd", ignoreip=IgnoreList.parse("10.0.0.0/8 192.0.2.7"),
                          **jail)  # type: ignore[arg-type]
    return FleetRules("me", {"sshd": sshd, "quiet": FleetJailRules("quiet", share="publish")})


def row(id_: object = 1, kind: object = "ban", ip: object = "203.0.113.5",
        jail: object = "sshd", host: object = "web1", grp: object = "",
        reason: object = "3 failures", banned_at: object = NOW - 1,
        expires_at: object = NOW + 600) -> tuple[object, ...]:
    return (id_, kind, ip, jail, host, grp, reason, banned_at, expires_at)


def test_a_good_row_becomes_a_ban_marked_with_its_origin() -> None:
    out = judge([row()], rules(), NOW)
    assert [(b.jail, b.ip, b.expires_at, b.source) for b in out.bans] == \
        [("sshd", "203.0.113.5", NOW + 600, "fleet:web1")]
    assert out.last_id == 1 and not out.rejected


@pytest.mark.parametrize("bad, reason", [
    (row(ip="203.0.113.5; reboot"), "not an address"),
    (row(ip="$(curl evil)"), "not an address"),
    (row(ip=12345), "not an address"),
    (row(ip="10.1.2.3"), "ignoreip"),
    (row(ip="10.0.0.0/7"), "ignoreip"),  # a network covering ignored space
    (row(ip="192.0.2.0/24"), "ignoreip"),
    (row(kind="drop table"), "unknown kind"),
    (row(host="web1\nBcc: x"), "bad host"),
    (row(host=""), "bad host"),
    (row(host=None), "bad host"),
    (row(jail="sshd; rm -rf /"), "bad jail"),
    (row(banned_at="yesterday"), "banned_at"),
    (row(banned_at=float("nan")), "banned_at"),
    (row(banned_at=NOW + 86400), "future"),
    (row(expires_at="never"), "expires_at"),
    (row(expires_at=NOW - 100, banned_at=NOW - 1), "expires_at"),
    (row(id_="7"), "id is not"),
    (("too", "short"), "malformed"),
])
def test_forged_rows_are_rejected_with_a_reason(bad: tuple[object, ...], reason: str) -> None:
    out = judge([bad], rules(), NOW)
    assert not out.bans and not out.unbans
    assert len(out.rejected) == 1 and reason in out.rejected[0].reason


def test_untrusted_hosts_are_rejected_and_groups_can_be_trusted() -> None:
    trusting = rules(trust=("web2", "group:mail"))
    out = judge([row(id_=1, host="web1"), row(id_=2, host="web2", ip="203.0.113.6"),
                 row(id_=3, host="mx1", grp="mail", ip="203.0.113.7")], trusting, NOW)
    assert [b.ip for b in out.bans] == ["203.0.113.6", "203.0.113.7"]
    assert [r.row_id for r in out.rejected] == [1]
    assert out.last_id == 3


def test_own_rows_expired_rows_and_foreign_jails_pass_quietly() -> None:
    out = judge([row(id_=1, host="me"), row(id_=2, expires_at=NOW - 0.5, banned_at=NOW - 60),
                 row(id_=3, jail="postfix"), row(id_=4, jail="quiet")], rules(), NOW)
    assert not out.bans and not out.rejected and out.passed == 4 and out.last_id == 4


def test_fleet_bantime_replaces_the_origins_expiry() -> None:
    out = judge([row(expires_at=None)], rules(fleet_bantime=3600.0), NOW)
    assert out.bans[0].expires_at == NOW - 1 + 3600
    forever = judge([row()], rules(fleet_bantime=-1.0), NOW)
    assert forever.bans[0].expires_at is None
    short = judge([row(banned_at=NOW - 120)], rules(fleet_bantime=60.0), NOW)
    assert not short.bans and short.passed == 1


def test_unbans_name_every_subscribing_jail_or_one() -> None:
    out = judge([row(id_=5, kind="unban", jail="", expires_at=None),
                 row(id_=6, kind="unban", jail="sshd", ip="2001:db8::1", expires_at=None)],
                rules(), NOW)
    assert [(u.ip, u.jails, u.host) for u in out.unbans] == [
        ("203.0.113.5", ("sshd",), "web1"), ("2001:db8::1", ("sshd",), "web1")]


def test_reasons_are_made_printable() -> None:
    out = judge([row(reason="x\r\nBcc: victim@example.org\x1b[2J" + "y" * 500)], rules(), NOW)
    reason = out.bans[0].line
    assert "\r" not in reason and "\n" not in reason and "\x1b" not in reason
    assert len(reason) <= 200


def test_addresses_are_normalised() -> None:
    out = judge([row(ip="2001:DB8:0:0::5")], rules(), NOW)
    assert out.bans[0].ip == "2001:db8::5"
