"""fail2ban-style durations: ``600``, ``10m``, ``1h 30m``, ``1d``, ``1w``, ``-1`` (forever)."""

from __future__ import annotations

import re

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "mo": 2592000, "month": 2592000, "months": 2592000,
    "y": 31536000, "year": 31536000, "years": 31536000,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")

FOREVER = -1.0


def parse_duration(text: str, *, allow_forever: bool = False) -> float:
    """Seconds for a duration; ``-1`` (when allowed) means forever. Raises ValueError."""
    value = text.strip().lower()
    if allow_forever and value in ("-1", "forever", "permanent"):
        return FOREVER
    if not value:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    while pos < len(value):
        match = _PART.match(value, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"not a duration: {text!r} (use seconds or 10m, 1h, 1d, 1w)")
        number, unit = match.groups()
        if unit not in _UNITS and unit != "":
            raise ValueError(f"unknown time unit {unit!r} in {text!r}")
        total += float(number) * _UNITS.get(unit, 1)
        pos = match.end()
    if total <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """Short human form for status output (``1h``, ``10m``, ``forever``)."""
    if seconds < 0:
        return "forever"
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
