"""The per-account login anomaly model on small fixed scenarios (no clock, no I/O)."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailban.anomaly.login import (
    LoginEvent,
    LoginModel,
    haversine_km,
    network_of,
    quote,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
DAY = 86400.0
AMS = (52.37, 4.90)
TOKYO = (35.68, 139.69)
BEIJING = (39.90, 116.41)
HOME, OFFICE = "192.0.2.10", "198.51.100.7"


def habitual(i: int, account: str = "alice") -> LoginEvent:
    """Login ``i`` of a habit: NL, 08-18 h, two addresses, publickey over ssh."""
    hour = 8 + (i * 7) % 10 + (i % 3) * 0.25
    ip = OFFICE if i % 3 else HOME
    return LoginEvent(account, ip, T0 + i * DAY + hour * 3600, "ssh", "publickey", "NL", 1136,
                      AMS[0] + (i % 2) * 0.01, AMS[1], ())


def trained(n: int = 30, **kw: Any) -> LoginModel:
    model = LoginModel(**kw)
    for i in range(n):
        assert not model.observe(habitual(i)).unusual
    return model


def intruder(day: float = 30, hour: float = 3.0, **kw: Any) -> LoginEvent:
    """alice's key used from Beijing, by default at 03:00 on day 30."""
    ev = LoginEvent("alice", "203.0.113.5", T0 + day * DAY + hour * 3600, "ssh", "publickey",
                    "CN", 4134, BEIJING[0], BEIJING[1])
    return replace(ev, **kw)


def test_new_country_at_night_is_unusual_and_says_why() -> None:
    model = trained()
    j = model.judge(intruder())
    assert j.unusual and not j.warming_up
    assert j.score >= model.threshold
    text = " | ".join(j.reasons)
    assert "new country CN for alice (seen before: NL)" in text
    assert "03:00" in text and "unusual hour" in text
    assert j.features["country_new"] == 1.0


@pytest.mark.parametrize("position", [True, False])
def test_a_far_new_country_alone_is_unusual(position: bool) -> None:
    """At a usual hour, usual method: the country alone decides, with or without a position."""
    model = LoginModel()
    for i in range(20):  # the shortest history out of warm-up: 20 logins, 10 days
        ev = habitual(i // 2)
        model.learn(ev if position else replace(ev, latitude=None, longitude=None))
    probe = intruder(day=10, hour=12.0)
    j = model.judge(probe if position else replace(probe, latitude=None, longitude=None))
    assert j.unusual and not j.warming_up
    assert j.reasons[0].startswith("new country CN for alice")


def test_a_habitual_login_is_normal() -> None:
    model = trained()
    j = model.judge(habitual(30))
    assert not j.unusual and not j.warming_up
    assert j.score < 2.0
    assert j.reasons == ()


def test_warming_up_never_unusual() -> None:
    model = trained(10)
    j = model.judge(intruder(day=10))
    assert j.warming_up and not j.unusual
    assert j.score >= model.threshold  # the evidence is still computed and shown
    # enough logins but over too few days is still warm-up
    fast = LoginModel()
    for i in range(30):
        fast.learn(LoginEvent("bob", HOME, T0 + i * 600, "imap", "password"))
    assert fast.judge(LoginEvent("bob", "203.0.113.9", T0 + DAY, "imap", "plain")).warming_up


def test_impossible_travel_amsterdam_then_tokyo() -> None:
    model = trained()
    here = habitual(30)
    assert not model.observe(here).unusual
    there = LoginEvent("alice", "203.0.113.77", here.time + 30 * 60, "ssh", "publickey", "JP",
                       2516, TOKYO[0], TOKYO[1])
    j = model.judge(there)
    assert j.unusual
    travel = [r for r in j.reasons if r.startswith("impossible travel")]
    assert travel and "from last login in NL in 30 min" in travel[0]
    assert 9000 < j.features["travel_km"] < 9500
    assert j.features["travel_kmh"] > 17000


def test_acknowledged_fast_hop_is_not_flagged_again() -> None:
    model = trained()
    here = habitual(30)
    model.observe(here)
    vpn = LoginEvent("alice", "203.0.113.77", here.time + 20 * 60, "ssh", "publickey", "NL",
                     64500, 40.71, -74.0)  # a VPN exit GeoIP places in New York
    assert model.observe(vpn).unusual
    model.learn(vpn)  # the administrator: "that is alice's VPN"
    back = habitual(31)
    model.observe(back)
    again = LoginEvent("alice", "203.0.113.77", back.time + 15 * 60, "ssh", "publickey", "NL",
                       64500, 40.71, -74.0)
    j = model.judge(again)
    assert j.features["s_travel"] == 0.0 and not j.unusual


def test_dnsbl_listing_adds_a_reason() -> None:
    model = trained()
    ev = LoginEvent("alice", "192.0.2.99", T0 + 30 * DAY + 10 * 3600, "ssh", "publickey",
                    "NL", 1136, AMS[0], AMS[1], ("zen.spamhaus.org",))
    j = model.judge(ev)
    assert "address listed on zen.spamhaus.org" in j.reasons
    assert j.unusual
    clean = model.judge(replace(ev, dnsbl=()))
    assert not clean.unusual and j.score - clean.score >= 5


def test_unusual_is_not_learned_but_an_ack_teaches_it() -> None:
    model = trained()
    ev = intruder()
    assert model.observe(ev).unusual
    assert model.history("alice") == 30  # not taken as alice's habit
    assert model.observe(ev).unusual  # so the same login is still unusual
    model.learn(ev)  # the administrator acknowledges it
    assert model.history("alice") == 31
    assert not model.judge(ev).unusual
    assert not model.judge(intruder(day=31, hour=3.2)).unusual


def test_judge_does_not_change_the_model() -> None:
    model = trained()
    before = json.dumps(model.to_state(), sort_keys=True)
    model.judge(intruder())
    model.judge(LoginEvent("nobody", "192.0.2.1", T0, "ssh"))
    assert json.dumps(model.to_state(), sort_keys=True) == before


def test_state_round_trips_through_json_and_judges_identically() -> None:
    model = trained(tz=timezone(timedelta(hours=1)))
    model.observe(intruder())  # something in the recent window, unlearned
    restored = LoginModel.from_state(json.loads(json.dumps(model.to_state())))
    assert restored.to_state() == json.loads(json.dumps(model.to_state()))
    probes = [intruder(day=30, hour=3.5), habitual(30), intruder(day=31, hour=12, dnsbl=("x",)),
              LoginEvent("carol", "192.0.2.5", T0, "imap", "password")]
    for ev in probes:
        assert restored.judge(ev) == model.judge(ev)
    for i in range(30, 40):  # and both go on learning alike
        assert restored.observe(habitual(i)) == model.observe(habitual(i))


def test_time_zone_survives_the_round_trip() -> None:
    import zoneinfo

    from conftest import require

    try:
        tz: zoneinfo.ZoneInfo | None = zoneinfo.ZoneInfo("Europe/Amsterdam")
    except zoneinfo.ZoneInfoNotFoundError:
        tz = None
    require(tz is not None, "no time zone database (Debian's tzdata)")
    assert tz is not None
    model = LoginModel(tz=tz)
    restored = LoginModel.from_state(json.loads(json.dumps(model.to_state())))
    assert restored.tz == tz
    j = model.judge(LoginEvent("a", HOME, T0 + 2 * 3600, "ssh"))  # 02:00 UTC = 03:00 CET
    assert j.features["hour"] == 3.0


def test_memory_stays_bounded() -> None:
    model = LoginModel(max_accounts=50)
    for k in range(1000):
        model.learn(LoginEvent("bob", f"10.{k // 250}.{k % 250}.{k % 7 + 1}", T0 + k * 60,
                               "imap", "password"))
    acct = model.to_state()["accounts"]["bob"]
    assert len(acct["addresses"]) == 256 and len(acct["networks"]) <= 256
    assert "10.3.249.6" in acct["addresses"]  # the most recent stay, the oldest went
    assert "10.0.0.1" not in acct["addresses"]
    assert len(acct["recent"]) <= 4 * 256
    assert model.history("bob") == 1000
    for k in range(100):
        model.observe(LoginEvent(f"user{k}", "192.0.2.1", T0 + k, "ssh"))
    assert len(model) == 50
    assert model.history("user99") == 1 and model.history("user0") == 0


def test_a_burst_of_new_addresses_is_flagged() -> None:
    model = trained()
    start = T0 + 30 * DAY + 14 * 3600
    verdicts = [model.observe(LoginEvent("alice", f"203.0.{113 + k % 3}.{k + 1}",
                                         start + k * 50, "ssh", "publickey", "NL", 1136,
                                         AMS[0], AMS[1])) for k in range(10)]
    assert not verdicts[0].unusual
    assert all(v.unusual for v in verdicts[4:])
    assert any("new addresses in 60 min" in r for r in verdicts[-1].reasons)
    assert any(" logins in 10 min" in r for r in verdicts[-1].reasons)


def test_new_auth_method_is_a_reason() -> None:
    model = trained()
    j = model.judge(replace(habitual(30), method="password"))
    assert "new auth method password" in j.reasons


def test_reasons_keep_attacker_text_as_data() -> None:
    model = LoginModel()
    name = "evil\n\x1b[31mroot\u202e" + "A" * 100
    for i in range(30):
        model.learn(LoginEvent(name, HOME, T0 + i * DAY + 10 * 3600, "ssh", "publickey",
                               "NL", 1136, AMS[0], AMS[1]))
    j = model.judge(LoginEvent(name, "203.0.113.5\n", T0 + 30 * DAY + 3 * 3600, "ssh",
                               "pass\tword", "C\x00N", 4134, BEIJING[0], BEIJING[1],
                               ("bl.example\r\nInjected: yes",)))
    assert j.unusual
    for reason in j.reasons:
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in reason), reason
        assert "A" * 65 not in reason
    assert quote("alice") == "alice"
    assert quote("a b") == "'a b'"
    assert quote("x" * 80) == repr("x" * 64) + "..."


def test_helpers() -> None:
    assert 350 < haversine_km(*AMS, 48.86, 2.35) < 450  # Amsterdam - Paris
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_of("not an address") == "not an address"



@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=20),
       st.text(max_size=20), st.lists(st.text(max_size=30), max_size=4))
def test_any_text_gives_safe_reasons(account: str, ip: str, method: str, country: str,
                                     zones: list[str]) -> None:
    model = LoginModel(min_history=1, min_days=0)
    model.learn(LoginEvent(account, "192.0.2.1", T0 + 10 * 3600, "ssh", "publickey", "NL"))
    j = model.judge(LoginEvent(account, ip, T0 + DAY + 3 * 3600, method or "ssh", method,
                               country or None, None, None, None, tuple(zones)))
    for reason in j.reasons:
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in reason)
        assert len(reason) < 400
    probe = LoginEvent(account, ip, T0, "ssh")
    restored = LoginModel.from_state(json.loads(json.dumps(model.to_state())))
    assert restored.judge(probe) == model.judge(probe)
