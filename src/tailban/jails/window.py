"""An exact sliding window of failure times per address.

fail2ban keeps a count and rescales it by rate; here every failure's own timestamp is kept
so "maxretry failures within findtime" means exactly that. Memory is what a botnet storm
costs: most addresses fail once, so an address with one failure holds just its time (a
float), and a list only from the second failure on (a deque per address cost ~700 bytes).
Idle addresses are pruned in ``expire``.
"""

from __future__ import annotations

from bisect import bisect_left, insort


class FailureWindow:
    """Failure timestamps per address within ``findtime`` seconds."""

    __slots__ = ("findtime", "_times")

    def __init__(self, findtime: float) -> None:
        self.findtime = findtime
        # one failure: its time; more: their times, sorted
        self._times: dict[str, float | list[float]] = {}

    def add(self, ip: str, when: float, count: int = 1) -> int:
        """Record ``count`` failures at ``when``; return how many fall in the window."""
        held = self._times.get(ip)
        if held is None:
            self._times[ip] = when if count == 1 else [when] * count
            return count
        if isinstance(held, list):
            times = held
        else:
            times = self._times[ip] = [held]
        if when < times[-1]:
            # Slightly out-of-order lines (pflogsumm-style merges): keep the list sorted.
            for _ in range(count):
                insort(times, when)
        elif count == 1:
            times.append(when)
        else:
            times.extend([when] * count)
        cutoff = times[-1] - self.findtime
        if times[0] < cutoff:
            del times[:bisect_left(times, cutoff)]
        return len(times)

    def count(self, ip: str) -> int:
        held = self._times.get(ip)
        if held is None:
            return 0
        return len(held) if isinstance(held, list) else 1

    def first_seen(self, ip: str) -> float | None:
        held = self._times.get(ip)
        if held is None:
            return None
        return held[0] if isinstance(held, list) else held

    def forget(self, ip: str) -> None:
        self._times.pop(ip, None)

    def expire(self, now: float) -> int:
        """Drop addresses whose newest failure left the window; return how many."""
        cutoff = now - self.findtime
        stale = [ip for ip, held in self._times.items()
                 if (held[-1] if isinstance(held, list) else held) < cutoff]
        for ip in stale:
            del self._times[ip]
        return len(stale)

    def __len__(self) -> int:
        return len(self._times)

    def addresses(self) -> list[str]:
        return list(self._times)
