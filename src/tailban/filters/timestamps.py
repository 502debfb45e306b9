"""Timestamps of log lines, parsed once per distinct second instead of once per line."""

from __future__ import annotations

import math
from datetime import datetime, tzinfo

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_DAY = 86400.0
_TAI64_BASE = 1 << 62
_CACHE_MAX = 8192


class TimestampParser:
    """Turns the time field of a line into an epoch.

    Forms: syslog (``Nov 23 14:01:02[.ffffff]``), RFC 3339 / ISO 8601 (``2026-11-22T10:00:01
    .123+01:00``, a space instead of ``T``, naive means local), and daemontools' TAI64N
    (``@4000000069...``, read as fail2ban does: the label minus 2^62 is the Unix time).

    Syslog stamps have no year: it is the year of ``now`` unless that puts the stamp more
    than a day in the future, then the previous year (fail2ban's rule). Naive stamps are
    local time of ``tz`` (None: the process' local zone). ``now`` is passed in, never read.
    """

    __slots__ = ("_tz", "_cache", "_iso", "_now", "_year", "_stamps")

    def __init__(self, tz: tzinfo | None = None) -> None:
        self._tz = tz
        # ``Mon DD HH:MM`` -> (epoch in the year of ``now``, epoch in the year before)
        self._cache: dict[str, tuple[float, float]] = {}
        self._iso: dict[str, float] = {}
        self._now = math.nan
        self._year = 0
        # a syslog stamp -> (its epoch in the year of ``now``, in the year before)
        self._stamps: dict[str, tuple[float, float]] = {}

    def parse(self, text: str, now: float) -> float | None:
        """Epoch seconds for a syslog, RFC 3339 or TAI64N stamp, else None."""
        if now != self._now:
            self._now = now
            year = datetime.fromtimestamp(now, self._tz).year
            if year != self._year:
                self._cache.clear()
                self._stamps.clear()
                self._year = year
        known = self._stamps.get(text)
        if known is not None:  # a second seen before: the usual case
            return known[0] if known[0] <= now + _DAY else known[1]
        return self._parse(text, now)

    def _parse(self, text: str, now: float) -> float | None:
        if not text:
            return None
        first = text[0]
        if first.isdigit():
            return self._parse_iso(text)
        if first == "@":
            return self._parse_tai64n(text)
        # Cached per minute (``Nov 23 14:01``): UTC offsets change only at whole minutes.
        minute = text[:-3] if len(text) == 15 else text.partition(".")[0][:-3]
        bases = self._cache.get(minute)
        if bases is None:
            bases = self._parse_syslog(minute, self._year)
            if bases is None:
                return None
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[minute] = bases
        rest = text[len(minute):]
        seconds, dot, fraction = rest[1:].partition(".")
        if rest[:1] != ":" or len(seconds) != 2 or not seconds.isdigit() or (
                dot and not fraction.isdigit()):
            return None
        this_year = bases[0] + int(seconds)
        last_year = bases[1] + int(seconds)
        if dot:
            this_year += float("0." + fraction)
            last_year += float("0." + fraction)
        if len(self._stamps) >= _CACHE_MAX:
            self._stamps.clear()
        self._stamps[text] = (this_year, last_year)
        return this_year if this_year <= now + _DAY else last_year

    def _parse_syslog(self, minute: str, year: int) -> tuple[float, float] | None:
        """Epochs of the start of ``Mon DD HH:MM`` in ``year`` and in the year before."""
        parts = minute.split()
        if len(parts) != 3 or parts[0] not in _MONTHS:
            return None
        try:
            month = _MONTHS[parts[0]]
            day = int(parts[1])
            hour, minute_ = (int(p) for p in parts[2].split(":"))
            this_year = self._epoch(year, month, day, hour, minute_)
        except ValueError:
            return None
        try:
            last_year = self._epoch(year - 1, month, day, hour, minute_)
        except ValueError:  # 29 February
            last_year = this_year
        return this_year, last_year

    def _epoch(self, year: int, month: int, day: int, hour: int, minute: int) -> float:
        if self._tz is None:
            return datetime(year, month, day, hour, minute).timestamp()
        return datetime(year, month, day, hour, minute, tzinfo=self._tz).timestamp()

    def _parse_iso(self, text: str) -> float | None:
        hit = self._iso.get(text)
        if hit is not None:
            return hit
        try:
            parsed = datetime.fromisoformat(text.replace(",", ".", 1))
        except ValueError:
            return None
        if parsed.tzinfo is None and self._tz is not None:
            parsed = parsed.replace(tzinfo=self._tz)
        value = parsed.timestamp()
        if len(self._iso) >= _CACHE_MAX:
            self._iso.clear()
        self._iso[text] = value
        return value

    @staticmethod
    def _parse_tai64n(text: str) -> float | None:
        if len(text) != 25:
            return None
        try:
            seconds = int(text[1:17], 16) - _TAI64_BASE
            nanos = int(text[17:25], 16)
        except ValueError:
            return None
        if seconds < 0 or nanos >= 1_000_000_000:
            return None
        return seconds + nanos / 1e9
