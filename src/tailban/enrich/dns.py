"""Reverse names, forward look-ups and DNS blocklist checks for banned addresses.

Everything here runs in a worker thread while the daemon keeps banning, so every call has a hard
time bound and none raises for DNS trouble: failures become ``error`` fields. Names come from DNS
records the attacker may control (their own PTR zone), so only plain host names leave this module.

Time bounds (``timeout`` = ``DnsSettings.timeout``):

* ``forward()``: at most 2 x timeout (A, then AAAA; AAAA is not tried after an A timeout).
* ``reverse()``: at most 2 x timeout (PTR, then forward confirmation of all names together).
* ``dnsbl()``: at most ``dnsbl_budget``; each zone at most timeout.

The queries are sent by this module rather than by ``dns.resolver`` because the stub resolver
sleeps between retry rounds outside its lifetime and lets one dead nameserver eat the whole
lifetime; here every attempt is cut to the time left.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
import unicodedata
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

__all__ = [
    "MAX_CONFIRM",
    "MAX_NAMES",
    "MAX_TXT",
    "DnsSettings",
    "DnsblError",
    "DnsblListing",
    "DnsblResult",
    "Resolver",
    "ReverseResult",
    "normalize_hostname",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_NAMES = 8
"""PTR names kept per address; an attacker's zone can return hundreds."""
MAX_CONFIRM = 4
"""PTR names checked by forward look-up; each costs a query against the same time bound."""
MAX_TXT = 200
"""Longest DNSBL TXT text kept; it is third-party text that ends up in logs and mails."""

_ATTEMPTS = 2  # rounds over the nameservers per query: one lost UDP packet must not fail it
_MIN_QUERY_TIME = 0.05  # less time than this left: a query could only time out, so skip it
_EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: big enough for TXT, small enough not to fragment
_LABEL = re.compile(rb"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_DNSBL_ERROR_V4 = ipaddress.IPv4Network("127.255.255.0/24")

_SPAMHAUS_CODES = {
    2: "SBL",
    3: "SBL CSS",
    4: "XBL",
    5: "XBL",
    6: "XBL",
    7: "XBL",
    9: "SBL DROP",
    10: "PBL",
    11: "PBL",
}
_SPAMHAUS_ERRORS = {
    252: "typing error in the DNSBL name",
    254: "query refused: public or open resolver",
    255: "query refused: excessive number of queries",
}
# (zone suffix, meanings by last octet of 127.0.0.x, error texts by last octet of 127.255.255.x)
_ZONE_TABLES: tuple[tuple[str, dict[int, str], dict[int, str]], ...] = (
    ("spamhaus.org", _SPAMHAUS_CODES, _SPAMHAUS_ERRORS),
    ("spamhaus.net", _SPAMHAUS_CODES, _SPAMHAUS_ERRORS),
    ("bl.spamcop.net", {2: "listed"}, {}),
)


@dataclass(frozen=True)
class DnsSettings:
    """How to reach DNS; checked when built so a bad config fails at start-up, not per ban."""

    nameservers: tuple[str, ...] = ()
    """IP addresses; empty means the nameservers of /etc/resolv.conf."""
    port: int = 53
    """Used for every nameserver, those from /etc/resolv.conf too."""
    timeout: float = 2.0
    """Seconds for one query, retries included."""
    dnsbl_zones: tuple[str, ...] = ()
    dnsbl_budget: float = 4.0
    """Seconds for all zones of one ``dnsbl()`` call together."""

    def __post_init__(self) -> None:
        for server in self.nameservers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ValueError(f"nameserver {server!r} is not an IP address") from None
        if not 0 < self.port < 65536:
            raise ValueError(f"DNS port {self.port} is out of range")
        for label, value in (("timeout", self.timeout), ("dnsbl_budget", self.dnsbl_budget)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"DNS {label} must be a positive number of seconds, not {value}")
        for zone in self.dnsbl_zones:
            if normalize_hostname(zone) is None:
                raise ValueError(f"DNSBL zone {zone!r} is not a valid domain name")


@dataclass(frozen=True)
class ReverseResult:
    names: tuple[str, ...] = ()
    """Valid host names from the PTR records, lower case, no trailing dot."""
    confirmed: tuple[str, ...] = ()
    """Those of ``names`` whose A/AAAA records contain the address: only these are trustworthy."""
    error: str | None = None


@dataclass(frozen=True)
class DnsblListing:
    zone: str
    codes: tuple[str, ...]
    """Answer addresses, e.g. ``127.0.0.4``."""
    meanings: tuple[str, ...]
    """One per code, same order."""
    txt: str | None = None


@dataclass(frozen=True)
class DnsblError:
    zone: str
    reason: str
    """E.g. ``timeout``, ``SERVFAIL``, ``skipped: budget`` or the zone's own error code."""


@dataclass(frozen=True)
class DnsblResult:
    """Every configured zone appears exactly once: in listings, not_listed or errors."""

    listings: tuple[DnsblListing, ...] = ()
    not_listed: tuple[str, ...] = ()
    errors: tuple[DnsblError, ...] = ()

    @property
    def listed(self) -> bool:
        return bool(self.listings)


class _LookupError(Exception):
    """A query got no usable answer; the message is short and safe to log."""


def normalize_hostname(name: str) -> str | None:
    """Return ``name`` lower-cased without a trailing dot if it is a plain host name, else None.

    Plain means LDH labels of at most 63 characters and at most 253 characters in all. A last
    label of digits only is refused too, so that ``10.0.0.1`` never passes for a name.
    """
    if not name.isascii():
        return None
    host = name.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        return None
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label.encode()) for label in labels):
        return None
    if labels[-1].isdigit():
        return None
    return host


def _hostname_of(name: dns.name.Name) -> str | None:
    """Check the raw wire labels, so a label holding a dot cannot pass as two labels."""
    labels = name.labels[:-1] if name.is_absolute() else name.labels
    if not labels or not all(_LABEL.fullmatch(label.lower()) for label in labels):
        return None
    return normalize_hostname(b".".join(labels).decode("ascii"))


def _parse_address(text: str) -> Address | None:
    """One spelling per address: IPv4-mapped IPv6 becomes IPv4, a zone index is dropped."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.scope_id is not None:
            return ipaddress.IPv6Address(int(addr))
    return addr


def _dnsbl_stem(addr: Address) -> str:
    """``4.3.2.1`` for 1.2.3.4; for IPv6 all 32 nibbles, last first."""
    if isinstance(addr, ipaddress.IPv4Address):
        return ".".join(reversed(str(addr).split(".")))
    return ".".join(reversed(addr.exploded.replace(":", "")))


def _zone_tables(zone: str) -> tuple[dict[int, str], dict[int, str]]:
    for suffix, codes, errors in _ZONE_TABLES:
        if zone == suffix or zone.endswith("." + suffix):
            return codes, errors
    return {}, {}


def _clean_text(text: str) -> str | None:
    """Control and format characters (newlines, escapes, bidi overrides) become spaces."""
    cleaned = "".join(" " if _is_control(ch) else ch for ch in text)
    cleaned = " ".join(cleaned.split())[:MAX_TXT].rstrip()
    return cleaned or None


def _is_control(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp")


def _system_nameservers() -> tuple[str, ...]:
    try:
        configured = dns.resolver.Resolver(configure=True).nameservers
    except (dns.exception.DNSException, OSError):
        return ()
    found: list[str] = []
    for server in configured:
        if isinstance(server, str) and _parse_address(server) is not None:
            found.append(server)
    return tuple(found)


class Resolver:
    """Thread-safe: it keeps no state between calls, so several workers may share one."""

    def __init__(self, settings: DnsSettings) -> None:
        self.settings = settings
        self._nameservers = settings.nameservers or _system_nameservers()
        zones: list[str] = []
        for zone in settings.dnsbl_zones:
            host = normalize_hostname(zone)
            if host is not None and host not in zones:
                zones.append(host)
        self._zones = tuple(zones)

    @property
    def nameservers(self) -> tuple[str, ...]:
        return self._nameservers

    def forward(self, name: str) -> tuple[str, ...]:
        """Addresses of a host name read from a log line; () if invalid, unknown or unreachable.

        An invalid name is never sent: it is attacker text and must not become a query.
        """
        host = normalize_hostname(name)
        if host is None:
            return ()
        qname = dns.name.from_text(host)
        found: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                addrs = self._addresses(qname, rdtype, time.monotonic() + self.settings.timeout)
            except _LookupError as exc:
                if str(exc) == "timeout":
                    break
                continue
            found.extend(str(addr) for addr in addrs if str(addr) not in found)
        return tuple(found)

    def reverse(self, ip: str) -> ReverseResult:
        """PTR names of ``ip`` and which of them point back to it."""
        addr = _parse_address(ip)
        if addr is None:
            return ReverseResult(error="invalid address")
        timeout = self.settings.timeout
        start = time.monotonic()
        try:
            records = self._query(
                dns.reversename.from_address(str(addr)), dns.rdatatype.PTR, start + timeout
            )
        except _LookupError as exc:
            return ReverseResult(error=f"PTR lookup: {exc}")
        names: list[str] = []
        for record in records:
            if isinstance(record, PTR):
                host = _hostname_of(record.target)
                if host is not None and host not in names:
                    names.append(host)
        names = names[:MAX_NAMES]

        # All confirmations share one timeout: a PTR naming hosts in a zone whose servers never
        # answer must not multiply the wait.
        deadline = time.monotonic() + timeout
        rdtype = dns.rdatatype.A if addr.version == 4 else dns.rdatatype.AAAA
        confirmed: list[str] = []
        error: str | None = None
        for host in names[:MAX_CONFIRM]:
            if deadline - time.monotonic() < _MIN_QUERY_TIME:
                error = error or "forward confirmation: out of time"
                break
            try:
                addrs = self._addresses(dns.name.from_text(host), rdtype, deadline)
            except _LookupError as exc:
                error = error or f"forward lookup of {host}: {exc}"
                continue
            if addr in addrs:
                confirmed.append(host)
        return ReverseResult(tuple(names), tuple(confirmed), error)

    def dnsbl(self, ip: str) -> DnsblResult:
        """Look ``ip`` up in each configured zone, in order, until the budget is spent."""
        addr = _parse_address(ip)
        if addr is None:
            return DnsblResult(errors=tuple(DnsblError(z, "invalid address") for z in self._zones))
        stem = _dnsbl_stem(addr)
        deadline = time.monotonic() + self.settings.dnsbl_budget
        listings: list[DnsblListing] = []
        not_listed: list[str] = []
        errors: list[DnsblError] = []
        for zone in self._zones:
            if deadline - time.monotonic() < _MIN_QUERY_TIME:
                errors.append(DnsblError(zone, "skipped: budget"))
                continue
            try:
                qname = dns.name.from_text(f"{stem}.{zone}")
                answers = self._addresses(qname, dns.rdatatype.A, deadline)
            except dns.name.NameTooLong:
                errors.append(DnsblError(zone, "query name too long"))
                continue
            except _LookupError as exc:
                errors.append(DnsblError(zone, str(exc)))
                continue
            outcome = self._judge(zone, answers)
            if isinstance(outcome, str):
                errors.append(DnsblError(zone, outcome))
            elif outcome is None:
                not_listed.append(zone)
            else:
                codes, meanings = outcome
                txt = self._txt(qname, deadline)
                listings.append(DnsblListing(zone, codes, meanings, txt))
        return DnsblResult(tuple(listings), tuple(not_listed), tuple(errors))

    @staticmethod
    def _judge(
        zone: str, answers: tuple[Address, ...]
    ) -> tuple[tuple[str, ...], tuple[str, ...]] | str | None:
        """(codes, meanings) if listed, None if not, an error text if the zone refused."""
        meaning_of, error_of = _zone_tables(zone)
        listed: list[ipaddress.IPv4Address] = []
        refused: list[str] = []
        stray: list[str] = []
        for answer in sorted(set(answers), key=int):
            if not isinstance(answer, ipaddress.IPv4Address) or answer not in _LOOPBACK_V4:
                stray.append(str(answer))
            elif answer in _DNSBL_ERROR_V4:
                last = answer.packed[3]
                refused.append(error_of.get(last, f"zone error code {answer}"))
            else:
                listed.append(answer)
        # A refusal code next to a listing cannot be trusted either way: report, don't list.
        if refused:
            return "; ".join(refused)
        if listed:
            codes = tuple(str(code) for code in listed)
            meanings = tuple(
                meaning_of.get(code.packed[3], f"listed ({code})")
                if code.packed[:3] == b"\x7f\x00\x00"
                else f"listed ({code})"
                for code in listed
            )
            return codes, meanings
        if stray:
            # A resolver that answers NXDOMAIN with its own address (search page) looks listed.
            return f"answer outside 127.0.0.0/8 ignored ({', '.join(stray[:3])})"
        return None

    def _txt(self, qname: dns.name.Name, deadline: float) -> str | None:
        """The zone's explanation; optional, so any failure just leaves it out."""
        if deadline - time.monotonic() < _MIN_QUERY_TIME:
            return None
        try:
            records = self._query(qname, dns.rdatatype.TXT, deadline)
        except _LookupError:
            return None
        texts = [
            b"".join(record.strings).decode("utf-8", "replace")
            for record in records
            if isinstance(record, TXT)
        ]
        return _clean_text(" ".join(texts))

    def _addresses(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, deadline: float
    ) -> tuple[Address, ...]:
        found: list[Address] = []
        for record in self._query(qname, rdtype, deadline):
            if isinstance(record, A | AAAA):
                addr = _parse_address(record.address)
                if addr is not None and addr not in found:
                    found.append(addr)
        return tuple(found)

    def _query(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, deadline: float
    ) -> tuple[dns.rdata.Rdata, ...]:
        """Answer records (CNAMEs followed); () for NXDOMAIN or no data; _LookupError otherwise.

        Ends by ``deadline`` or after ``settings.timeout``, whichever comes first.
        """
        if not self._nameservers:
            raise _LookupError("no nameservers configured")
        stop = min(deadline, time.monotonic() + self.settings.timeout)
        usable = list(self._nameservers)
        failures: list[str] = []
        for round_ in range(_ATTEMPTS):
            servers = list(usable)
            for index, server in enumerate(servers):
                left = stop - time.monotonic()
                if left <= 0:
                    break
                # Share what is left among the attempts still to come, so a dead first server
                # leaves time for the next one and for the retry.
                attempts_left = len(servers) - index + (_ATTEMPTS - round_ - 1) * len(usable)
                try:
                    response = self._exchange(qname, rdtype, server, left / attempts_left)
                except dns.exception.Timeout:
                    failures.append("timeout")
                    continue
                except EOFError:  # a TCP server closed the connection without answering
                    usable.remove(server)
                    failures.append("connection closed")
                    continue
                except OSError:  # e.g. ICMP port unreachable, no route
                    usable.remove(server)
                    failures.append("unreachable")
                    continue
                except (dns.exception.DNSException, ValueError):
                    usable.remove(server)
                    failures.append("malformed response")
                    continue
                rcode = response.rcode()
                if rcode == dns.rcode.NXDOMAIN:
                    return ()
                if rcode != dns.rcode.NOERROR:
                    usable.remove(server)
                    failures.append(dns.rcode.to_text(rcode))
                    continue
                try:
                    if not isinstance(response, dns.message.QueryMessage):
                        raise dns.exception.FormError
                    answer = response.resolve_chaining().answer
                except dns.exception.DNSException:
                    usable.remove(server)
                    failures.append("malformed response")
                    continue
                return tuple(answer) if answer is not None else ()
            if not usable or stop - time.monotonic() <= 0:
                break
        reasons = list(dict.fromkeys(failures)) or ["timeout"]
        raise _LookupError(", ".join(reasons))

    def _exchange(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, server: str, timeout: float
    ) -> dns.message.Message:
        """One attempt: UDP, then TCP within the same time if the answer was truncated."""
        end = time.monotonic() + timeout
        request = dns.message.make_query(qname, rdtype, use_edns=0, payload=_EDNS_PAYLOAD)
        try:
            # ignore_unexpected/ignore_errors: a forged or garbled packet is dropped and the
            # real answer still awaited, instead of failing the query.
            return dns.query.udp(
                request,
                server,
                timeout=timeout,
                port=self.settings.port,
                ignore_unexpected=True,
                raise_on_truncation=True,
                ignore_errors=True,
            )
        except dns.message.Truncated:
            left = end - time.monotonic()
            if left <= 0:
                raise dns.exception.Timeout from None
            return dns.query.tcp(request, server, timeout=left, port=self.settings.port)
