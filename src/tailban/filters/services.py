"""Filters for the other services fail2ban users protect (one FilterSpec per service/mode).

Registered into the built-in table by ``tailban.filters.builtin``.
"""

from __future__ import annotations

from tailban.filters.model import FilterSpec

SERVICE_FILTERS: dict[str, dict[str, FilterSpec]] = {}
