"""The set of active bans with their expiry, as a pure in-memory structure.

The daemon keeps it in step with the store and the firewall; the core asks it whether an
address is banned and when bans end. Time is always passed in.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from tailban.core.events import Ban, Unban


class BanLedger:
    """Active bans keyed by (jail, ip), with a heap for the next expiry."""

    __slots__ = ("_bans", "_expiry")

    def __init__(self, bans: Iterable[Ban] = ()) -> None:
        self._bans: dict[tuple[str, str], Ban] = {}
        self._expiry: list[tuple[float, str, str]] = []
        for ban in bans:
            self.add(ban)

    def add(self, ban: Ban) -> None:
        self._bans[(ban.jail, ban.ip)] = ban
        if ban.expires_at is not None:
            heapq.heappush(self._expiry, (ban.expires_at, ban.jail, ban.ip))

    def remove(self, jail: str, ip: str) -> Ban | None:
        return self._bans.pop((jail, ip), None)

    def get(self, jail: str, ip: str) -> Ban | None:
        return self._bans.get((jail, ip))

    def is_banned(self, jail: str, ip: str, now: float) -> bool:
        ban = self._bans.get((jail, ip))
        return ban is not None and (ban.expires_at is None or ban.expires_at > now)

    def jails_of(self, ip: str) -> list[str]:
        return sorted(jail for (jail, addr) in self._bans if addr == ip)

    def expire(self, now: float) -> list[Unban]:
        """Remove and return every ban whose time is up."""
        ended: list[Unban] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            at, jail, ip = heapq.heappop(heap)
            ban = self._bans.get((jail, ip))
            if ban is not None and ban.expires_at is not None and ban.expires_at <= now:
                del self._bans[(jail, ip)]
                ended.append(Unban(jail, ip, at, "expired"))
        return ended

    def next_expiry(self) -> float | None:
        """When the next ban ends (stale heap entries of lifted bans are skipped)."""
        heap = self._expiry
        while heap:
            at, jail, ip = heap[0]
            ban = self._bans.get((jail, ip))
            if ban is not None and ban.expires_at == at:
                return at
            heapq.heappop(heap)
        return None

    def __iter__(self) -> Iterator[Ban]:
        return iter(list(self._bans.values()))

    def __len__(self) -> int:
        return len(self._bans)

    def in_jail(self, jail: str) -> list[Ban]:
        return [ban for (name, _), ban in self._bans.items() if name == jail]
