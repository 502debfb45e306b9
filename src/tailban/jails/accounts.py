"""Per-account counting: one account attacked from many addresses (a distributed,
low-and-slow attack no per-address counter sees, corpus README caveat 9).

Pure: failures with a user name in, alerts out; time comes with the failures.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

_MAX_ACCOUNTS = 100_000  # user names are attacker text: bound the table


@dataclass(frozen=True, slots=True)
class AccountAlert:
    """``failures`` failures for ``user`` from ``addresses`` within the window, at ``time``."""

    jail: str
    user: str
    failures: int
    addresses: tuple[str, ...]
    time: float


class AccountWindow:
    """Failures per account within ``findtime``; at ``maxretry`` it alerts and starts over."""

    __slots__ = ("jail", "maxretry", "findtime", "_seen")

    def __init__(self, jail: str, maxretry: int, findtime: float) -> None:
        self.jail = jail
        self.maxretry = maxretry
        self.findtime = findtime
        self._seen: dict[str, deque[tuple[float, str]]] = {}

    def add(self, user: str, ip: str, when: float) -> AccountAlert | None:
        seen = self._seen.get(user)
        if seen is None:
            if len(self._seen) >= _MAX_ACCOUNTS:
                self.expire(when)
                if len(self._seen) >= _MAX_ACCOUNTS:
                    return None  # flooded with invented names: per-address counting still works
            seen = self._seen[user] = deque()
        seen.append((when, ip))
        cutoff = when - self.findtime
        while seen and seen[0][0] < cutoff:
            seen.popleft()
        if len(seen) < self.maxretry:
            return None
        addresses = tuple(dict.fromkeys(ip for _, ip in seen))
        del self._seen[user]
        return AccountAlert(self.jail, user, self.maxretry, addresses, when)

    def expire(self, now: float) -> None:
        cutoff = now - self.findtime
        for user in [u for u, seen in self._seen.items() if not seen or seen[-1][0] < cutoff]:
            del self._seen[user]

    def __len__(self) -> int:
        return len(self._seen)
