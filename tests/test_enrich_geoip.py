"""GeoIP enrichment against real MaxMind-format files written by mmdb_fixtures."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from mmdb_fixtures import (
    replace_db,
    write_asn_db,
    write_city_db,
    write_country_db,
    write_db,
)
from tailban.enrich.geoip import MAX_TEXT, GeoInfo, GeoIPLookup

COUNTRIES = {
    "192.0.2.0/24": ("DE", "Germany"),
    "2001:db8:1::/48": ("FR", "France"),
}
CITIES = {
    "192.0.2.0/24": ("DE", "Germany", "Berlin", 52.52, 13.405),
    "2001:db8:1::/48": ("FR", "France", "Paris", 48.8566, 2.3522),
}
ASNS = {
    "192.0.2.0/24": (64500, "Example Net"),
    "2001:db8:1::/48": (4200000001, "Example Six"),  # needs all 32 bits
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dbs(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "country": tmp_path / "GeoLite2-Country.mmdb",
        "city": tmp_path / "GeoLite2-City.mmdb",
        "asn": tmp_path / "GeoLite2-ASN.mmdb",
    }
    write_country_db(paths["country"], COUNTRIES)
    write_city_db(paths["city"], CITIES)
    write_asn_db(paths["asn"], ASNS)
    return paths


def test_country_lookup_ipv4_and_ipv6(dbs: dict[str, Path]) -> None:
    with GeoIPLookup(dbs["country"], None, None) as geo:
        v4 = geo.lookup("192.0.2.10")
        v6 = geo.lookup("2001:db8:1::7")
        assert geo.problems() == []
    assert (v4.country_iso, v4.country_name) == ("DE", "Germany")
    assert (v6.country_iso, v6.country_name) == ("FR", "France")
    assert v4.city is None and v4.asn is None
    # Unconfigured databases are not problems, but the result says why fields are empty.
    assert v4.notes == ("no city database configured", "no asn database configured")
    assert v4.errors == v4.notes


def test_city_and_coordinates_ipv4_and_ipv6(dbs: dict[str, Path]) -> None:
    geo = GeoIPLookup(None, dbs["city"], None)
    v4 = geo.lookup("192.0.2.200")
    v6 = geo.lookup("2001:db8:1:ffff::1")
    assert (v4.city, v4.latitude, v4.longitude) == ("Berlin", 52.52, 13.405)
    assert (v6.city, v6.latitude, v6.longitude) == ("Paris", 48.8566, 2.3522)


def test_only_city_db_supplies_the_country(dbs: dict[str, Path]) -> None:
    geo = GeoIPLookup(None, dbs["city"], None)
    info = geo.lookup("192.0.2.1")
    assert (info.country_iso, info.country_name) == ("DE", "Germany")
    assert not any("country" in note for note in info.notes)
    assert geo.problems() == []


def test_asn_lookup_ipv4_and_ipv6(dbs: dict[str, Path]) -> None:
    geo = GeoIPLookup(None, None, dbs["asn"])
    assert (geo.lookup("192.0.2.1").asn, geo.lookup("192.0.2.1").as_org) == (64500, "Example Net")
    v6 = geo.lookup("2001:db8:1::1")
    assert (v6.asn, v6.as_org) == (4200000001, "Example Six")


def test_all_three_databases(dbs: dict[str, Path]) -> None:
    geo = GeoIPLookup(dbs["country"], dbs["city"], dbs["asn"])
    assert geo.lookup("192.0.2.1") == GeoInfo(
        country_iso="DE",
        country_name="Germany",
        city="Berlin",
        latitude=52.52,
        longitude=13.405,
        asn=64500,
        as_org="Example Net",
    )


def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4(dbs: dict[str, Path]) -> None:
    geo = GeoIPLookup(dbs["country"], None, dbs["asn"])
    info = geo.lookup("::ffff:192.0.2.5")
    assert (info.country_iso, info.asn) == ("DE", 64500)


@pytest.mark.parametrize("ip", ["198.51.100.1", "2001:db8:2::1", "::1", "10.0.0.1"])
def test_address_not_in_db_gives_empty_fields(dbs: dict[str, Path], ip: str) -> None:
    geo = GeoIPLookup(dbs["country"], dbs["city"], dbs["asn"])
    assert geo.lookup(ip) == GeoInfo()


def test_invalid_address_is_a_value_error(dbs: dict[str, Path]) -> None:
    geo = GeoIPLookup(dbs["country"], None, None)
    with pytest.raises(ValueError):
        geo.lookup("not-an-ip")


def test_ipv6_against_ipv4_only_database(tmp_path: Path) -> None:
    path = tmp_path / "v4only.mmdb"
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["192.0.2.0/24"]), {"country": {"iso_code": "NL"}})
    writer.to_db_file(str(path))
    geo = GeoIPLookup(path, None, None)
    assert geo.lookup("192.0.2.1").country_iso == "NL"
    info = geo.lookup("2001:db8::1")
    assert info.country_iso is None
    assert geo.problems() == []


def test_missing_db_is_a_note_and_a_problem(tmp_path: Path, dbs: dict[str, Path]) -> None:
    missing = tmp_path / "nope" / "GeoLite2-City.mmdb"
    geo = GeoIPLookup(dbs["country"], missing, None)
    assert geo.problems() == [f"city database {missing} missing"]
    info = geo.lookup("192.0.2.1")
    assert info.country_iso == "DE"
    assert f"city database {missing} missing" in info.notes


def test_nothing_configured(tmp_path: Path) -> None:
    geo = GeoIPLookup(None, None, None)
    assert geo.problems() == []
    info = geo.lookup("192.0.2.1")
    assert info.country_iso is None
    assert len(info.notes) == 3


def test_wrong_database_type_is_reported(dbs: dict[str, Path]) -> None:
    geo = GeoIPLookup(dbs["asn"], None, dbs["country"])
    problems = geo.problems()
    assert len(problems) == 2
    assert "country database" in problems[0] and "'GeoLite2-ASN'" in problems[0]
    assert "asn database" in problems[1] and "'GeoLite2-Country'" in problems[1]
    info = geo.lookup("192.0.2.1")
    assert info.country_iso is None and info.asn is None
    assert set(problems) <= set(info.notes)


def test_city_db_is_accepted_as_country_db(dbs: dict[str, Path]) -> None:
    geo = GeoIPLookup(dbs["city"], None, None)
    assert geo.problems() == []
    assert geo.lookup("192.0.2.1").country_iso == "DE"


def test_garbage_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"\x00" * 4096)
    empty = tmp_path / "empty.mmdb"
    empty.write_bytes(b"")
    geo = GeoIPLookup(junk, empty, tmp_path)  # a directory as the ASN database, too
    problems = geo.problems()
    assert len(problems) == 3
    assert all("country" in p or "city" in p or "asn" in p for p in problems)
    assert geo.lookup("192.0.2.1").country_iso is None


def test_replacement_is_picked_up_after_recheck_interval(
    dbs: dict[str, Path], clock: FakeClock
) -> None:
    geo = GeoIPLookup(dbs["country"], None, dbs["asn"], clock=clock)
    assert geo.lookup("192.0.2.1").country_iso == "DE"

    replace_db(dbs["country"], write_country_db, {"192.0.2.0/24": ("AT", "Austria")})
    replace_db(dbs["asn"], write_asn_db, {"192.0.2.0/24": (64501, "Renamed Net")})
    clock.advance(0.5)
    assert geo.lookup("192.0.2.1").country_iso == "DE"  # not rechecked yet

    clock.advance(0.6)
    info = geo.lookup("192.0.2.1")
    assert (info.country_iso, info.country_name) == ("AT", "Austria")
    assert (info.asn, info.as_org) == (64501, "Renamed Net")
    assert geo.lookup("2001:db8:1::1").country_iso is None  # the new file has no IPv6 entry
    assert geo.problems() == []


def test_recheck_forces_reload(dbs: dict[str, Path], clock: FakeClock) -> None:
    geo = GeoIPLookup(dbs["country"], None, None, clock=clock)
    replace_db(dbs["country"], write_country_db, {"192.0.2.0/24": ("AT", "Austria")})
    geo.recheck()
    assert geo.lookup("192.0.2.1").country_iso == "AT"


def test_db_created_after_start_is_picked_up(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "GeoLite2-ASN.mmdb"
    geo = GeoIPLookup(None, None, path, clock=clock)
    assert geo.problems() == [f"asn database {path} missing"]
    assert geo.lookup("192.0.2.1").asn is None

    replace_db(path, write_asn_db, ASNS)
    clock.advance(1.0)
    info = geo.lookup("192.0.2.1")
    assert info.asn == 64500
    assert not any("missing" in note for note in info.notes)
    assert geo.problems() == []


def test_removed_file_keeps_working(dbs: dict[str, Path], clock: FakeClock) -> None:
    geo = GeoIPLookup(dbs["country"], None, None, clock=clock)
    dbs["country"].unlink()
    clock.advance(2.0)
    assert geo.lookup("192.0.2.1").country_iso == "DE"
    assert geo.problems() == [
        f"country database {dbs['country']} removed; still using the copy opened earlier"
    ]


def test_broken_replacement_keeps_old_reader(dbs: dict[str, Path], clock: FakeClock) -> None:
    geo = GeoIPLookup(dbs["country"], None, None, clock=clock)
    replace_db(dbs["country"], write_asn_db, ASNS)  # wrong type lands on the path
    clock.advance(1.0)
    assert geo.lookup("192.0.2.1").country_iso == "DE"
    (problem,) = geo.problems()
    assert "'GeoLite2-ASN'" in problem and "still using the copy opened earlier" in problem

    replace_db(dbs["country"], write_country_db, {"192.0.2.0/24": ("AT", "Austria")})
    clock.advance(1.0)
    assert geo.lookup("192.0.2.1").country_iso == "AT"
    assert geo.problems() == []


def test_strings_from_db_are_sanitised(tmp_path: Path) -> None:
    nasty = "Evil\nCity\x1b[31m\u202e\u2028\x00"
    city = tmp_path / "city.mmdb"
    write_city_db(city, {"192.0.2.0/24": ("D\x07E", "Ger\rmany", nasty, 1.0, 2.0)})
    asn = tmp_path / "asn.mmdb"
    write_asn_db(asn, {"192.0.2.0/24": (64500, "x" * 5000)})
    info = GeoIPLookup(None, city, asn).lookup("192.0.2.1")
    assert info.country_iso == "DE"
    assert info.country_name == "Germany"
    assert info.city == "EvilCity[31m"
    assert info.as_org == "x" * MAX_TEXT


def test_implausible_values_become_none(tmp_path: Path) -> None:
    path = tmp_path / "city.mmdb"
    write_db(
        path,
        "GeoLite2-City",
        {
            "192.0.2.0/24": {
                "country": {"iso_code": "Germany", "names": {"en": " \t "}},
                "city": {"names": {"en": "Berlin"}},
                "location": {"latitude": 123.0, "longitude": float("nan")},
            }
        },
    )
    info = GeoIPLookup(None, path, None).lookup("192.0.2.1")
    assert (info.country_iso, info.country_name, info.city) == (None, None, "Berlin")
    assert (info.latitude, info.longitude) == (None, None)


def test_concurrent_lookups_during_replacement(dbs: dict[str, Path], clock: FakeClock) -> None:
    geo = GeoIPLookup(dbs["country"], None, None, clock=clock)
    seen: set[str | None] = set()
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(300):
                seen.add(geo.lookup("192.0.2.1").country_iso)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for iso in ("AT", "CH", "DE"):
        replace_db(dbs["country"], write_country_db, {"192.0.2.0/24": (iso, iso)})
        clock.advance(1.0)
    for t in threads:
        t.join()
    assert failures == []
    assert seen <= {"AT", "CH", "DE"}
    assert geo.lookup("192.0.2.1").country_iso == "DE"


def test_closed_lookup_does_not_reopen(dbs: dict[str, Path], clock: FakeClock) -> None:
    geo = GeoIPLookup(dbs["country"], None, None, clock=clock)
    geo.close()
    clock.advance(5.0)
    geo.recheck()
    assert geo.lookup("192.0.2.1").country_iso is None
