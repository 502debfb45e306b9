"""DNS enrichment against a real DNS server on 127.0.0.1 (tests/dns_server.py)."""

from __future__ import annotations

import dataclasses
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dnslib import PTR, DNSLabel, DNSRecord

from dns_server import DnsTestServer, free_udp_port
from tailban.enrich.dns import (
    MAX_CONFIRM,
    MAX_NAMES,
    MAX_TXT,
    DnsblError,
    DnsSettings,
    Resolver,
    normalize_hostname,
)

ZEN = "zen.spamhaus.org"
SPAMCOP = "bl.spamcop.net"
MARGIN = 0.4  # scheduling slack on a loaded CI machine

V6 = "2001:db8::abcd:1"
# Written out by hand, not computed by the code under test.
V6_NIBBLES = "1.0.0.0.d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"


@pytest.fixture
def server() -> Iterator[DnsTestServer]:
    srv = DnsTestServer().start()
    try:
        yield srv
    finally:
        srv.stop()


MakeResolver = Callable[..., Resolver]


@pytest.fixture
def make_resolver(server: DnsTestServer) -> MakeResolver:
    def make(**overrides: Any) -> Resolver:
        base = DnsSettings(nameservers=("127.0.0.1",), port=server.port, timeout=0.5)
        return Resolver(dataclasses.replace(base, **overrides))

    return make


# --- reverse -----------------------------------------------------------------------------------


def test_reverse_confirms_only_names_pointing_back(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    server.add("10.2.0.192.in-addr.arpa", "PTR", "host.example.net", "liar.example.org")
    server.add("host.example.net", "A", "192.0.2.10")
    server.add("liar.example.org", "A", "198.51.100.7")

    result = make_resolver().reverse("192.0.2.10")

    assert result.names == ("host.example.net", "liar.example.org")
    assert result.confirmed == ("host.example.net",)
    assert result.error is None
    # IPv4 address: only A is needed to confirm.
    assert server.count("host.example.net", "AAAA") == 0


def test_reverse_drops_invalid_names_without_querying_them(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    bad = [
        "bad name.example.com",
        "$(reboot).example.com",
        "x\r\ninjected.example.com",
        "under_score.example.com",
        "-dash.example.com",
        "10.0.0.1",  # a PTR posing as an address
        PTR(DNSLabel([b"evil.example.com", b"attacker", b"net"])),  # a label holding dots
        PTR(DNSLabel([b"caf\xc3\xa9", b"example", b"com"])),
    ]
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters: allowed
    server.add("11.2.0.192.in-addr.arpa", "PTR", *bad, "Mixed.Example.COM", longest)
    server.add("mixed.example.com", "A", "192.0.2.11")

    result = make_resolver().reverse("192.0.2.11")

    assert result.names == ("mixed.example.com", longest)
    assert result.confirmed == ("mixed.example.com",)
    forward_queries = [name for name in server.names_queried() if "in-addr" not in name]
    assert all(name in ("mixed.example.com", longest) for name in forward_queries)


def test_reverse_ipv6_uses_nibble_form_and_aaaa(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    server.add(f"{V6_NIBBLES}.ip6.arpa", "PTR", "six.example.net")
    server.add("six.example.net", "AAAA", "2001:db8:0:0:0:0:abcd:1")

    result = make_resolver().reverse(V6)

    assert result.names == ("six.example.net",)
    assert result.confirmed == ("six.example.net",)
    assert server.count(f"{V6_NIBBLES}.ip6.arpa", "PTR") == 1
    assert server.count("six.example.net", "A") == 0


def test_reverse_without_ptr_is_not_an_error(make_resolver: MakeResolver) -> None:
    result = make_resolver().reverse("192.0.2.99")
    assert result.names == ()
    assert result.confirmed == ()
    assert result.error is None


def test_reverse_of_invalid_address(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    assert make_resolver().reverse("not-an-ip").error == "invalid address"
    assert server.count() == 0


def test_reverse_times_out_within_bound(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    server.dead.add("12.2.0.192.in-addr.arpa")
    started = time.monotonic()
    result = make_resolver(timeout=0.4).reverse("192.0.2.12")
    elapsed = time.monotonic() - started
    assert result.error == "PTR lookup: timeout"
    assert result.names == ()
    assert elapsed < 0.4 + MARGIN
    assert server.count("12.2.0.192.in-addr.arpa", "PTR") == 2  # one retry within the timeout


def test_reverse_confirmation_is_bounded_when_names_never_resolve(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    names = [f"h{i}.blackhole.example" for i in range(6)]
    server.add("13.2.0.192.in-addr.arpa", "PTR", *names)
    server.dead.add("blackhole.example")
    started = time.monotonic()
    result = make_resolver(timeout=0.4).reverse("192.0.2.13")
    elapsed = time.monotonic() - started
    assert result.names == tuple(names)
    assert result.confirmed == ()
    assert result.error is not None and "timeout" in result.error
    assert elapsed < 2 * 0.4 + MARGIN


def test_reverse_big_answer_over_tcp_keeps_a_few_names(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    names = [f"{'n' * 50}{i}.example.net" for i in range(40)]  # about 2.5 kB: truncated on UDP
    server.add("16.2.0.192.in-addr.arpa", "PTR", *names)
    server.add(names[0], "A", "192.0.2.16")

    result = make_resolver().reverse("192.0.2.16")

    assert result.names == tuple(names[:MAX_NAMES])
    assert result.confirmed == (names[0],)
    assert ("16.2.0.192.in-addr.arpa", "PTR", "tcp") in server.log
    assert server.count(rtype="A") == MAX_CONFIRM


def test_reverse_follows_cname(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    server.add("14.2.0.192.in-addr.arpa", "PTR", "alias.example.net")
    server.add("alias.example.net", "CNAME", "real.example.net")
    server.add("real.example.net", "A", "192.0.2.14")
    assert make_resolver().reverse("192.0.2.14").confirmed == ("alias.example.net",)


# --- forward -----------------------------------------------------------------------------------


def test_forward_returns_a_and_aaaa(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    server.add("mail.example.net", "A", "192.0.2.20", "192.0.2.21")
    server.add("mail.example.net", "AAAA", "2001:db8:0::20")
    assert make_resolver().forward("Mail.Example.NET.") == (
        "192.0.2.20",
        "192.0.2.21",
        "2001:db8::20",
    )


def test_forward_unknown_name(make_resolver: MakeResolver) -> None:
    assert make_resolver().forward("nowhere.example.net") == ()


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "bad name.example.com",
        "$(reboot).example.com",
        "host.example.com\r\nInjected: yes",
        "x" * 64 + ".example.com",
        ".".join(["a" * 63] * 4),  # 255 characters
        "under_score.example.com",
        "a..b.example.com",
        "192.0.2.1",
        "bücher.example",
    ],
)
def test_forward_refuses_invalid_names_without_querying(
    server: DnsTestServer, make_resolver: MakeResolver, name: str
) -> None:
    assert make_resolver().forward(name) == ()
    assert server.count() == 0


def test_forward_gives_up_after_timeout(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    server.dead.add("dead.example.net")
    started = time.monotonic()
    assert make_resolver(timeout=0.3).forward("www.dead.example.net") == ()
    assert time.monotonic() - started < 0.3 + MARGIN
    assert server.count("www.dead.example.net", "AAAA") == 0


def test_nameserver_without_listener_is_a_timeout() -> None:
    # Unconnected UDP sockets never see the ICMP "port unreachable", so this is a plain timeout.
    settings = DnsSettings(nameservers=("127.0.0.1",), port=free_udp_port(), timeout=0.3)
    started = time.monotonic()
    result = Resolver(settings).reverse("192.0.2.1")
    assert result.error == "PTR lookup: timeout"
    assert time.monotonic() - started < 0.3 + MARGIN


def test_second_nameserver_answers_when_first_is_silent(server: DnsTestServer) -> None:
    # Nothing listens on 127.0.0.2 at this port: the first attempt gets only its share of the
    # timeout, so the second server is still asked in time.
    server.add("two.example.net", "A", "192.0.2.30")
    settings = DnsSettings(nameservers=("127.0.0.2", "127.0.0.1"), port=server.port, timeout=0.6)
    started = time.monotonic()
    assert Resolver(settings).forward("two.example.net") == ("192.0.2.30",)
    assert time.monotonic() - started < 0.6 + MARGIN


def test_servfail_is_reported(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    server.rcodes["15.2.0.192.in-addr.arpa"] = "SERVFAIL"
    assert make_resolver().reverse("192.0.2.15").error == "PTR lookup: SERVFAIL"


# --- dnsbl -------------------------------------------------------------------------------------


def test_dnsbl_zen_xbl_with_txt(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    server.add(f"4.3.2.1.{ZEN}", "A", "127.0.0.4")
    hostile = "https://check.spamhaus.org/\x1b[31mred\r\nInjected\u202e " + "x" * 300
    server.add(f"4.3.2.1.{ZEN}", "TXT", hostile)

    result = make_resolver(dnsbl_zones=(ZEN,)).dnsbl("1.2.3.4")

    assert result.listed
    (listing,) = result.listings
    assert listing.zone == ZEN
    assert listing.codes == ("127.0.0.4",)
    assert listing.meanings == ("XBL",)
    assert listing.txt is not None
    assert listing.txt.startswith("https://check.spamhaus.org/ [31mred Injected xxx")
    assert len(listing.txt) == MAX_TXT
    assert listing.txt.isprintable()
    assert result.errors == ()


def test_dnsbl_several_codes_and_known_zones(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    server.add(f"5.3.2.1.{ZEN}", "A", "127.0.0.10", "127.0.0.2", "127.0.0.9")
    server.add(f"5.3.2.1.{SPAMCOP}", "A", "127.0.0.2")
    server.add("5.3.2.1.other.example", "A", "127.0.0.3")

    result = make_resolver(dnsbl_zones=(ZEN, SPAMCOP, "other.example")).dnsbl("1.2.3.5")

    zen, spamcop, other = result.listings
    assert zen.codes == ("127.0.0.2", "127.0.0.9", "127.0.0.10")
    assert zen.meanings == ("SBL", "SBL DROP", "PBL")
    assert zen.txt is None
    assert (spamcop.zone, spamcop.meanings) == (SPAMCOP, ("listed",))
    assert (other.zone, other.meanings) == ("other.example", ("listed (127.0.0.3)",))


def test_dnsbl_ipv6_query_name(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    zone = "v6.dnsbl.example"
    server.add(f"{V6_NIBBLES}.{zone}", "A", "127.0.0.2")
    result = make_resolver(dnsbl_zones=(zone,)).dnsbl(V6)
    assert [listing.zone for listing in result.listings] == [zone]
    assert server.names_queried()[0] == f"{V6_NIBBLES}.{zone}"
    assert len(V6_NIBBLES.split(".")) == 32


def test_dnsbl_not_listed(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    result = make_resolver(dnsbl_zones=(ZEN, SPAMCOP)).dnsbl("192.0.2.40")
    assert not result.listed
    assert result.not_listed == (ZEN, SPAMCOP)
    assert result.errors == ()
    assert server.count(rtype="TXT") == 0
    assert server.count(f"40.2.0.192.{ZEN}", "A") == 1


def test_dnsbl_refusal_code_is_an_error_not_a_listing(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    server.add(f"41.2.0.192.{ZEN}", "A", "127.255.255.254")
    server.add("41.2.0.192.other.example", "A", "127.255.255.1")
    result = make_resolver(dnsbl_zones=(ZEN, "other.example")).dnsbl("192.0.2.41")
    assert not result.listed
    assert result.errors == (
        DnsblError(ZEN, "query refused: public or open resolver"),
        DnsblError("other.example", "zone error code 127.255.255.1"),
    )


def test_dnsbl_ignores_answers_outside_loopback(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    server.add("42.2.0.192.hijack.example", "A", "203.0.113.80")
    server.add("42.2.0.192.mixed.example", "A", "203.0.113.80", "127.0.0.2")
    result = make_resolver(dnsbl_zones=("hijack.example", "mixed.example")).dnsbl("192.0.2.42")
    assert [(item.zone, item.codes) for item in result.listings] == [
        ("mixed.example", ("127.0.0.2",))
    ]
    (error,) = result.errors
    assert error.zone == "hijack.example"
    assert "outside 127.0.0.0/8" in error.reason


def test_dnsbl_dead_zone_times_out_and_others_still_answer(
    server: DnsTestServer, make_resolver: MakeResolver
) -> None:
    server.dead.add("dead.dnsbl.example")
    server.add(f"43.2.0.192.{SPAMCOP}", "A", "127.0.0.2")
    zones = ("dead.dnsbl.example", ZEN, SPAMCOP)
    started = time.monotonic()
    result = make_resolver(timeout=0.4, dnsbl_zones=zones).dnsbl("192.0.2.43")
    elapsed = time.monotonic() - started
    assert result.errors == (DnsblError("dead.dnsbl.example", "timeout"),)
    assert result.not_listed == (ZEN,)
    assert [listing.zone for listing in result.listings] == [SPAMCOP]
    assert elapsed < 0.4 + MARGIN


def test_dnsbl_total_budget(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    zones = ("a.dead.example", "b.dead.example", "c.dead.example")
    server.dead.add("dead.example")
    started = time.monotonic()
    result = make_resolver(timeout=0.6, dnsbl_budget=1.0, dnsbl_zones=zones).dnsbl("192.0.2.44")
    elapsed = time.monotonic() - started
    assert elapsed <= 1.5
    assert result.errors == (
        DnsblError("a.dead.example", "timeout"),
        DnsblError("b.dead.example", "timeout"),
        DnsblError("c.dead.example", "skipped: budget"),
    )
    assert server.count("44.2.0.192.c.dead.example") == 0


def test_dnsbl_invalid_address(server: DnsTestServer, make_resolver: MakeResolver) -> None:
    result = make_resolver(dnsbl_zones=(ZEN,)).dnsbl("1.2.3")
    assert result.errors == (DnsblError(ZEN, "invalid address"),)
    assert server.count() == 0


# --- settings and name checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"nameservers": ("dns.example.com",)},
        {"port": 0},
        {"timeout": 0.0},
        {"timeout": float("nan")},
        {"dnsbl_budget": -1.0},
        {"dnsbl_zones": ("zen spamhaus org",)},
    ],
)
def test_settings_refuse_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(DnsSettings(), **overrides)


def test_zones_are_normalised_and_deduplicated() -> None:
    settings = DnsSettings(nameservers=("127.0.0.1",), dnsbl_zones=("Zen.Spamhaus.org.", ZEN))
    resolver = Resolver(settings)
    assert resolver.dnsbl("1.2.3").errors == (DnsblError(ZEN, "invalid address"),)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Host.Example.COM.", "host.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
        ("1a.example", "1a.example"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        ("a" * 64 + ".com", None),
        ("host.example.com..", None),
        ("host-.example.com", None),
        ("host.123", None),
        ("::1", None),
    ],
)
def test_normalize_hostname(name: str, expected: str | None) -> None:
    assert normalize_hostname(name) == expected


# --- the test server itself --------------------------------------------------------------------


def test_server_stops_fast_while_queries_hang() -> None:
    srv = DnsTestServer(dead=["hang.example"]).start()
    query = bytes(DNSRecord.question("www.hang.example").pack())
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.create_connection(("127.0.0.1", srv.port), timeout=2) as tcp,
    ):
        udp.sendto(query, ("127.0.0.1", srv.port))
        tcp.sendall(struct.pack("!H", len(query)) + query)
        deadline = time.monotonic() + 2
        while srv.count("www.hang.example") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.count("www.hang.example") == 2
        assert {proto for _, _, proto in srv.log} == {"udp", "tcp"}
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 0.5
        assert tcp.recv(512) == b""  # closed without an answer
    srv.stop()  # a second stop is harmless
