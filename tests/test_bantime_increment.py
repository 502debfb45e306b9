"""bantime.increment against fail2ban's documented default formula and multipliers.

fail2ban (jail.conf): ``bantime.formula = ban.Time * (1<<(ban.Count if ban.Count<20 else
20)) * banFactor``; ``bantime.multipliers`` replaces it: the Nth repeat uses the Nth factor,
the last one repeating; ``bantime.maxtime`` caps it, ``bantime.rndtime`` adds up to that
many random seconds.
"""

from __future__ import annotations

import pytest

from tailban.bans.ledger import BanLedger
from tailban.core.addresses import IgnoreList
from tailban.core.bantime import BantimeIncrement, parse_multipliers
from tailban.core.events import Failure
from tailban.jails.policy import JailPolicy, JailRules

BASE = 600.0


@pytest.mark.parametrize("count", range(0, 11))
def test_default_formula_table(count: int) -> None:
    rule = BantimeIncrement(enabled=True, factor=1)
    expected = BASE * (1 << (count if count < 20 else 20)) * 1 if count else BASE
    assert rule.seconds(BASE, count) == expected


@pytest.mark.parametrize(("count", "expected"), [
    (0, 600), (1, 1200), (2, 2400), (3, 4800), (4, 9600), (5, 19200), (6, 38400),
    (7, 76800), (8, 86400), (9, 86400), (10, 86400)])
def test_factor_and_maxtime(count: int, expected: float) -> None:
    rule = BantimeIncrement(enabled=True, factor=1, maxtime=86400)
    assert rule.seconds(BASE, count) == expected


def test_factor_scales_repeats_only() -> None:
    rule = BantimeIncrement(enabled=True, factor=3)
    assert [rule.seconds(BASE, c) for c in range(4)] == [600, 3600, 7200, 14400]


def test_multipliers_last_one_repeats() -> None:
    rule = BantimeIncrement(enabled=True, multipliers=parse_multipliers("1 5 30 60 300"))
    assert [rule.seconds(60, c) for c in range(8)] == [60, 300, 1800, 3600, 18000, 18000,
                                                        18000, 18000]


def test_rndtime_bounds_and_maxtime_wins() -> None:
    rule = BantimeIncrement(enabled=True, rndtime=300, maxtime=2000)
    assert rule.seconds(BASE, 1, jitter=0.0) == 1200
    assert rule.seconds(BASE, 1, jitter=0.999) == pytest.approx(1499.7)
    assert rule.seconds(BASE, 2, jitter=0.999) == 2000


def test_disabled_and_forever_untouched() -> None:
    assert BantimeIncrement().seconds(BASE, 5) == BASE
    assert BantimeIncrement(enabled=True).seconds(-1, 5) == -1


def test_bad_multipliers() -> None:
    for bad in ("", "1 x", "1 -2"):
        with pytest.raises(ValueError):
            parse_multipliers(bad)


def test_policy_bans_repeat_offenders_longer() -> None:
    ledger = BanLedger()
    policy = JailPolicy(JailRules("sshd", 1, 600, BASE, IgnoreList(),
                                  BantimeIncrement(enabled=True, maxtime=3000)), ledger)
    lengths = []
    t = 0.0
    for _ in range(4):
        [ban] = policy.observe([Failure("203.0.113.5", "203.0.113.5", t, None, "r")], now=t)
        assert ban.expires_at is not None
        lengths.append(ban.expires_at - ban.banned_at)
        t = ban.expires_at + 1
    assert lengths == [600, 1200, 2400, 3000]
    # Another address starts at the base time; history seeds the count across restarts.
    fresh = JailPolicy(policy.rules, BanLedger(), previous_bans={"203.0.113.5": 4})
    [ban] = fresh.observe([Failure("203.0.113.5", "203.0.113.5", 0, None, "r")], now=0)
    assert ban.expires_at == 3000
    [ban] = fresh.observe([Failure("198.51.100.1", "198.51.100.1", 0, None, "r")], now=0)
    assert ban.expires_at == 600
