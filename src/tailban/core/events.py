"""Events that flow through the pipeline: frozen values, cheap to create and compare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Failure(NamedTuple):
    """One failed authentication seen in a log.

    ``host`` is the raw text the filter captured (an address or a host name); ``ip`` is the
    normalised address, or None when ``host`` is a name that still needs resolving.
    ``count`` is the failure's weight (N for a line that stands for N attempts).

    A named tuple, not a frozen dataclass: made once per matched line, and a tuple costs a
    sixth of the time to create.
    """

    ip: str | None
    host: str
    time: float
    user: str | None
    rule: str
    count: int = 1  # type: ignore[assignment]  # shadows tuple.count, which nobody calls
    line: str = ""


class Success(NamedTuple):
    """A successful login: some policies clear counters on it, reports count it."""

    ip: str
    time: float
    user: str | None
    rule: str
    method: str | None = None  # publickey, password, PLAIN, ... when the line says


@dataclass(frozen=True, slots=True)
class Ban:
    """A decision to block ``ip`` for ``jail`` until ``expires_at`` (None: forever)."""

    jail: str
    ip: str
    banned_at: float
    expires_at: float | None
    failures: int = 0
    line: str = ""
    source: str = "log"

    def remaining(self, now: float) -> float | None:
        """Seconds left, None for a permanent ban; never below zero."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - now)


@dataclass(frozen=True, slots=True)
class Unban:
    """A decision to lift the ban of ``ip`` in ``jail``."""

    jail: str
    ip: str
    at: float
    reason: str = "expired"
