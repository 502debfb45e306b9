"""Per-account counting (distributed attacks) and reset_on_success, in the pure core."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from tailban.bans.ledger import BanLedger
from tailban.config.load import load_config
from tailban.core.addresses import IgnoreList
from tailban.core.events import Failure
from tailban.jails.accounts import AccountWindow
from tailban.jails.jail import Jail
from tailban.jails.policy import JailPolicy, JailRules


def fail(ip: str, t: float, user: str | None = "user3") -> Failure:
    return Failure(ip, ip, t, user, "postfix:sasl", 1, "")


def rules(action: str = "alert", maxretry: int = 5) -> JailRules:
    return JailRules("postfix-sasl", maxretry, 600, 600, IgnoreList.parse("127.0.0.0/8"),
                     account_maxretry=10, account_findtime=5 * 86400, account_action=action)


def test_low_and_slow_botnet_alerts_once_per_window() -> None:
    """139 addresses, one failure each, spread over days (MailLogSentinel's pattern)."""
    policy = JailPolicy(rules(), BanLedger())
    events = [fail(f"198.51.{i // 250}.{i % 250}", i * 3000.0) for i in range(139)]
    assert policy.observe(events, now=None) == []  # no address reaches maxretry
    assert [len(a.addresses) for a in policy.alerts] == [10] * 13
    first = policy.alerts[0]
    assert first.user == "user3" and first.failures == 10 and first.time == 9 * 3000.0


def test_account_action_ban_bans_every_participant_but_ignored() -> None:
    policy = JailPolicy(rules("ban"), BanLedger())
    events = [fail(f"203.0.113.{i}", float(i)) for i in range(9)] + [fail("127.0.0.1", 9.0)]
    policy.observe(events[:9], now=None)
    bans = policy.observe(events[9:], now=None)
    assert policy.alerts == []  # 127.0.0.1 is ignored: never counted, 9 < 10
    bans = policy.observe([fail("203.0.113.200", 10.0)], now=None)
    assert sorted(b.ip for b in bans) == sorted(
        [f"203.0.113.{i}" for i in range(9)] + ["203.0.113.200"])
    assert all(b.source == "account" for b in bans)


def test_other_accounts_and_unnamed_failures_do_not_mix() -> None:
    window = AccountWindow("j", 3, 100)
    assert window.add("alice", "192.0.2.1", 0) is None
    assert window.add("bob", "192.0.2.2", 1) is None
    assert window.add("alice", "192.0.2.3", 2) is None
    assert window.add("alice", "192.0.2.4", 200) is None  # the first two left the window
    policy = JailPolicy(rules(), BanLedger())
    policy.observe([fail(f"192.0.2.{i}", float(i), user=None) for i in range(50)], now=None)
    assert policy.alerts == []


def test_reset_on_success_forgets_earlier_failures_only() -> None:
    policy = JailPolicy(JailRules("sshd", 3, 600, 600, IgnoreList()), BanLedger())
    policy.observe([fail("192.0.2.7", 1), fail("192.0.2.7", 2)], now=None)
    policy.forget("192.0.2.7")  # a successful login from the stale-password device
    assert policy.observe([fail("192.0.2.7", 3), fail("192.0.2.7", 4)], now=None) == []
    assert len(policy.observe([fail("192.0.2.7", 5)], now=None)) == 1


def test_jail_feed_success_line_resets_in_order(tmp_path: Path) -> None:
    """Through the real sshd filter: failures, an Accepted line, failures again."""
    (tmp_path / "jail.conf").write_text(
        "[sshd]\nenabled = true\nlogpath = /var/log/auth.log\nmaxretry = 3\n"
        "reset_on_success = true\n")
    config = load_config(str(tmp_path)).jails["sshd"]
    jail = Jail(config, BanLedger())
    lines = [
        "Nov 23 10:00:01 h sshd[1]: Failed password for alice from 192.0.2.7 port 1 ssh2",
        "Nov 23 10:00:02 h sshd[2]: Failed password for alice from 192.0.2.7 port 2 ssh2",
        "Nov 23 10:00:03 h sshd[3]: Accepted password for alice from 192.0.2.7 port 3 ssh2",
        "Nov 23 10:00:04 h sshd[4]: Failed password for alice from 192.0.2.7 port 4 ssh2",
        "Nov 23 10:00:05 h sshd[5]: Failed password for alice from 192.0.2.7 port 5 ssh2",
    ]
    now = datetime(2026, 11, 23, 12, 0).timestamp()
    result = jail.feed(("\n".join(lines) + "\n").encode(), now, replay=True)
    assert len(result.failures) == 4 and result.bans == []
    off = Jail(replace(config, reset_on_success=False), BanLedger())
    assert len(off.feed(("\n".join(lines) + "\n").encode(), now, replay=True).bans) == 1


def _events(filter_ref: str, text: str) -> list[object]:
    from tailban.filters.builtin import resolve_filter
    from tailban.filters.matcher import ChunkMatcher

    name, _, mode = filter_ref.partition(":")
    matcher = ChunkMatcher(resolve_filter(name, mode or None), None)
    return list(matcher.scan(text.encode(), datetime(2026, 11, 23).timestamp()))


def test_successful_logins_of_sshd_dovecot_and_postfix_carry_the_method() -> None:
    from tailban.core.events import Success

    cases = [
        ("sshd", "Nov 22 10:00:00 web1 sshd[42]: Accepted publickey for alice from "
                 "203.0.113.5 port 50000 ssh2: ED25519 SHA256:x\n", "alice", "publickey"),
        ("dovecot", "Nov 22 10:00:00 mx dovecot: imap-login: Login: user=<bob@example.org>, "
                    "method=PLAIN, rip=203.0.113.6, lip=192.0.2.1, mpid=31763, TLS\n",
         "bob@example.org", "PLAIN"),
        ("postfix:auth", "Nov 22 10:00:00 mx postfix/submission/smtpd[77]: 4B3C2D1: "
                         "client=mail.example.net[203.0.113.7], sasl_method=LOGIN, "
                         "sasl_username=carol\n", "carol", "LOGIN"),
    ]
    for filter_ref, line, user, method in cases:
        found = _events(filter_ref, line)
        assert len(found) == 1 and isinstance(found[0], Success), (filter_ref, found)
        assert (found[0].user, found[0].method) == (user, method)


def test_a_crafted_user_name_cannot_fake_a_login_for_another_address() -> None:
    crafted = ("Nov 22 10:00:00 mx dovecot: imap-login: Login: user=<x>, method=PLAIN, "
               "rip=192.0.2.99, y>, method=PLAIN, rip=203.0.113.9, lip=192.0.2.1\n")
    found = _events("dovecot", crafted)
    assert all(getattr(e, "ip", None) != "192.0.2.99" for e in found)
    postfix = ("Nov 22 10:00:00 mx postfix/smtpd[77]: 4B3C2D1: client=x[203.0.113.7], "
               "sasl_method=PLAIN, sasl_username=a, sasl_username=b client=y[192.0.2.99]\n")
    assert not any(getattr(e, "ip", None) == "192.0.2.99" for e in _events("postfix:auth",
                                                                           postfix))
