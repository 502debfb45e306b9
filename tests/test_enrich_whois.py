"""The whois client against real TCP servers on loopback that play IANA and the registries.

Each logical server name ("whois.ripe.net") is its own socketserver on 127.0.0.1:0; the
client's ``resolve`` hook dials it there. Every server records the connections and queries
it received, so the tests can count what the cache and the rate limit saved.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import FrozenInstanceError, replace
from pathlib import Path
from typing import Any

import pytest

from tailban.enrich.whois import MAX_FIELD, WhoisClient, WhoisInfo

Respond = Callable[[str], bytes | None]

UNSAFE = ["\r", "\n", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u202e"]


class _Handler(socketserver.BaseRequestHandler):
    server: WhoisServer

    def handle(self) -> None:
        self.server.connections.append(1)
        sock: socket.socket = self.request
        sock.settimeout(5)
        data = b""
        try:
            while not data.endswith(b"\n") and len(data) < 1024:
                chunk = sock.recv(1024)
                if not chunk:
                    return
                data += chunk
            query = data.decode("ascii").strip()
            self.server.queries.append(query)
            reply = self.server.respond(query)
            if reply is not None:
                sock.sendall(reply)
            if reply is None or self.server.linger:
                sock.recv(1)  # hold the connection until the client gives up and closes
        except OSError:
            pass  # the client hung up first: max_bytes or its timeout


class WhoisServer(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, respond: Respond, linger: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond = respond
        self.linger = linger
        self.connections: list[int] = []
        self.queries: list[str] = []


class FakeNet:
    """The servers of one test, by the host names the client sees."""

    def __init__(self) -> None:
        self.servers: dict[str, WhoisServer] = {}
        self._threads: list[threading.Thread] = []

    def add(self, host: str, respond: Respond, linger: bool = False) -> WhoisServer:
        server = WhoisServer(respond, linger)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                  daemon=True)
        thread.start()
        self.servers[host] = server
        self._threads.append(thread)
        return server

    def resolve(self, host: str, port: int) -> tuple[str, int]:
        server = self.servers.get(host)
        if server is None:
            raise OSError(f"no test server named {host}")
        return "127.0.0.1", server.server_address[1]

    def connections(self) -> int:
        return sum(len(s.connections) for s in self.servers.values())

    def queries(self, host: str) -> list[str]:
        return self.servers[host].queries

    def client(self, **kwargs: Any) -> WhoisClient:
        kwargs.setdefault("resolve", self.resolve)
        kwargs.setdefault("timeout", 2.0)
        return WhoisClient(**kwargs)

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(2)


# ---- recorded-style answers -------------------------------------------------------------

def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


IANA_TABLE = [
    (_net("193.0.0.0/8"), "193.0.0.0 - 193.255.255.255", "whois.ripe.net", "RIPE NCC"),
    (_net("8.0.0.0/8"), "8.0.0.0 - 8.255.255.255", "whois.arin.net", "ARIN"),
    (_net("160.0.0.0/8"), "160.0.0.0 - 160.255.255.255", "whois.arin.net", "ARIN"),
    (_net("45.0.0.0/8"), "45.0.0.0 - 45.255.255.255", "whois.loop-a.test", "LOOP"),
    (_net("46.0.0.0/8"), "46.0.0.0 - 46.255.255.255", "whois.hop1.test", "HOPS"),
    (_net("47.0.0.0/8"), "47.0.0.0 - 47.255.255.255", "whois.iana.org", "SELF"),
    (_net("2001:600::/23"), "2001:600::/23", "whois.ripe.net", "RIPE NCC"),
]


def iana(query: str) -> bytes:
    addr = ipaddress.ip_address(query)
    for net, span, refer, org in IANA_TABLE:
        if addr in net:
            key = "inetnum" if net.version == 4 else "inet6num"
            return (
                "% IANA WHOIS server\n% for more information on IANA, visit http://www.iana.org\n"
                "% This query returned 1 object\n\n"
                f"refer:        {refer}\n\n{key}:      {span}\norganisation: {org}\n"
                f"status:       ALLOCATED\n\nwhois:        {refer}\n\n"
                "changed:      1993-05\nsource:       IANA\n"
            ).encode()
    return b"% IANA WHOIS server\n\n% This query returned 0 objects.\n"


RIPE_HEADER = (
    "% This is the RIPE Database query service.\n% The objects are in RPSL format.\n%\n"
    "% The RIPE Database is subject to Terms and Conditions.\n"
    "% See https://apps.db.ripe.net/docs/HTML-Terms-And-Conditions\n\n"
    "% Note: this output has been filtered.\n"
    '%       To receive output for a database update, use the "-B" flag.\n\n'
)

RIPE_NCC = RIPE_HEADER + """\
% Information related to '193.0.0.0 - 193.0.7.255'

% Abuse contact for '193.0.0.0 - 193.0.7.255' is 'abuse@ripe.net'

inetnum:        193.0.0.0 - 193.0.7.255
netname:        RIPE-NCC
descr:          RIPE Network Coordination Centre
org:            ORG-RIEN1-RIPE
descr:          Amsterdam, Netherlands
country:        NL
admin-c:        BRD-RIPE
status:         ASSIGNED PA
mnt-by:         RIPE-NCC-MNT
source:         RIPE # Filtered

% Information related to '193.0.0.0/21AS3333'

route:          193.0.0.0/21
descr:          RIPE-NCC
origin:         AS3333
source:         RIPE # Filtered

% This query was served by the RIPE Database Query Service version 1.109 (SHETLAND)
"""

RIPE_EXAMPLE = RIPE_HEADER + """\
inetnum:        193.1.0.0 - 193.1.255.255
netname:        EXAMPLE-NET
descr:          Example Networks B.V.
country:        nl
admin-c:        EX1-RIPE
source:         RIPE # Filtered

role:           Example abuse desk
abuse-mailbox:  abuse@example.nl
nic-hdl:        EX1-RIPE
source:         RIPE # Filtered
"""

RIPE_UNALIGNED = RIPE_HEADER + """\
inetnum:        193.2.0.0 - 193.2.2.255
netname:        ODD-RANGE
org-name:       Odd Range GmbH
country:        DE
"""

RIPE_FUB = RIPE_HEADER + """\
% Abuse contact for '160.45.0.0 - 160.45.255.255' is 'abuse@fu-berlin.de'

inetnum:        160.45.0.0 - 160.45.255.255
netname:        FUB-NET
descr:          Freie Universitaet Berlin
country:        DE
source:         RIPE
"""

RIPE_V6 = RIPE_HEADER + """\
% Abuse contact for '2001:67c:2e8::/48' is 'abuse@ripe.net'

inet6num:       2001:67c:2e8::/48
netname:        RIPE-NCC
descr:          RIPE Network Coordination Centre
country:        NL
source:         RIPE
"""

RIPE_NONE = "%ERROR:101: no entries found\n%\n% No entries found in source RIPE.\n"


def ripe(query: str) -> bytes:
    addr = ipaddress.ip_address(query)
    for net, text in (
        ("193.0.0.0/21", RIPE_NCC),
        ("193.1.0.0/16", RIPE_EXAMPLE),
        ("193.2.0.0/22", RIPE_UNALIGNED),
        ("160.45.0.0/16", RIPE_FUB),
        ("2001:67c:2e8::/48", RIPE_V6),
    ):
        if addr in ipaddress.ip_network(net):
            return text.encode()
    return RIPE_NONE.encode()


ARIN_HEADER = (
    "#\n# ARIN WHOIS data and services are subject to the Terms of Use\n"
    "# available at: https://www.arin.net/resources/registry/whois/tou/\n#\n\n"
)

ARIN_LEVEL3 = """\
NetRange:       8.0.0.0 - 8.127.255.255
CIDR:           8.0.0.0/9
NetName:        LVLT-ORG-8-8
NetType:        Direct Allocation
Organization:   Level 3 Parent, LLC (LPL-141)

OrgName:        Level 3 Parent, LLC
Country:        US
OrgAbuseEmail:  abuse@level3.com
"""

ARIN_GOOGLE = ARIN_HEADER + ARIN_LEVEL3 + """
NetRange:       8.8.8.0 - 8.8.8.255
CIDR:           8.8.8.0/24
NetName:        GOGL
NetType:        Direct Allocation
Organization:   Google LLC (GOGL)

OrgName:        Google LLC
OrgId:          GOGL
Country:        US

OrgAbuseHandle: ABUSE5250-ARIN
OrgAbuseEmail:  network-abuse@google.com
"""

ARIN_RWHOIS = ARIN_HEADER + ARIN_LEVEL3 + (
    "ReferralServer:  rwhois://rwhois.level3.example:4321\n"
)

ARIN_TO_RIPE = ARIN_HEADER + """\
NetRange:       160.45.0.0 - 160.45.255.255
CIDR:           160.45.0.0/16
NetName:        RIPE-ERX-160-45-0-0
NetType:        Early Registrations, Transferred to RIPE NCC
OrgName:        RIPE Network Coordination Centre
Country:        NL
ReferralServer:  whois://whois.ripe.net
"""


def arin(query: str) -> bytes:
    if not query.startswith("n + "):
        return b"ARIN wants 'n + address' here\n"
    addr = ipaddress.ip_address(query[4:])
    if addr in ipaddress.ip_network("8.8.8.0/24"):
        return ARIN_GOOGLE.encode()
    if addr in ipaddress.ip_network("8.0.0.0/9"):
        return ARIN_RWHOIS.encode()
    if addr in ipaddress.ip_network("160.45.0.0/16"):
        return ARIN_TO_RIPE.encode()
    return b"No match found for n + " + query.encode() + b".\n"


def fixed(text: str | bytes) -> Respond:
    data = text.encode() if isinstance(text, str) else text
    return lambda query: data


@pytest.fixture
def net() -> Iterator[FakeNet]:
    fake = FakeNet()
    try:
        fake.add("whois.iana.org", iana)
        fake.add("whois.ripe.net", ripe)
        fake.add("whois.arin.net", arin)
        yield fake
    finally:
        fake.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- extraction and referrals -------------------------------------------------------------

def test_ripe_fields_from_iana_referral(net: FakeNet) -> None:
    info = net.client().lookup("193.0.0.1")
    assert info == WhoisInfo(
        ip="193.0.0.1", network="193.0.0.0/21", country="NL", netname="RIPE-NCC",
        org="RIPE Network Coordination Centre", abuse="abuse@ripe.net",
        servers=("whois.iana.org", "whois.ripe.net"), error=None, cached=False)
    assert net.queries("whois.iana.org") == ["193.0.0.1"]
    assert net.queries("whois.ripe.net") == ["193.0.0.1"]
    assert info.summary() == ("193.0.0.1 193.0.0.0/21 RIPE-NCC (RIPE Network Coordination "
                              "Centre) NL abuse abuse@ripe.net")
    with pytest.raises(FrozenInstanceError):
        info.country = "US"  # type: ignore[misc]


def test_ripe_role_abuse_mailbox_lowercase_country_and_unaligned_range(net: FakeNet) -> None:
    client = net.client()
    info = client.lookup("193.1.2.3")
    assert (info.network, info.netname, info.country, info.abuse, info.org) == (
        "193.1.0.0/16", "EXAMPLE-NET", "NL", "abuse@example.nl", "Example Networks B.V.")
    odd = client.lookup("193.2.1.1")
    assert odd.network == "193.2.0.0/23, 193.2.2.0/24"
    assert (odd.org, odd.country, odd.abuse) == ("Odd Range GmbH", "DE", None)


def test_arin_most_specific_record_and_query_form(net: FakeNet) -> None:
    info = net.client().lookup("8.8.8.8")
    assert (info.network, info.netname, info.org, info.country, info.abuse) == (
        "8.8.8.0/24", "GOGL", "Google LLC", "US", "network-abuse@google.com")
    assert info.servers == ("whois.iana.org", "whois.arin.net")
    assert net.queries("whois.arin.net") == ["n + 8.8.8.8"]


def test_arin_referral_to_ripe_is_followed(net: FakeNet) -> None:
    info = net.client().lookup("160.45.10.20")
    assert info.servers == ("whois.iana.org", "whois.arin.net", "whois.ripe.net")
    assert (info.netname, info.country, info.abuse, info.network) == (
        "FUB-NET", "DE", "abuse@fu-berlin.de", "160.45.0.0/16")
    assert net.queries("whois.ripe.net") == ["160.45.10.20"]


def test_rwhois_referral_is_not_followed(net: FakeNet) -> None:
    info = net.client().lookup("8.1.2.3")
    assert info.servers == ("whois.iana.org", "whois.arin.net")
    assert (info.netname, info.abuse, info.error) == ("LVLT-ORG-8-8", "abuse@level3.com", None)


def test_referral_to_a_private_literal_is_not_followed(net: FakeNet) -> None:
    net.servers["whois.ripe.net"].respond = fixed(
        "inetnum: 193.0.0.0 - 193.0.7.255\nnetname: STEER\nReferralServer: whois://127.0.0.1:25\n")
    info = net.client().lookup("193.0.0.1")
    assert (info.servers, info.netname, info.error) == (
        ("whois.iana.org", "whois.ripe.net"), "STEER", None)


def test_ipv6_and_mapped_ipv4(net: FakeNet) -> None:
    client = net.client()
    info = client.lookup("2001:67c:2e8:22::c100:68b")
    assert (info.network, info.netname, info.country, info.abuse) == (
        "2001:67c:2e8::/48", "RIPE-NCC", "NL", "abuse@ripe.net")
    assert net.queries("whois.ripe.net") == ["2001:67c:2e8:22::c100:68b"]
    mapped = client.lookup("::ffff:193.0.0.9")
    assert (mapped.ip, mapped.netname) == ("193.0.0.9", "RIPE-NCC")


def test_referral_loop_is_stopped(net: FakeNet) -> None:
    net.add("whois.loop-a.test", fixed(
        "NetRange: 45.0.0.0 - 45.255.255.255\nNetName: LOOP-A\n"
        "ReferralServer: whois://whois.loop-b.test:4343\n"))
    net.add("whois.loop-b.test", fixed(
        "inetnum: 45.1.0.0 - 45.1.255.255\nnetname: LOOP-B\nrefer: whois.loop-a.test\n"))
    info = net.client().lookup("45.1.2.3")
    assert info.servers == ("whois.iana.org", "whois.loop-a.test", "whois.loop-b.test:4343")
    assert (info.netname, info.error) == ("LOOP-B", None)
    assert len(net.servers["whois.loop-a.test"].connections) == 1
    # IANA naming itself as the referral is a loop of one.
    self_ref = net.client().lookup("47.0.0.1")
    assert self_ref.servers == ("whois.iana.org",)


def test_referral_chain_is_capped_at_three_hops(net: FakeNet) -> None:
    for n in range(1, 6):
        net.add(f"whois.hop{n}.test", fixed(f"netname: HOP-{n}\nrefer: whois.hop{n + 1}.test\n"))
    info = net.client().lookup("46.0.0.1")
    assert info.servers == ("whois.iana.org", "whois.hop1.test", "whois.hop2.test",
                            "whois.hop3.test")
    assert info.netname == "HOP-3"
    assert not net.servers["whois.hop4.test"].connections


def test_registry_without_entry_keeps_referrer_data_uncached(net: FakeNet) -> None:
    client = net.client()
    info = client.lookup("193.200.0.1")
    assert info.servers == ("whois.iana.org", "whois.ripe.net")
    assert (info.org, info.network) == ("RIPE NCC", "193.0.0.0/8")
    before = net.connections()
    client.lookup("193.200.0.2")
    assert net.connections() == before + 2  # a referrer's /8 is never cached


# ---- cache and rate limit -----------------------------------------------------------------

def test_cache_by_network_and_ttl(net: FakeNet) -> None:
    clock = FakeClock()
    client = net.client(clock=clock, cache_ttl=100.0)
    first = client.lookup("193.1.2.3")
    before = net.connections()
    again = client.lookup("193.1.200.7")  # same /16
    assert net.connections() == before
    assert again.cached and not first.cached
    assert again == replace(first, ip="193.1.200.7", cached=True)
    client.lookup("193.0.0.1")
    after_ncc = net.connections()
    client.lookup("193.0.9.1")  # outside the cached /21
    assert net.connections() > after_ncc
    clock.now += 99
    total = net.connections()
    assert client.lookup("193.1.0.1").cached
    assert net.connections() == total
    clock.now += 2
    assert not client.lookup("193.1.0.1").cached
    assert net.connections() == total + 2


def test_rate_limit_answers_at_once_and_refills(net: FakeNet) -> None:
    clock = FakeClock()
    client = net.client(clock=clock, rate_per_minute=2)
    assert client.lookup("193.0.0.1").error is None  # two queries: IANA and RIPE
    before = net.connections()
    started = time.monotonic()
    limited = client.lookup("8.8.8.8")
    assert time.monotonic() - started < 0.1
    assert limited == WhoisInfo(ip="8.8.8.8", error="rate limited")
    assert net.connections() == before
    assert client.lookup("193.0.0.2").cached  # cache hits cost nothing
    clock.now += 30  # one token back: IANA answers, the referral is refused
    partial = client.lookup("8.8.8.8")
    assert (partial.error, partial.servers, partial.org) == (
        "rate limited", ("whois.iana.org",), "ARIN")
    clock.now += 60
    assert client.lookup("8.8.8.8").netname == "GOGL"


def test_no_query_for_invalid_or_private_addresses(net: FakeNet) -> None:
    client = net.client()
    assert client.lookup("not-an-ip\r\nx").error == "not an IP address"
    assert client.lookup("not-an-ip\r\nx").ip == "not-an-ip x"
    assert client.lookup("10.1.2.3").error == "not a public address"
    assert client.lookup("2001:db8::1").error == "not a public address"
    assert net.connections() == 0


# ---- hostile and broken servers -----------------------------------------------------------

def test_silent_server_times_out(net: FakeNet) -> None:
    net.add("whois.hang.test", lambda query: None)
    client = net.client(iana=("whois.hang.test", 43), timeout=0.3)
    started = time.monotonic()
    info = client.lookup("193.0.0.1")
    assert time.monotonic() - started < 1.5
    assert info.error == "timeout reading from whois.hang.test"
    assert info.servers == ("whois.hang.test",)
    assert info.netname is None


def test_timeout_after_referral_keeps_earlier_data(net: FakeNet) -> None:
    net.servers["whois.ripe.net"].respond = lambda query: None
    info = net.client(timeout=0.3).lookup("193.0.0.1")
    assert info.error == "timeout reading from whois.ripe.net"
    assert info.org == "RIPE NCC"


def test_connect_timeout_and_refused(net: FakeNet) -> None:
    def slow(address: tuple[str, int], timeout: float) -> socket.socket:
        raise TimeoutError("timed out")

    info = net.client(connect=slow).lookup("193.0.0.1")
    assert info.error == "timeout connecting to whois.iana.org"
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    refused = WhoisClient(iana=("127.0.0.1", closed_port), timeout=1.0).lookup("193.0.0.1")
    assert refused.error == f"cannot connect to 127.0.0.1:{closed_port}: Connection refused"
    unknown = WhoisClient(iana=("whois.invalid", 43), resolve=net.resolve).lookup("193.0.0.1")
    assert unknown.error is not None and unknown.error.startswith("cannot connect")


def test_garbage_answer_gives_empty_info(net: FakeNet) -> None:
    rng = random.Random(43)
    junk = bytes(rng.randrange(256) for _ in range(20000)) + b"\x00\xff\xfe: \x00\n" * 50
    junk += b"country: \xff\xfe\nabuse-mailbox: \x00@\x00\ninetnum: 1.2.3.4 - 0.0.0.0\n"
    net.add("whois.garbage.test", fixed(junk))
    info = net.client(iana=("whois.garbage.test", 43)).lookup("193.0.0.1")
    assert info.error is None
    assert (info.network, info.country, info.netname, info.org, info.abuse) == (
        "1.2.3.4 - 0.0.0.0", None, None, None, None)
    assert info.summary() == "193.0.0.1 1.2.3.4 - 0.0.0.0"
    net.servers["whois.garbage.test"].respond = fixed(os.urandom(4096).replace(b":", b""))
    other = net.client(iana=("whois.garbage.test", 43)).lookup("193.0.0.1")
    assert (other.network, other.country, other.netname, other.org, other.abuse) == (
        None, None, None, None, None)
    assert other.summary() == "193.0.0.1 no whois data"


def test_huge_answer_stops_at_max_bytes(net: FakeNet) -> None:
    answer = ("inetnum: 193.0.0.0 - 193.0.7.255\nnetname: " + "N" * 500 + "\ndescr: "
              + "x" * 1_000_000 + "\ncountry: NL\n").encode()
    # The server keeps the connection open after 1 MB: reading to EOF would time out.
    net.add("whois.big.test", fixed(answer), linger=True)
    client = net.client(iana=("whois.big.test", 43), max_bytes=64 * 1024, timeout=1.0)
    started = time.monotonic()
    info = client.lookup("193.0.0.1")
    assert time.monotonic() - started < 0.9
    assert info.error is None
    assert info.netname == "N" * MAX_FIELD
    assert info.org == "x" * MAX_FIELD
    assert info.country is None  # beyond the cut
    assert info.network == "193.0.0.0/21"


def test_hostile_text_stays_inert_single_line_data(
        net: FakeNet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("whois must never start a process")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(os, "system", forbidden)
    marker = tmp_path / "pwned"
    evil = (
        "% Abuse contact for 'x' is 'abuse@evil.example\u2028Bcc: victim@example.com'\n"
        "inetnum: 193.0.0.0 - 193.0.7.255\n"
        f"netname: EVIL$(touch {marker})\u2028NET\x1b[2J\n"
        "descr: Evil Corp $(rm -rf /) `id` ; echo | nc & > /etc/passwd\r\nBcc: x@y\r\n"
        "owner: Mallory\rBcc: x@y\x85To: z@w\u2029\x0b\x0c\x00\x7f\u202eend\n"
        "country: US; rm -rf /\n"
        "abuse-mailbox: abuse@evil.example\rBcc: x@y\n"
        "OrgAbuseEmail: <script>@evil.example\n"
    ).encode()
    net.add("whois.evil.test", fixed(evil))
    info = net.client(iana=("whois.evil.test", 43)).lookup("193.0.0.1")
    assert info.org == "Mallory Bcc: x@y To: z@w end"
    assert info.netname == f"EVIL$(touch {marker}) NET [2J"
    assert info.country is None
    assert info.abuse is None
    assert not marker.exists()
    for text in (info.org, info.netname, info.summary()):
        assert text is not None
        assert not any(ch in text for ch in UNSAFE), repr(text)
    # The descr line ended at its CRLF: "Bcc: x@y" became a line of its own, ignored.
    net.servers["whois.evil.test"].respond = fixed(evil.replace(b"owner:", b"remarks:"))
    plain = net.client(iana=("whois.evil.test", 43)).lookup("193.0.0.1")
    assert plain.org == "Evil Corp $(rm -rf /) `id` ; echo | nc & > /etc/passwd"
