"""Address parsing and the ignore list; every address is normalised once, at the edge."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from socket import inet_aton

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


CANONICAL_V4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                           r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def normalise_ip(text: str) -> str | None:
    """The canonical text of an address, or None when it is not one.

    ``::ffff:1.2.3.4`` becomes ``1.2.3.4`` (it is the IPv4 peer), leading zeros in IPv4
    octets are read as decimal like fail2ban does (``192.030.0.6`` -> ``192.30.0.6``).
    """
    if CANONICAL_V4.fullmatch(text):
        return text  # the common case, ten times cheaper than ipaddress
    candidate = text.strip().strip("[]")
    if not candidate or len(candidate) > 45:
        return None
    try:
        addr = ipaddress.ip_address(candidate)
    except ValueError:
        if candidate.count(".") == 3 and ":" not in candidate:
            parts = candidate.split(".")
            if all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
                return ".".join(str(int(p)) for p in parts)
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return addr.compressed


def normalise_target(text: str) -> str | None:
    """An address or a network in canonical form (``198.51.100.0/24``), else None.

    A /32 or /128 is the address itself, so one host is never two different targets.
    """
    candidate = text.strip()
    if "/" not in candidate:
        return normalise_ip(candidate)
    try:
        net = ipaddress.ip_network(candidate, strict=False)
    except ValueError:
        return None
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return net.compressed


def prefix_of(ip: str, prefix4: int, prefix6: int) -> str:
    """The network of ``prefix4``/``prefix6`` bits holding ``ip`` (ip itself at full length)."""
    bits = prefix6 if ":" in ip else prefix4
    if bits >= (128 if ":" in ip else 32):
        return ip
    return ipaddress.ip_network(f"{ip}/{bits}", strict=False).compressed


def ip_family(text: str) -> int:
    """4 or 6 for a normalised address."""
    return 6 if ":" in text else 4


class IgnoreList:
    """Addresses and networks that are never counted (fail2ban's ``ignoreip``)."""

    __slots__ = ("_networks", "_cache", "_v4")

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self._networks = tuple(networks)
        self._cache: dict[str, bool] = {}
        # IPv4 networks as (first address, mask) integers: a storm's new addresses are
        # checked without building ipaddress objects
        self._v4 = tuple((int(n.network_address), int(n.netmask)) for n in self._networks
                         if n.version == 4)

    @classmethod
    def parse(cls, text: str) -> IgnoreList:
        """Space or comma separated addresses/CIDRs; raises ValueError naming the bad item."""
        nets: list[IPNetwork] = []
        for item in text.replace(",", " ").split():
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"not an address or network: {item!r}") from None
        return cls(nets)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return self._networks

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IgnoreList) and self._networks == other._networks

    def __hash__(self) -> int:
        return hash(self._networks)

    def __repr__(self) -> str:
        return f"IgnoreList({' '.join(str(n) for n in self._networks)!r})"

    def __contains__(self, ip: str) -> bool:
        hit = self._cache.get(ip)
        if hit is None:
            if CANONICAL_V4.fullmatch(ip):
                # cheap enough to answer each time: a storm's addresses are not kept
                value = int.from_bytes(inet_aton(ip), "big")
                for first, mask in self._v4:  # noqa: SIM110 - a loop is cheaper than any()
                    if value & mask == first:
                        return True
                return False
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            hit = any(addr.version == net.version and addr in net for net in self._networks)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[ip] = hit
        return hit
