"""Who holds an attacking address: a whois client that speaks TCP port 43 itself.

Every byte of an answer is text typed by whoever registered the network, so the client
bounds how much it reads and how long it waits, and hands out only short, one-line,
control-free fields: they end up in logs, e-mails and terminals. No ``whois`` binary and
no shell are involved, so nothing in an answer is ever run.

Registries throttle and ban clients that ask too often, hence the per-network cache (an
attacker's neighbours usually come from the same network) and the token bucket.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from tailban.core.addresses import IPAddress, IPNetwork, normalise_ip

__all__ = [
    "DEFAULT_CACHE_TTL",
    "MAX_FIELD",
    "WHOIS_PORT",
    "Connect",
    "Resolve",
    "WhoisClient",
    "WhoisInfo",
]

WHOIS_PORT = 43
MAX_FIELD = 200
"""Longest text kept from any answer field."""
DEFAULT_CACHE_TTL = 7 * 24 * 3600.0
"""Registrations change rarely; a week keeps the registries' quotas untouched."""

Connect = Callable[[tuple[str, int], float], socket.socket]
"""Opens a TCP connection to (host, port) within the timeout; socket.create_connection."""
Resolve = Callable[[str, int], tuple[str, int]]
"""Maps a server named in an answer to the address really dialled (tests: loopback)."""

# ARIN answers a bare address with a summary only; "n +" asks for the full network record.
_ARIN = "whois.arin.net"
# A parse never looks further into one line; a field is cut to MAX_FIELD anyway.
_MAX_LINE = 4096
# More CIDRs than this for one range are shown as the range itself.
_MAX_CIDRS = 8
# Shorter prefixes are never cached: one answer must not silence lookups for a continent.
_MIN_CACHED_PREFIX = {4: 8, 6: 16}
_MAX_CACHE_ENTRIES = 10_000

# C0, DEL, C1 (NEL included), line/paragraph separators, bidi controls and the BOM: any of
# them could split a log line, forge a mail header or repaint a terminal.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]+")
_KEY_VALUE = re.compile(r"([A-Za-z][A-Za-z0-9_-]{0,39}):(.*)")
_ABUSE_COMMENT = re.compile(r"[%#]\s*abuse contact for .*? is '([^']*)'", re.IGNORECASE)
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_EMAIL = re.compile(rf"[A-Za-z0-9._%+=-]+@{_LABEL}(?:\.{_LABEL})+")
_RANGE = re.compile(r"(\S+)\s*-\s*(\S+)")

_RANGE_KEYS = ("inetnum", "inet6num", "netrange")
_REFERRAL_KEYS = frozenset({"refer", "whois", "referralserver"})
_ORG_KEYS = ("orgname", "org-name", "owner", "descr", "organisation", "organization")
_ABUSE_KEYS = ("abuse-mailbox", "orgabuseemail", "abuse-comment")
_DATA_KEYS = frozenset({"country", "netname", *_ORG_KEYS, *_ABUSE_KEYS})


@dataclass(frozen=True, slots=True)
class WhoisInfo:
    """What the registries say about one address; every text field is clean and short.

    ``servers`` is the chain that produced the data ("host" or "host:port"); ``cached`` says
    the answer came from the per-network cache, so this call asked nobody. ``error`` is set
    when the chain stopped early; fields found before that point are still filled in.
    """

    ip: str
    network: str | None = None
    country: str | None = None
    netname: str | None = None
    org: str | None = None
    abuse: str | None = None
    servers: tuple[str, ...] = ()
    error: str | None = None
    cached: bool = False

    def summary(self) -> str:
        """One log line; the fields are already free of control characters."""
        parts = [self.ip]
        parts += [text for text in (self.network, self.netname) if text]
        if self.org:
            parts.append(f"({self.org})")
        if self.country:
            parts.append(self.country)
        if self.abuse:
            parts.append(f"abuse {self.abuse}")
        if len(parts) == 1:
            parts.append("no whois data")
        if self.error:
            parts.append(f"[{self.error}]")
        return " ".join(parts)


class _Failure(Exception):
    """One query failed; the text becomes WhoisInfo.error."""


@dataclass(slots=True)
class _Section:
    """The lines from one network record up to the next; first non-empty value per key."""

    fields: dict[str, str] = field(default_factory=dict)
    networks: tuple[IPNetwork, ...] = ()


@dataclass(slots=True)
class _Answer:
    """The interesting part of one server's answer, still unvalidated text."""

    sections: tuple[_Section, ...]
    network: str | None
    containing: IPNetwork | None
    referral: tuple[str, int] | None

    def has_data(self) -> bool:
        """A bare referral or a "no entries found" is not data."""
        return self.network is not None or any(
            key in section.fields for section in self.sections for key in _DATA_KEYS)


@dataclass(slots=True)
class _CacheEntry:
    expires: float
    info: WhoisInfo


def _clean(value: str) -> str | None:
    """One line of plain text: unsafe characters become spaces, runs of space collapse."""
    text = " ".join(_UNSAFE.sub(" ", value[:_MAX_LINE]).split())
    return text[:MAX_FIELD].rstrip() or None


def _valid_email(value: str) -> str | None:
    # Validated before cleaning: a CR inside must reject the address, not be mended.
    text = value.strip()
    if len(text) > 254 or not _EMAIL.fullmatch(text):
        return None
    return text


def _valid_country(value: str) -> str | None:
    # "EU # Country is really world wide" happens; the code is the first word.
    words = value.split(None, 1)
    if not words or not _COUNTRY.fullmatch(words[0]):
        return None
    return words[0].upper()


def _parse_referral(value: str) -> tuple[str, int] | None:
    """whois://host[:port] or a bare host; rwhois:// and anything else is not followed."""
    text = value.strip()
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme.lower() != "whois":
            return None
    text = text.rstrip("/")
    host, sep, port_text = text.partition(":")
    port = WHOIS_PORT
    if sep:
        if not port_text.isdigit() or len(port_text) > 5:
            return None
        port = int(port_text)
    if not 0 < port < 65536 or len(host) > 253 or not _HOST.fullmatch(host):
        return None
    if _private_literal(host):
        return None  # an answer must not steer us at our own LAN or loopback services
    return host.lower(), port


def _private_literal(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def _parse_network(value: str) -> tuple[IPNetwork, ...]:
    """CIDR lists ("a/9, b/10"), ranges ("a - b") and LACNIC's short "200.3.12/22"."""
    text = value.strip()
    found: list[IPNetwork] = []
    try:
        match = _RANGE.fullmatch(text)
        if match:
            first = ipaddress.ip_address(match.group(1))
            last = ipaddress.ip_address(match.group(2))
            # summarize_address_range raises ValueError for last < first.
            if isinstance(first, ipaddress.IPv4Address) and isinstance(last, ipaddress.IPv4Address):
                return tuple(ipaddress.summarize_address_range(first, last))
            if isinstance(first, ipaddress.IPv6Address) and isinstance(last, ipaddress.IPv6Address):
                return tuple(ipaddress.summarize_address_range(first, last))
            return ()
        for item in text.split(","):
            cidr = item.strip()
            if not cidr:
                continue
            addr, slash, bits = cidr.partition("/")
            if slash and ":" not in addr and 0 < addr.count(".") < 3:
                addr += ".0" * (3 - addr.count("."))
            found.append(ipaddress.ip_network(f"{addr}{slash}{bits}", strict=False))
    except ValueError:
        return ()
    return tuple(found)


def _parse(text: str, addr: IPAddress) -> _Answer:
    """Split an answer into network records and pick the most specific one holding addr.

    ARIN lists the parent allocation before the customer's block, RIPE puts the abuse
    comment before the inetnum: lines before the first record are a shared fallback.
    """
    preamble = _Section()
    sections: list[_Section] = []
    current = preamble
    referral: tuple[str, int] | None = None
    for raw in text.split("\n"):
        line = raw[:_MAX_LINE].rstrip()
        if line.startswith(("%", "#")):
            comment = _ABUSE_COMMENT.match(line)
            if comment:
                current.fields.setdefault("abuse-comment", comment.group(1))
            continue
        match = _KEY_VALUE.match(line)
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        if not value:
            continue
        if key in _RANGE_KEYS:
            current = _Section()
            sections.append(current)
        current.fields.setdefault(key, value)
        if referral is None and key in _REFERRAL_KEYS:
            referral = _parse_referral(value)
    if not sections:
        sections.append(preamble)
        preamble = _Section()

    best: _Section | None = None
    containing: IPNetwork | None = None
    for section in sections:
        spec = section.fields.get("cidr") or next(
            (section.fields[k] for k in _RANGE_KEYS if k in section.fields), None)
        section.networks = _parse_network(spec) if spec else ()
        for net in section.networks:
            # ">=": among equals the later record is the more specific one (ARIN's order).
            if addr in net and (containing is None or net.prefixlen >= containing.prefixlen):
                best, containing = section, net
    chosen = best or sections[0]

    if chosen.networks and len(chosen.networks) <= _MAX_CIDRS:
        network = ", ".join(net.compressed for net in chosen.networks)
    else:  # unparsable or too fragmented: the registry's own words
        network = next((chosen.fields[k] for k in _RANGE_KEYS if k in chosen.fields),
                       chosen.fields.get("cidr", ""))
    return _Answer((chosen, preamble), _clean(network), containing, referral)


def _first(sections: Iterable[_Section], keys: Iterable[str],
           check: Callable[[str], str | None] = _clean) -> str | None:
    for section in sections:
        for key in keys:
            value = section.fields.get(key)
            if value is not None:
                good = check(value)
                if good is not None:
                    return _clean(good)
    return None


def _label(host: str, port: int) -> str:
    return host if port == WHOIS_PORT else f"{host}:{port}"


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _default_connect(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


class _TokenBucket:
    """Bursts up to one minute's allowance, refilled continuously on the given clock."""

    def __init__(self, per_minute: float, clock: Callable[[], float]) -> None:
        self._capacity = max(1.0, per_minute)
        self._rate = per_minute / 60.0
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        elapsed = max(0.0, now - self._last)  # a clock that steps back grants nothing
        self._last = now
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class WhoisClient:
    """Asks IANA, follows the referral to the registry, caches the answer per network.

    Thread-safe; the network I/O runs outside the lock, so concurrent lookups of one new
    network may both ask. ``rate_per_minute`` counts TCP queries (referrals included),
    because that is what the registries count; None disables the limit.
    """

    def __init__(
        self,
        iana: tuple[str, int] = ("whois.iana.org", WHOIS_PORT),
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        rate_per_minute: float | None = 30,
        clock: Callable[[], float] = time.monotonic,
        connect: Connect | None = None,
        resolve: Resolve | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        max_referrals: int = 3,
    ) -> None:
        if timeout <= 0 or max_bytes <= 0 or cache_ttl < 0 or max_referrals < 0:
            raise ValueError("timeout and max_bytes must be positive, cache_ttl and "
                             "max_referrals not negative")
        if rate_per_minute is not None and rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive (None: unlimited)")
        self._iana = (iana[0].lower(), iana[1])
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._clock = clock
        self._connect: Connect = connect or _default_connect
        self._resolve: Resolve = resolve or (lambda host, port: (host, port))
        self._ttl = cache_ttl
        self._max_referrals = max_referrals
        self._bucket = _TokenBucket(rate_per_minute, clock) if rate_per_minute else None
        self._lock = threading.Lock()
        self._cache: dict[IPNetwork, _CacheEntry] = {}
        self._prefixes: dict[int, set[int]] = {4: set(), 6: set()}

    def lookup(self, ip: str | IPAddress) -> WhoisInfo:
        """Never raises for bad input or a bad network: problems come back in ``error``."""
        text = normalise_ip(str(ip))
        if text is None:
            return WhoisInfo(ip=_clean(str(ip)) or "", error="not an IP address")
        addr = ipaddress.ip_address(text)
        if not addr.is_global:
            return WhoisInfo(ip=text, error="not a public address")
        hit = self._cached(addr)
        if hit is not None:
            return replace(hit, ip=text, cached=True)
        return self._ask(addr, text)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._prefixes = {4: set(), 6: set()}

    def _cached(self, addr: IPAddress) -> WhoisInfo | None:
        now = self._clock()
        with self._lock:
            for bits in sorted(self._prefixes[addr.version], reverse=True):
                net = ipaddress.ip_network((addr, bits), strict=False)
                entry = self._cache.get(net)
                if entry is None:
                    continue
                if entry.expires > now:
                    return entry.info
                del self._cache[net]
        return None

    def _store(self, net: IPNetwork, info: WhoisInfo) -> None:
        if net.prefixlen < _MIN_CACHED_PREFIX[net.version] or self._ttl <= 0:
            return
        now = self._clock()
        with self._lock:
            if len(self._cache) >= _MAX_CACHE_ENTRIES:
                for key in [k for k, e in self._cache.items() if e.expires <= now]:
                    del self._cache[key]
                while len(self._cache) >= _MAX_CACHE_ENTRIES:
                    del self._cache[next(iter(self._cache))]  # the oldest insertion
            self._cache[net] = _CacheEntry(now + self._ttl, info)
            self._prefixes[net.version].add(net.prefixlen)

    def _take_token(self) -> bool:
        if self._bucket is None:
            return True
        with self._lock:
            return self._bucket.take()

    def _ask(self, addr: IPAddress, text: str) -> WhoisInfo:
        servers: list[str] = []
        visited: set[tuple[str, int]] = set()
        target: tuple[str, int] | None = self._iana
        best: _Answer | None = None
        best_is_last = False
        error: str | None = None
        while target is not None:
            host, port = target
            if not self._take_token():
                error = "rate limited"
                break
            visited.add(target)
            servers.append(_label(host, port))
            try:
                answer = _parse(self._query(host, port, addr), addr)
            except _Failure as exc:
                error = str(exc)
                break
            # A registry that knows nothing must not erase what the referrer said.
            best_is_last = answer.has_data()
            if best_is_last:
                best = answer
            target = answer.referral
            if target in visited or len(servers) > self._max_referrals:
                target = None

        info = WhoisInfo(ip=text, servers=tuple(servers), error=_clean(error) if error else None)
        if best is None:
            return info
        parts = best.sections
        info = replace(
            info,
            network=best.network,
            country=_first(parts, ("country",), _valid_country),
            netname=_first(parts, ("netname",)),
            org=_first(parts, _ORG_KEYS),
            abuse=_first(parts, _ABUSE_KEYS, _valid_email),
        )
        if error is None and best_is_last and best.containing is not None:
            self._store(best.containing, replace(info, ip=""))
        return info

    def _query(self, host: str, port: int, addr: IPAddress) -> str:
        """One question, one answer; a single deadline covers connect, send and read."""
        label = _label(host, port)
        query = f"n + {addr}" if host == _ARIN else str(addr)
        deadline = time.monotonic() + self._timeout
        try:
            sock = self._connect(self._resolve(host, port), self._timeout)
        except TimeoutError as exc:
            raise _Failure(f"timeout connecting to {label}") from exc
        except OSError as exc:
            raise _Failure(f"cannot connect to {label}: {_describe(exc)}") from exc
        with sock:
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock.sendall(query.encode("ascii") + b"\r\n")
                data = self._receive(sock, deadline)
            except TimeoutError as exc:
                raise _Failure(f"timeout reading from {label}") from exc
            except OSError as exc:
                raise _Failure(f"error talking to {label}: {_describe(exc)}") from exc
        return data.decode("utf-8", errors="replace")

    def _receive(self, sock: socket.socket, deadline: float) -> bytes:
        """Until EOF or max_bytes, whichever first: a server cannot make us read more."""
        chunks: list[bytes] = []
        total = 0
        while total < self._max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(min(65536, self._max_bytes - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
