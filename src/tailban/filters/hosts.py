"""What a filter's host capture stands for: an address, a host name for usedns, or nothing.

Shared by the built-in matcher and the matcher of filter files, so both read hosts the same
way and neither keeps a storm's plain IPv4 addresses in a cache.
"""

from __future__ import annotations

import re

from tailban.core.addresses import CANONICAL_V4, normalise_ip

# at least one letter: "1.2.3" is a broken address, not a name
_NAME = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9_.-]+")
_MAX_CACHED = 4096  # host texts that are not plain IPv4 (IPv6, names)


class HostAddresses:
    """Host text -> normalised address, or None for a host name (or garbage)."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, str | None] = {}

    def address(self, host: str) -> str | None:
        if CANONICAL_V4.fullmatch(host):
            return host  # the common case: nothing to cache
        cache = self._cache
        try:
            return cache[host]
        except KeyError:
            pass
        ip = normalise_ip(host)
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[host] = ip
        return ip


def is_host_name(host: str) -> bool:
    """A name usedns may resolve (not an address, not attacker punctuation)."""
    return ":" not in host and _NAME.fullmatch(host) is not None
