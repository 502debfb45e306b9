"""Grouping bans into digest mails: a pure rule, time passed in, no clock and no I/O.

The choice: the first ban after a quiet time *opens* a window of ``period`` seconds and is
held back with everything else that arrives inside it; when the window closes, all of it
leaves as one batch. So a storm of 10,000 bans is one mail, and there is never more than
one mail per ``period`` - at the price that a lone ban waits up to ``period`` seconds.
(Sending the first ban at once would make every storm cost two mails and the rate
depend on timing; a predictable rate is what a digest is for.)

``now`` should be wall-clock time (``time.time()``): batch start/end are shown in mails.
With ``period == 0`` there is no window: every ``add`` returns its own batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tailban.notify.mail import BanMailFacts


@dataclass(frozen=True, slots=True)
class Batch:
    """Bans for one mail and the span they cover."""

    facts: tuple[BanMailFacts, ...]
    start: float
    end: float


class MailDigest:
    """Collects bans per window; the caller sends what ``add``/``due``/``flush`` return."""

    def __init__(self, period: float) -> None:
        if not (math.isfinite(period) and period >= 0):
            raise ValueError(f"digest period {period!r} must be 0 or a positive number")
        self.period = float(period)
        self._pending: list[BanMailFacts] = []
        self._start: float | None = None

    @property
    def pending(self) -> int:
        """Bans held back, waiting for their window to close."""
        return len(self._pending)

    def add(self, facts: BanMailFacts, now: float) -> list[Batch]:
        """Record a ban; returns batches to send now (a closed window, or this ban alone)."""
        if self.period == 0:
            return [Batch((facts,), now, now)]
        ready = self.due(now)
        if self._start is None:
            self._start = now
        self._pending.append(facts)
        return ready

    def due(self, now: float) -> list[Batch]:
        """The batch whose window has closed by ``now``, if any (call at ``next_due``)."""
        if self._start is None or now < self._start + self.period:
            return []
        end = self._start + self.period
        return [self._take(end)]

    def next_due(self) -> float | None:
        """When the open window closes; None when nothing is held back."""
        return None if self._start is None else self._start + self.period

    def flush(self, now: float) -> list[Batch]:
        """Everything held back, window closed or not: at shutdown nothing is lost."""
        if self._start is None:
            return []
        return [self._take(max(now, self._start))]

    def _take(self, end: float) -> Batch:
        assert self._start is not None
        batch = Batch(tuple(self._pending), self._start, end)
        self._pending = []
        self._start = None
        return batch
