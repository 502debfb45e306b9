"""An exact sliding window of failure times per address.

fail2ban keeps a count and rescales it by rate; here every failure's own timestamp is kept
(in a deque pruned by ``findtime``) so "maxretry failures within findtime" means exactly
that. Memory is bounded by pruning idle addresses in ``expire``.
"""

from __future__ import annotations

from collections import deque


class FailureWindow:
    """Failure timestamps per address within ``findtime`` seconds."""

    __slots__ = ("findtime", "_times")

    def __init__(self, findtime: float) -> None:
        self.findtime = findtime
        self._times: dict[str, deque[float]] = {}

    def add(self, ip: str, when: float, count: int = 1) -> int:
        """Record ``count`` failures at ``when``; return how many fall in the window."""
        times = self._times.get(ip)
        if times is None:
            times = self._times[ip] = deque()
        if times and when < times[-1]:
            # Slightly out-of-order lines (pflogsumm-style merges): keep the deque sorted.
            items = sorted([*times, *([when] * count)])
            times.clear()
            times.extend(items)
            newest = times[-1]
        else:
            if count == 1:
                times.append(when)
            else:
                times.extend([when] * count)
            newest = when
        cutoff = newest - self.findtime
        while times and times[0] < cutoff:
            times.popleft()
        return len(times)

    def count(self, ip: str) -> int:
        times = self._times.get(ip)
        return len(times) if times else 0

    def first_seen(self, ip: str) -> float | None:
        times = self._times.get(ip)
        return times[0] if times else None

    def forget(self, ip: str) -> None:
        self._times.pop(ip, None)

    def expire(self, now: float) -> int:
        """Drop addresses whose newest failure left the window; return how many."""
        cutoff = now - self.findtime
        stale = [ip for ip, times in self._times.items() if not times or times[-1] < cutoff]
        for ip in stale:
            del self._times[ip]
        return len(stale)

    def __len__(self) -> int:
        return len(self._times)

    def addresses(self) -> list[str]:
        return list(self._times)
