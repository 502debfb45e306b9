"""Repeat offenders are banned longer: fail2ban's ``bantime.increment`` family, as a pure rule.

``count`` is how many times the address was banned before (in this jail, or in every jail
with ``overalljails``); the first ban (count 0) always lasts ``bantime``. Randomness is
passed in (``jitter`` in [0, 1)) so the rule stays a plain function.
"""

from __future__ import annotations

from dataclasses import dataclass

_MAX_SHIFT = 20  # fail2ban caps the exponent at 20


@dataclass(frozen=True, slots=True)
class BantimeIncrement:
    """The options of a jail; ``enabled = False`` leaves bantime as it is."""

    enabled: bool = False
    factor: float = 1.0
    multipliers: tuple[float, ...] = ()
    maxtime: float | None = None
    rndtime: float | None = None
    overalljails: bool = False

    def seconds(self, bantime: float, count: int, jitter: float = 0.0) -> float:
        """Ban length for an address banned ``count`` times before; negative = forever."""
        if bantime < 0 or not self.enabled or count <= 0:
            return bantime
        if self.multipliers:
            index = min(count, len(self.multipliers) - 1)
            result = bantime * self.multipliers[index]
        else:
            result = bantime * (1 << min(count, _MAX_SHIFT)) * self.factor
        if self.rndtime:
            result += jitter * self.rndtime
        if self.maxtime is not None:
            result = min(result, self.maxtime)
        return result


def parse_multipliers(text: str) -> tuple[float, ...]:
    """``1 2 4 8 16 32 64``: the factor for the 1st, 2nd, ... ban (the last one repeats)."""
    values = []
    for item in text.split():
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"not a number: {item!r}") from None
        if value <= 0:
            raise ValueError(f"multipliers must be positive: {item!r}")
        values.append(value)
    if not values:
        raise ValueError("empty list of multipliers")
    return tuple(values)
