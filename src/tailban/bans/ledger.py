"""The set of active bans with their expiry, as a pure in-memory structure.

The daemon keeps it in step with the store and the firewall; the core asks it whether an
address is banned and when bans end. Time is always passed in.

A ban is kept without the log line that caused it: the store keeps the line (``tailban
banned`` reads it there), and 10,000 bans' lines would be 1.4 MiB of a daemon that aims at
40 MiB after such a storm.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from tailban.core.events import Ban, Unban


class BanLedger:
    """Active bans per jail and address, with a heap for the next expiry."""

    __slots__ = ("_jails", "_expiry", "_size")

    def __init__(self, bans: Iterable[Ban] = ()) -> None:
        self._jails: dict[str, dict[str, Ban]] = {}
        self._expiry: list[tuple[float, str, str]] = []
        self._size = 0
        for ban in bans:
            self.add(ban)

    def add(self, ban: Ban) -> None:
        """Record ``ban`` (its line is not kept: see the module's docstring)."""
        if ban.line:
            ban = Ban(ban.jail, ban.ip, ban.banned_at, ban.expires_at, ban.failures, "",
                      ban.source)
        jail = self._jails.get(ban.jail)
        if jail is None:
            jail = self._jails[ban.jail] = {}
        if ban.ip not in jail:
            self._size += 1
        jail[ban.ip] = ban
        if ban.expires_at is not None:
            heapq.heappush(self._expiry, (ban.expires_at, ban.jail, ban.ip))

    def remove(self, jail: str, ip: str) -> Ban | None:
        bans = self._jails.get(jail)
        ban = bans.pop(ip, None) if bans is not None else None
        if ban is not None:
            self._size -= 1
        return ban

    def get(self, jail: str, ip: str) -> Ban | None:
        bans = self._jails.get(jail)
        return bans.get(ip) if bans is not None else None

    def is_banned(self, jail: str, ip: str, now: float) -> bool:
        bans = self._jails.get(jail)
        ban = bans.get(ip) if bans is not None else None
        return ban is not None and (ban.expires_at is None or ban.expires_at > now)

    def jails_of(self, ip: str) -> list[str]:
        return sorted(name for name, bans in self._jails.items() if ip in bans)

    def expire(self, now: float) -> list[Unban]:
        """Remove and return every ban whose time is up."""
        ended: list[Unban] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            at, jail, ip = heapq.heappop(heap)
            bans = self._jails.get(jail)
            ban = bans.get(ip) if bans is not None else None
            if bans is not None and ban is not None and ban.expires_at is not None \
                    and ban.expires_at <= now:
                del bans[ip]
                self._size -= 1
                ended.append(Unban(jail, ip, at, "expired"))
        return ended

    def next_expiry(self) -> float | None:
        """When the next ban ends (stale heap entries of lifted bans are skipped)."""
        heap = self._expiry
        while heap:
            at, jail, ip = heap[0]
            bans = self._jails.get(jail)
            ban = bans.get(ip) if bans is not None else None
            if ban is not None and ban.expires_at == at:
                return at
            heapq.heappop(heap)
        return None

    def __iter__(self) -> Iterator[Ban]:
        return iter([ban for bans in list(self._jails.values()) for ban in bans.values()])

    def __len__(self) -> int:
        return self._size

    def count_in(self, jail: str) -> int:
        return len(self._jails.get(jail, ()))

    def in_jail(self, jail: str) -> list[Ban]:
        return list(self._jails.get(jail, {}).values())
