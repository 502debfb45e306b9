"""The pure core, driven with passed-in time: windows, ignoreip, bans, expiry."""

from __future__ import annotations

import pytest

from tailban.bans.ledger import BanLedger
from tailban.core.addresses import IgnoreList, normalise_ip, normalise_target
from tailban.core.durations import parse_duration
from tailban.core.events import Ban, Failure
from tailban.jails.policy import JailPolicy, JailRules
from tailban.jails.window import FailureWindow


def fail(ip: str, t: float, count: int = 1) -> Failure:
    return Failure(ip, ip, t, "root", "test", count, f"line at {t}")


def policy(maxretry: int = 3, findtime: float = 600, bantime: float = 600,
           ignore: str = "127.0.0.1/8 ::1") -> JailPolicy:
    return JailPolicy(JailRules("sshd", maxretry, findtime, bantime, IgnoreList.parse(ignore)),
                      BanLedger())


def test_window_is_exact_and_inclusive() -> None:
    w = FailureWindow(600)
    assert w.add("1.1.1.1", 1000) == 1
    assert w.add("1.1.1.1", 1400) == 2
    assert w.add("1.1.1.1", 1600) == 3  # 1000 is exactly findtime old: still inside
    assert w.add("1.1.1.1", 1601) == 3  # now 1000 has left
    assert w.count("2.2.2.2") == 0


def test_window_counts_weighted_and_out_of_order() -> None:
    w = FailureWindow(100)
    assert w.add("a", 50, count=3) == 3
    assert w.add("a", 40) == 4
    assert w.first_seen("a") == 40
    assert w.add("a", 145) == 4  # 40 leaves: 45 is the cutoff
    assert w.add("a", 151) == 2


def test_window_expire_bounds_memory() -> None:
    w = FailureWindow(60)
    for i in range(1000):
        w.add(f"10.0.{i // 256}.{i % 256}", 100)
    w.add("keep", 150)
    assert w.expire(now=161) == 1000
    assert w.addresses() == ["keep"]


def test_ban_at_maxretry_within_findtime_only() -> None:
    p = policy(maxretry=3, findtime=600)
    assert p.observe([fail("1.2.3.4", 0), fail("1.2.3.4", 500)], now=None) == []
    assert p.observe([fail("1.2.3.4", 601)], now=None) == []  # 0 left the window
    bans = p.observe([fail("1.2.3.4", 1100)], now=None)  # 500, 601, 1100
    assert [(b.ip, b.banned_at, b.expires_at, b.failures) for b in bans] == [
        ("1.2.3.4", 1100, 1700, 3)]


def test_failures_of_banned_address_do_not_reban() -> None:
    p = policy(maxretry=2, bantime=100)
    assert len(p.observe([fail("1.2.3.4", 0), fail("1.2.3.4", 1)], now=None)) == 1
    assert p.observe([fail("1.2.3.4", t) for t in range(2, 50)], now=None) == []
    assert p.counters.while_banned == 48
    # After the ban ends the address starts from zero again.
    assert p.observe([fail("1.2.3.4", 102)], now=None) == []
    assert len(p.observe([fail("1.2.3.4", 103)], now=None)) == 1


def test_ignoreip_is_never_counted_v4_v6_cidr() -> None:
    p = policy(maxretry=1, ignore="127.0.0.1/8 ::1 192.0.2.0/24, 2001:db8::/32")
    events = [fail(ip, 10) for ip in ("127.0.0.5", "::1", "192.0.2.77", "2001:db8:1::5")]
    assert p.observe(events, now=None) == []
    assert p.counters.ignored == 4
    assert [b.ip for b in p.observe([fail("2001:db9::1", 10)], now=None)] == ["2001:db9::1"]


def test_ipv6_and_ipv4_counted_separately() -> None:
    p = policy(maxretry=2)
    assert p.observe([fail("2001:db8::1", 1), fail("192.0.2.1", 2)], now=10) == []


def test_live_mode_ignores_backlog_older_than_findtime() -> None:
    p = policy(maxretry=2, findtime=60)
    now = 10_000
    assert p.observe([fail("5.5.5.5", now - 3600), fail("5.5.5.5", now - 3599)], now=now) == []
    assert p.counters.stale == 2
    bans = p.observe([fail("5.5.5.5", now - 5), fail("5.5.5.5", now - 1)], now=now)
    assert bans[0].banned_at == now and bans[0].expires_at == now + 600


def test_weighted_failure_bans_at_once() -> None:
    p = policy(maxretry=5)
    assert len(p.observe([fail("6.6.6.6", 1, count=5)], now=None)) == 1


def test_permanent_ban_and_ledger_expiry() -> None:
    ledger = BanLedger()
    forever = JailPolicy(JailRules("a", 1, 60, -1, IgnoreList()), ledger)
    short = JailPolicy(JailRules("b", 1, 60, 30, IgnoreList()), ledger)
    forever.observe([fail("1.1.1.1", 0)], now=0)
    short.observe([fail("1.1.1.1", 0), fail("2.2.2.2", 5)], now=5)
    assert ledger.get("a", "1.1.1.1").expires_at is None  # type: ignore[union-attr]
    assert ledger.next_expiry() == 35
    assert ledger.expire(34) == []
    ended = ledger.expire(35)
    assert sorted((u.jail, u.ip) for u in ended) == [("b", "1.1.1.1"), ("b", "2.2.2.2")]
    assert ledger.jails_of("1.1.1.1") == ["a"]
    assert ledger.next_expiry() is None


def test_ledger_keeps_bans_without_their_line_and_counts_them() -> None:
    ledger = BanLedger()
    ledger.add(Ban("sshd", "192.0.2.1", 10.0, 70.0, 3, "sshd[1]: Failed password ...", "log"))
    ledger.add(Ban("sshd", "192.0.2.1", 20.0, 80.0, 4, "again", "log"))  # re-ban replaces
    ledger.add(Ban("postfix", "192.0.2.1", 15.0, None, 5, "", "manual"))
    assert len(ledger) == 2
    kept = ledger.get("sshd", "192.0.2.1")
    assert kept == Ban("sshd", "192.0.2.1", 20.0, 80.0, 4, "", "log")
    assert sorted(b.jail for b in ledger) == ["postfix", "sshd"]
    assert ledger.in_jail("sshd") == [kept] and ledger.in_jail("nope") == []
    assert ledger.jails_of("192.0.2.1") == ["postfix", "sshd"]
    assert ledger.next_expiry() == 80.0  # the replaced ban's 70 s entry is stale
    assert ledger.remove("sshd", "192.0.2.1") == kept and ledger.remove("sshd", "192.0.2.1") is None
    assert len(ledger) == 1 and ledger.next_expiry() is None


def test_manual_ban_overrides_bantime() -> None:
    p = policy()
    ban = p.manual_ban("9.9.9.9", now=100, bantime=-1)
    assert ban.expires_at is None and ban.source == "manual"


def test_replay_a_day_in_microseconds() -> None:
    p = policy(maxretry=5, findtime=600)
    events = [fail(f"198.51.100.{i % 200}", float(i)) for i in range(86_400)]
    bans = p.observe(events, now=None)
    # Each address fails every 200 s: 4 failures in 600 s, never 5 -> no ban.
    assert bans == []
    # Every 100 s: the 5th failure (at +400 s) bans until +1000 s; the failure at exactly
    # +1000 s counts again (the ban has ended), so each address is banned every 1,000 s.
    p = policy(maxretry=5, findtime=600)
    events = [fail(f"198.51.100.{i % 100}", float(i)) for i in range(86_400)]
    bans = p.observe(events, now=None)
    per_ip = {ban.ip: 0 for ban in bans}
    for ban in bans:
        per_ip[ban.ip] += 1
    assert len(per_ip) == 100 and set(per_ip.values()) == {86}


@pytest.mark.parametrize(("text", "seconds"), [
    ("600", 600), ("10m", 600), ("1h", 3600), ("1d", 86400), ("1w", 604800),
    ("1h 30m", 5400), ("1.5h", 5400), ("2days", 172800)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_duration_forever_and_errors() -> None:
    assert parse_duration("-1", allow_forever=True) < 0
    for bad in ("-1", "ten", "10x", "", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(("raw", "expected"), [
    ("1.2.3.4", "1.2.3.4"), ("::ffff:1.2.3.4", "1.2.3.4"), ("192.030.0.6", "192.30.0.6"),
    ("2001:DB8::0:1", "2001:db8::1"), ("[2001:db8::1]", "2001:db8::1"),
    ("example.com", None), ("1.2.3.4.5", None), ("", None), ("1.2.3.256", None),
    ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255"), ("01.2.3.4", "1.2.3.4"),
    (" 1.2.3.4", "1.2.3.4"), ("1.2.3", None), ("1.2.3.4\n", "1.2.3.4")])
def test_normalise_ip(raw: str, expected: str | None) -> None:
    assert normalise_ip(raw) == expected


def test_ignorelist_ipv4_fast_path_agrees_with_ipaddress() -> None:
    ignore = IgnoreList.parse("127.0.0.1/8 10.0.0.0/8 192.168.1.5 ::1 2001:db8::/32")
    cases = {"127.5.5.5": True, "10.255.0.1": True, "11.0.0.1": False, "192.168.1.5": True,
             "192.168.1.6": False, "::1": True, "2001:db8::7": True, "2001:db9::7": False,
             "0.0.0.0": False, "not-an-ip": False}
    assert {ip: ip in ignore for ip in cases} == cases
    assert {ip: ip in ignore for ip in cases} == cases  # cached answers too


def test_ignorelist_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not-an-ip"):
        IgnoreList.parse("127.0.0.1 not-an-ip")


def test_banprefix_counts_and_bans_the_network() -> None:
    p = JailPolicy(JailRules("sshd", 3, 600, 600, IgnoreList.parse("::1"), prefix4=24,
                             prefix6=64), BanLedger())
    events = [fail("2001:db8:1:2::a", 1), fail("2001:db8:1:2:ffff::1", 2),
              fail("198.51.100.7", 3), fail("2001:db8:1:2::b", 4)]
    assert [b.ip for b in p.observe(events, now=None)] == ["2001:db8:1:2::/64"]
    assert p.observe([fail("198.51.100.8", 5), fail("198.51.100.9", 6)],
                     now=None)[0].ip == "198.51.100.0/24"


@pytest.mark.parametrize(("raw", "expected"), [
    ("198.51.100.7/24", "198.51.100.0/24"), ("2001:DB8::1/64", "2001:db8::/64"),
    ("192.0.2.1/32", "192.0.2.1"), ("::1/128", "::1"), ("10.0.0.0/33", None),
    ("nonsense/8", None), ("192.0.2.4", "192.0.2.4")])
def test_normalise_target(raw: str, expected: str | None) -> None:
    assert normalise_target(raw) == expected
