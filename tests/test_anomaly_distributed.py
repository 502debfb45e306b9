"""Distributed attacks: many addresses of one network spraying many accounts."""

from __future__ import annotations

import json
import random

import pytest

from tailban.anomaly import distributed
from tailban.anomaly.distributed import (
    MAX_ACCOUNT,
    SLOW_CONFIG,
    DistributedConfig,
    DistributedDetector,
    LayeredDetector,
    NetAlert,
    clean_account,
)


def spray(det: DistributedDetector, ips: list[str], users: list[str], start: float = 0.0,
          step: float = 10.0, asn: int | None = None) -> list[NetAlert]:
    """One failure per (ip, user) pair in turn, ``step`` seconds apart."""
    alerts: list[NetAlert] = []
    for i, user in enumerate(users):
        alerts += det.observe(start + i * step, ips[i % len(ips)], user, asn)
    return alerts


def users(n: int) -> list[str]:
    return [f"user{i}" for i in range(n)]


def test_one_try_per_address_from_a_slash24_is_one_alert() -> None:
    det = DistributedDetector()
    ips = [f"203.0.113.{i}" for i in range(1, 31)]
    alerts = spray(det, ips, users(30), step=15)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.network == "203.0.113.0/24" and alert.asn is None
    assert alert.ban_target == ("203.0.113.0/24",)
    assert alert.failures == 20 and alert.accounts == 20 and alert.address_count == 20
    assert set(alert.addresses) == {f"203.0.113.{i}" for i in range(1, 21)}
    assert alert.addresses[:2] == ("203.0.113.1", "203.0.113.2")  # ties: address order
    assert len(alert.account_examples) == 5 and alert.account_examples[0].startswith("user")
    assert alert.first == 0 and alert.last == 19 * 15
    assert alert.reasons == ("20 addresses of 203.0.113.0/24 tried 20 different accounts "
                             "in 5 min (20 failures)")


def test_same_volume_from_scattered_networks_is_not_an_attack_on_one() -> None:
    det = DistributedDetector()
    ips = [f"198.{i}.{i * 7 % 256}.{i + 1}" for i in range(60)]
    assert spray(det, ips, users(60), step=5) == []
    assert len(det) == 60


def test_one_address_many_accounts_is_left_to_the_jail() -> None:
    det = DistributedDetector()
    assert spray(det, ["203.0.113.9"], users(100), step=1) == []


def test_many_addresses_one_account_is_not_a_spray() -> None:
    det = DistributedDetector()
    ips = [f"203.0.113.{i}" for i in range(1, 40)]
    assert spray(det, ips, ["root"] * 39, step=5) == []


def test_thresholds_are_configurable() -> None:
    det = DistributedDetector(window=60, min_addresses=3, min_accounts=3, min_failures=4)
    alerts = spray(det, ["192.0.2.1", "192.0.2.2", "192.0.2.3"], users(4), step=1)
    assert len(alerts) == 1 and alerts[0].failures == 4


def test_ipv6_groups_by_slash64() -> None:
    det = DistributedDetector()
    same64 = [f"2001:db8:1:2::{i:x}" for i in range(1, 26)]
    alerts = spray(det, same64, users(25), step=5)
    assert [a.network for a in alerts] == ["2001:db8:1:2::/64"]
    assert alerts[0].ban_target == ("2001:db8:1:2::/64",)
    other = DistributedDetector()
    spread48 = [f"2001:db8:1:{i:x}::1" for i in range(1, 26)]
    assert spray(other, spread48, users(25), step=5) == []


def test_ipv4_mapped_addresses_join_their_ipv4_network() -> None:
    det = DistributedDetector()
    ips = [f"::ffff:203.0.113.{i}" if i % 2 else f"203.0.113.{i}" for i in range(1, 21)]
    alerts = spray(det, ips, users(20), step=5)
    assert [a.network for a in alerts] == ["203.0.113.0/24"]
    assert all(":" not in ip for ip in alerts[0].addresses)


def test_asn_groups_addresses_spread_over_its_networks() -> None:
    det = DistributedDetector()
    ips = [f"45.{10 + i % 6}.{i % 3}.{i + 1}" for i in range(24)]  # <= 4 per /24, 6 /24s
    alerts = spray(det, ips, users(24), step=10, asn=64500)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.network == "AS64500" and alert.asn == 64500
    assert alert.address_count == 20 and alert.accounts == 20
    assert alert.ban_target == tuple(sorted({f"45.{10 + i % 6}.{i % 3}.0/24" for i in range(20)},
                                            key=lambda n: tuple(int(p) for p in n[:-3].split("."))))
    assert len(alert.ban_target) == 6
    assert alert.reasons.startswith("20 addresses in 6 networks of AS64500 tried 20 different")
    without = DistributedDetector()
    assert spray(without, ips, users(24), step=10) == []


def test_asn_of_independent_heavy_scanners_is_left_to_the_jail() -> None:
    """Twelve scanners of one hosting AS, each hammering away: per-address bans catch them."""
    det = DistributedDetector()
    alerts: list[NetAlert] = []
    for n in range(12):
        ip = f"45.{n}.7.{n + 1}"
        for i in range(12):
            alerts += det.observe(n * 20 + i, ip, f"user{i % 6 + n}", 14061)
    assert alerts == []


def test_asn_needs_more_addresses_than_a_network() -> None:
    ips = [f"45.{10 + i % 3}.0.{i + 1}" for i in range(6)]
    assert spray(DistributedDetector(), ips, users(40), step=5, asn=64500) == []
    det = DistributedDetector(asn_min_addresses=6)
    assert [a.network for a in spray(det, ips, users(30), step=5, asn=64500)] == ["AS64500"]


def test_asn_that_always_hosts_scanners_needs_a_surge() -> None:
    """A big cloud with a dozen light scanners around the clock is its normal, learnt."""
    det = DistributedDetector()
    crowd = [f"45.{i}.9.{i + 1}" for i in range(12)]
    early: list[NetAlert] = []
    late: list[NetAlert] = []
    for step in range(0, 18 * 3600, 20):  # each address once every 240 s: 2-3 per window
        alerts = det.observe(step, crowd[step // 20 % 12], f"user{step % 97}", 14061)
        (early if step < 12 * 3600 else late).extend(alerts)
    assert late == []
    assert det.to_state()["asn_level"]["AS14061"][0] > 10
    botnet = [f"47.{i}.3.{i + 1}" for i in range(40)]
    surge = spray(det, botnet, users(60), start=18 * 3600, step=5, asn=14061)
    assert [a.network for a in surge][:1] == ["AS14061"]


def test_asn_does_not_repeat_a_single_network_alert() -> None:
    det = DistributedDetector()
    ips = [f"203.0.113.{i}" for i in range(1, 31)]
    alerts = spray(det, ips, users(30), step=5, asn=64501)
    assert [a.network for a in alerts] == ["203.0.113.0/24"]


def test_no_flood_realert_on_doubling_or_after_the_window() -> None:
    det = DistributedDetector(window=600)
    ips = [f"203.0.113.{i}" for i in range(1, 41)]
    # 1 failure / 10 s: the window holds up to 60, so the count doubles once (20 -> 40).
    alerts = spray(det, ips, users(180), step=10)
    times = [a.last for a in alerts]
    assert [a.failures for a in alerts][:2] == [20, 40]
    assert times[:2] == [190, 390]
    assert all(b - a >= 600 for a, b in zip(times[1:], times[2:], strict=False))
    assert len(alerts) <= 2 + 1800 // 600
    assert {a.network for a in alerts} == {"203.0.113.0/24"}


def test_failures_older_than_the_window_expire() -> None:
    det = DistributedDetector(window=600)
    ips = [f"203.0.113.{i}" for i in range(1, 20)]
    assert spray(det, ips, users(19), step=1) == []
    assert spray(det, ips, users(19), start=700, step=1) == []  # 19 again, not 38
    det.expire(2000)
    assert len(det) == 0 and det.events == 0


def test_expire_forgets_alerts_so_a_new_attack_alerts_again() -> None:
    det = DistributedDetector(window=600)
    ips = [f"203.0.113.{i}" for i in range(1, 31)]
    assert len(spray(det, ips, users(25), step=1)) == 1
    det.expire(1000)
    assert len(spray(det, ips, users(25), start=1000, step=1)) == 1


def test_accounts_are_cleaned_in_examples() -> None:
    assert clean_account("\x1b[31mroot\r\nX-Header: 1") == "[31mrootX-Header: 1"
    assert clean_account("a\u202eb\u200bc\x00") == "abc"
    long = clean_account("é" * 200)
    assert len(long) == MAX_ACCOUNT and long.endswith("\u2026")
    det = DistributedDetector(min_failures=5, min_accounts=5, min_addresses=5)
    names = ["\x1b]0;pwn\x07admin", "x" * 500, "a\nb", "ok", "fine"]
    alerts = spray(det, [f"192.0.2.{i}" for i in range(1, 6)], names)
    examples = alerts[0].account_examples
    assert all(all(ch.isprintable() for ch in e) and len(e) <= MAX_ACCOUNT for e in examples)
    assert "]0;pwnadmin" in examples and "ab" in examples


def test_missing_users_count_failures_but_not_accounts() -> None:
    det = DistributedDetector()
    ips = [f"203.0.113.{i}" for i in range(1, 31)]
    assert spray(det, ips, [""] * 30, step=1) == []
    assert det.observe(40, "203.0.113.1", None) == []
    assert len(spray(det, ips, users(5), start=41, step=1)) == 1


def test_bad_addresses_are_ignored() -> None:
    det = DistributedDetector()
    assert det.observe(0, "not-an-ip", "root") == []
    assert det.observe(0, "", "root") == []
    assert len(det) == 0


def test_memory_is_bounded() -> None:
    det = DistributedDetector(max_networks=10, max_events=100)
    for i in range(500):
        det.observe(i, f"10.{i % 50}.0.{i % 200 + 1}", f"u{i}", 64500 + i % 7)
        assert len(det) <= 10 and det.events <= 100
    one = DistributedDetector(max_events=30)
    spray(one, [f"203.0.113.{i}" for i in range(1, 100)], users(100), step=1)
    assert one.events <= 30 and len(one) == 1


def test_out_of_order_times_do_not_break_expiry() -> None:
    det = DistributedDetector(window=100)
    det.observe(50, "192.0.2.1", "a")
    det.observe(40, "192.0.2.2", "b")  # late line: kept in order as if at 50
    det.observe(149, "192.0.2.3", "c")
    assert det.events == 3
    det.expire(151)
    assert det.events == 1


def test_state_round_trip_continues_identically() -> None:
    det = DistributedDetector()
    ips = [f"203.0.113.{i}" for i in range(1, 41)]
    ips6 = [f"2001:db8::{i:x}" for i in range(1, 41)]
    head = spray(det, ips, users(25), step=10) + spray(det, ips6, users(12), step=10)
    assert len(head) == 1
    restored = DistributedDetector.from_state(json.loads(json.dumps(det.to_state())))
    assert restored.to_state() == det.to_state()
    assert restored.config == det.config and restored.events == det.events
    tail_a = spray(det, ips, users(40), start=300, step=5) + spray(det, ips6, users(40), 300)
    tail_b = (spray(restored, ips, users(40), start=300, step=5)
              + spray(restored, ips6, users(40), 300))
    assert tail_a == tail_b and len(tail_a) >= 2
    assert restored.to_state() == det.to_state()
    with pytest.raises(ValueError, match="version"):
        DistributedDetector.from_state({**det.to_state(), "version": 0})


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        DistributedConfig(window=0)
    with pytest.raises(ValueError):
        DistributedConfig(ipv4_prefix=40)
    with pytest.raises(ValueError):
        DistributedDetector(realert_factor=1.0)
    with pytest.raises(ValueError):
        DistributedConfig(min_rare_share=1.5)
    cfg = DistributedConfig(min_failures=7)
    assert DistributedDetector(config=cfg, window=60).config.window == 60


# -- scenarios: small and slow botnets against a heavy background of scanners ----------------

SCANNER_USERS = ("root", "admin", "test", "user", "ubuntu", "oracle", "postgres", "git", "pi",
                 "guest", "ftp", "deploy", "www", "mysql", "support", "dev", "jenkins")
HOSTING_AS = 16276


def scanners(rng: random.Random, hours: float, every: float,
             hosting: list[str]) -> list[tuple[float, str, str, int]]:
    """Background: a scanner session every ``every`` s, 3-30 tries over 0.5-15 min, 70 % on
    root/admin-like accounts; a third from a few busy hosting /24s of one AS."""
    events = []
    t = 0.0
    while True:
        t += rng.expovariate(1 / every)
        if t >= hours * 3600:
            return events
        if rng.random() < 0.33:
            ip, asn = f"{rng.choice(hosting)}.{rng.randint(1, 254)}", HOSTING_AS
        else:
            a, b, c = rng.randint(1, 223), rng.randrange(256), rng.randrange(256)
            ip, asn = f"{a}.{b}.{c}.{rng.randint(1, 254)}", 1000 + (a * 256 + b) % 5000
        tries, span = rng.randint(3, 30), rng.uniform(30, 900)
        for i in range(tries):
            user = (rng.choice(SCANNER_USERS) if rng.random() < 0.7
                    else f"u{rng.randrange(10**6)}")
            events.append((t + span * i / tries, ip, user, asn))


def botnet(rng: random.Random, addresses: list[str], start: float, duration: float,
           failures: int, asn: int | None, tries_per_account: int = 1
           ) -> list[tuple[float, str, str, int | None]]:
    """Each failure from a random address of the botnet, working through its own list."""
    names = [f"{rng.choice('jmak')}{rng.randrange(10**5)}" for _ in range(failures)]
    return [(start + duration * i / failures, rng.choice(addresses),
             names[i // tries_per_account], asn) for i in range(failures)]


def run(det: LayeredDetector | DistributedDetector,
        events: list[tuple[float, str, str, int | None]]) -> list[NetAlert]:
    alerts: list[NetAlert] = []
    tick = 0.0
    for when, ip, user, asn in sorted(events, key=lambda e: e[0]):
        if when >= tick:
            det.expire(when)
            tick = when + 5.0
        alerts += det.observe(when, ip, user, asn)
    return alerts


@pytest.fixture(scope="module")
def heavy_background() -> list[tuple[float, str, str, int | None]]:
    """Twelve hours of a heavy host: a scanner every 15 s (about 45,000 failures)."""
    rng = random.Random(2026)
    hosting = [f"{rng.randint(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}"
               for _ in range(20)]
    return list(scanners(rng, 12, 15.0, hosting))


def test_heavy_background_of_root_admin_scanners_is_not_an_attack(
        heavy_background: list[tuple[float, str, str, int | None]]) -> None:
    assert run(LayeredDetector(), heavy_background) == []


def test_without_the_account_test_the_heavy_background_would_alert(
        heavy_background: list[tuple[float, str, str, int | None]]) -> None:
    """What the uncommon-account share buys: the same figures without it alert on the AS."""
    loose = LayeredDetector(DistributedDetector(min_rare_share=0.0),
                            DistributedDetector(config=SLOW_CONFIG, min_rare_share=0.0))
    assert any(a.network == f"AS{HOSTING_AS}" for a in run(loose, heavy_background))


def test_small_as_botnet_over_many_accounts_is_flagged(
        heavy_background: list[tuple[float, str, str, int | None]]) -> None:
    """8 addresses, 4 in each of two /24s of one AS: below any /24 figure, found as the AS."""
    rng = random.Random(8)
    addresses = [f"100.20.{net}.{i}" for net in (7, 99) for i in range(10, 14)]
    attack = botnet(rng, addresses, 6 * 3600, 600, 60, 64512)
    alerts = run(LayeredDetector(), heavy_background + attack)
    assert [a.network for a in alerts][:1] == ["AS64512"]
    assert alerts[0].ban_target == ("100.20.7.0/24", "100.20.99.0/24")
    assert alerts[0].address_count == 8 and alerts[0].last <= 6 * 3600 + 600
    assert {a.network for a in alerts} == {"AS64512"}  # nothing from the background


def test_small_as_botnet_is_not_seen_without_the_asn() -> None:
    """Without an asn_db the AS is unknown, and 4 addresses a /24 stay below every figure."""
    rng = random.Random(8)
    addresses = [f"100.20.{net}.{i}" for net in (7, 99) for i in range(10, 14)]
    assert run(LayeredDetector(), botnet(rng, addresses, 0, 600, 60, None)) == []


@pytest.mark.parametrize("tries_per_account", [1, 3])
def test_slow_small_botnet_over_hours_is_flagged(
        heavy_background: list[tuple[float, str, str, int | None]],
        tries_per_account: int) -> None:
    """100 tries in 6 hours from 8 addresses of one /24: 2 an hour per address, never 20 in
    ten minutes. The slow layer finds it, also when it tries each account three times."""
    rng = random.Random(6)
    addresses = [f"100.70.3.{i}" for i in rng.sample(range(1, 255), 8)]
    attack = botnet(rng, addresses, 3 * 3600, 6 * 3600, 100, 64600, tries_per_account)
    alerts = run(LayeredDetector(), heavy_background + attack)
    assert [a.network for a in alerts] == ["100.70.3.0/24"]
    assert alerts[0].address_count == 8 and alerts[0].failures >= 60
    assert 3 * 3600 < alerts[0].last < 9 * 3600
    assert "h (" in alerts[0].reasons  # the span is told in hours


def test_slow_as_botnet_over_hours_is_flagged(
        heavy_background: list[tuple[float, str, str, int | None]]) -> None:
    rng = random.Random(7)
    addresses = [f"100.9.{net}.{i}" for net in (1, 2) for i in range(20, 24)]
    attack = botnet(rng, addresses, 2 * 3600, 6 * 3600, 100, 64700)
    alerts = run(LayeredDetector(), heavy_background + attack)
    assert [a.network for a in alerts] == ["AS64700"]
    assert alerts[0].ban_target == ("100.9.1.0/24", "100.9.2.0/24")


def test_slow_network_of_common_accounts_is_not_a_campaign() -> None:
    """Eight scanners of one /24 over hours, all at root/admin: they repeat what everyone
    tries, so the slow layer leaves them to the jail."""
    rng = random.Random(3)
    det = LayeredDetector()
    elsewhere = [(i * 30.0, f"{10 + i % 50}.{i % 7}.1.1", rng.choice(SCANNER_USERS), None)
                 for i in range(400)]  # root, admin, ... tried from everywhere: common
    local = [(4000 + i * 200.0, f"198.51.100.{1 + i % 8}",
              rng.choice(SCANNER_USERS) if i % 5 else f"x{i}", None) for i in range(100)]
    assert run(det, elsewhere + local) == []


def test_common_accounts_are_learnt_and_forgotten() -> None:
    det = DistributedDetector()
    accounts = det._accounts
    assert accounts.rare("root", "AS1", 0.0)
    assert accounts.rare("root", "AS1", 1.0)  # the same group again
    assert accounts.rare("root", "AS2", 2.0)
    assert not accounts.rare("root", "AS3", 3.0)  # third group: common from now on
    assert not accounts.rare("root", "AS1", 4.0)
    assert not accounts.rare(None, "AS1", 4.0)
    accounts.sweep(4.0 + distributed.COMMON_MEMORY + 1)
    assert accounts.rare("root", "AS1", 5.0 + distributed.COMMON_MEMORY)


def test_followed_accounts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "_MAX_ACCOUNTS", 50)
    det = DistributedDetector()
    for i in range(500):
        det.observe(float(i), f"192.0.2.{i % 200 + 1}", f"name{i}")
    assert len(det._accounts.seen) <= 50


def test_layered_state_keeps_what_was_learnt_and_takes_figures_from_the_code() -> None:
    det = LayeredDetector(DistributedDetector(min_addresses=9),
                          DistributedDetector(config=SLOW_CONFIG, min_addresses=30))
    ips = [f"203.0.113.{i}" for i in range(1, 12)]
    for i in range(30):
        det.observe(i * 60.0, ips[i % 11], f"name{i}", 64500)
    state = json.loads(json.dumps(det.to_state()))
    again = LayeredDetector.from_state(state)
    assert again.fast.config == DistributedConfig() and again.slow.config == SLOW_CONFIG
    assert again.fast.events == det.fast.events and again.slow.events == det.slow.events
    assert again.slow.to_state()["windows"] == det.slow.to_state()["windows"]
    # a state written before events carried the uncommon-account flag still loads
    for events in state["slow"]["windows"].values():
        for event in events:
            del event[4]
    old = LayeredDetector.from_state(state)
    assert old.slow.events == det.slow.events


def test_new_per_address_limit_applies_to_counted_windows() -> None:
    det = DistributedDetector()
    ips = [f"45.{i % 3}.0.{i + 1}" for i in range(9)]
    spray(det, ips * 3, users(27), step=5, asn=64500)
    det.config = DistributedConfig(asn_max_per_address=2)
    win = det._windows["AS64500"]
    assert win.limit == 2 and win.light == 0  # every address has 3 failures
