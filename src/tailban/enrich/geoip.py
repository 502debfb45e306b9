"""Country, city and network-owner lookups from MaxMind-format databases.

Enrichment is best effort: the daemon must keep banning when a database is missing, of the wrong
kind, or being replaced by geoipupdate, so none of those raise here. They become notes on each
result and entries in ``problems()`` for the daemon to warn about once.
"""

from __future__ import annotations

import ipaddress
import math
import os
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import geoip2.database
import geoip2.errors
import geoip2.models
import maxminddb.errors

__all__ = ["MAX_TEXT", "GeoInfo", "GeoIPLookup"]

MAX_TEXT = 200
"""Longest string taken from a database; names are data from a third party."""
_MAX_PROBLEM = 1000  # problems carry configured paths and library messages; bound them too

_RECHECK_SECONDS = 1.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Model = geoip2.models.Country | geoip2.models.ASN
_Fetch = Callable[[Address], _Model]
_Signature = tuple[int, int, int, int]

# Cc: C0/C1 controls (newlines, ESC); Cf: bidi overrides and other invisible formatting;
# Zl/Zp: line and paragraph separators, which split log lines just as newlines do; Cs/Co/Cn:
# surrogates, private use and unassigned code points have no business in a place name.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _clean(value: object, limit: int = MAX_TEXT) -> str | None:
    """Make a database string safe to log: printable only, bounded, empty becomes None."""
    if not isinstance(value, str):
        return None
    if not value.isprintable():
        value = "".join(ch for ch in value if unicodedata.category(ch) not in _DROP_CATEGORIES)
    value = value.strip()[:limit]
    return value or None


def _clean_iso(value: object) -> str | None:
    """Country codes feed country-based rules, so accept only two ASCII letters."""
    text = _clean(value)
    if text is None or len(text) != 2 or not (text.isascii() and text.isalpha()):
        return None
    return text.upper()


def _clean_coordinate(value: object, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or abs(number) > limit:
        return None
    return number


def _clean_asn(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value < 2**32 else None


@dataclass(frozen=True, slots=True)
class GeoInfo:
    """What the databases know about one address; every field may be None."""

    country_iso: str | None = None
    country_name: str | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    asn: int | None = None
    as_org: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[str, ...]:
        """Alias of ``notes``; nothing here is fatal, so both names mean the same."""
        return self.notes


def _fetcher_for(role: str, reader: geoip2.database.Reader, db_type: str) -> _Fetch | None:
    """Choose the reader method matching the file's own type, or None if it cannot serve role.

    geoip2 checks the type on every call and builds a stack trace for the error, so deciding once
    at open time is both cheaper and lets a wrong file be reported at start-up.
    """
    if role == "asn":
        if "GeoLite2-ASN" in db_type:  # also DB-IP's "(compat=GeoLite2-ASN)" files
            return reader.asn
        if "GeoIP2-ISP" in db_type:
            return reader.isp
        return None
    if "Enterprise" in db_type:
        return reader.enterprise
    if "City" in db_type:
        return reader.city
    if role == "country" and "Country" in db_type:
        return reader.country
    return None


_EXPECTED = {
    "country": "a Country or City database",
    "city": "a City database",
    "asn": "an ASN database",
}


@dataclass
class _Slot:
    """One configured database file and the reader currently serving it."""

    role: str
    path: str | None
    reader: geoip2.database.Reader | None = None
    fetch: _Fetch | None = None
    ipv4_only: bool = False
    signature: _Signature | None = None
    problem: str | None = None

    @property
    def label(self) -> str:
        return f"{self.role} database {self.path}"


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class GeoIPLookup:
    """Looks addresses up in up to three databases and follows geoipupdate's replacements.

    Thread safe: one lock serialises lookups and reloads, so a reader is never closed while
    another thread is inside it. Lookups take tens of microseconds, so contention is negligible
    next to log parsing.
    """

    def __init__(
        self,
        country_db: str | os.PathLike[str] | None,
        city_db: str | os.PathLike[str] | None,
        asn_db: str | os.PathLike[str] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        recheck_interval: float = _RECHECK_SECONDS,
    ) -> None:
        self._clock = clock
        self._recheck_interval = recheck_interval
        self._lock = threading.Lock()
        self._closed = False
        self._slots = (
            _Slot("country", os.fspath(country_db) if country_db is not None else None),
            _Slot("city", os.fspath(city_db) if city_db is not None else None),
            _Slot("asn", os.fspath(asn_db) if asn_db is not None else None),
        )
        self._country, self._city, self._asn = self._slots
        for slot in self._slots:
            self._check(slot)
        self._last_check = clock()

    # -- public -------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Current trouble with configured databases, for a warning at start or on reload."""
        with self._lock:
            return [slot.problem for slot in self._slots if slot.problem is not None]

    def lookup(self, ip: str | Address) -> GeoInfo:
        """Everything known about ``ip``; raises ValueError only if ``ip`` is not an address."""
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # ::ffff:a.b.c.d from dual-stack sockets
        with self._lock:
            self._maybe_recheck()
            return self._lookup_locked(addr)

    def recheck(self) -> None:
        """Look for replaced or newly created files now, e.g. on SIGHUP."""
        with self._lock:
            if self._closed:
                return
            self._last_check = self._clock()
            for slot in self._slots:
                self._check(slot)

    def close(self) -> None:
        """Release the mapped files; later lookups return empty results instead of reopening."""
        with self._lock:
            self._closed = True
            for slot in self._slots:
                if slot.reader is not None:
                    slot.reader.close()
                slot.reader = None
                slot.fetch = None
                slot.signature = None

    def __enter__(self) -> GeoIPLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups ------------------------------------------------------------------------------

    def _lookup_locked(self, addr: Address) -> GeoInfo:
        notes: list[str] = []
        country = self._query(self._country, addr, notes)
        city = self._query(self._city, addr, notes)
        asn = self._query(self._asn, addr, notes)

        # The city database carries the country too: it fills in when the country database is
        # absent, broken, or simply has no entry for this address.
        source = country if isinstance(country, geoip2.models.Country) else None
        if isinstance(city, geoip2.models.Country) and (
            source is None or source.country.iso_code is None
        ):
            source = city

        city_rec = city if isinstance(city, geoip2.models.City) else None
        asn_rec = asn if isinstance(asn, geoip2.models.ASN) else None

        for slot in self._slots:
            if slot.path is None:
                if slot is self._country and self._city.fetch is not None:
                    continue  # country comes from the city database; nothing is missing
                notes.append(f"no {slot.role} database configured")
            elif slot.fetch is None and slot.problem is not None:
                notes.append(slot.problem)
        return GeoInfo(
            country_iso=_clean_iso(source.country.iso_code) if source else None,
            country_name=_clean(source.country.name) if source else None,
            city=_clean(city_rec.city.name) if city_rec else None,
            latitude=_clean_coordinate(city_rec.location.latitude, 90.0) if city_rec else None,
            longitude=_clean_coordinate(city_rec.location.longitude, 180.0) if city_rec else None,
            asn=_clean_asn(asn_rec.autonomous_system_number) if asn_rec else None,
            as_org=_clean(asn_rec.autonomous_system_organization) if asn_rec else None,
            notes=tuple(notes),
        )

    @staticmethod
    def _query(slot: _Slot, addr: Address, notes: list[str]) -> _Model | None:
        if slot.fetch is None:
            return None
        if slot.ipv4_only and addr.version == 6:
            return None
        try:
            return slot.fetch(addr)
        except geoip2.errors.AddressNotFoundError:
            return None
        except (maxminddb.errors.InvalidDatabaseError, ValueError, OSError) as exc:
            # A file overwritten in place (not renamed) under the mapping reads as garbage.
            notes.append(_clean(f"{slot.label}: lookup failed: {exc}", _MAX_PROBLEM) or slot.label)
            return None

    # -- reloading ----------------------------------------------------------------------------

    def _maybe_recheck(self) -> None:
        now = self._clock()
        if self._closed or now - self._last_check < self._recheck_interval:
            return
        self._last_check = now
        for slot in self._slots:
            self._check(slot)

    def _check(self, slot: _Slot) -> None:
        """Reopen the file if it is new or changed; otherwise leave the open reader alone."""
        if slot.path is None:
            return
        try:
            sig = _signature(os.stat(slot.path))
        except FileNotFoundError:
            if slot.fetch is not None:
                slot.problem = f"{slot.label} removed; still using the copy opened earlier"
            else:
                slot.problem = f"{slot.label} missing"
                slot.signature = None  # whatever appears there next gets opened
            return
        except OSError as exc:
            self._failed(slot, f"{slot.label} unreadable: {exc.strerror or exc}")
            return
        if sig == slot.signature:
            if slot.fetch is not None:
                slot.problem = None  # e.g. a removed file was restored unchanged
            return
        slot.signature = sig  # a file that failed to open is retried only once it changes
        self._open(slot)

    def _open(self, slot: _Slot) -> None:
        assert slot.path is not None
        try:
            reader = geoip2.database.Reader(slot.path)
        except FileNotFoundError:
            self._failed(slot, f"{slot.label} missing")
            return
        except OSError as exc:
            self._failed(slot, f"{slot.label} unreadable: {exc.strerror or exc}")
            return
        except (maxminddb.errors.InvalidDatabaseError, ValueError) as exc:
            self._failed(slot, f"{slot.label} is not a valid MaxMind database: {exc}")
            return
        metadata = reader.metadata()
        db_type = str(metadata.database_type)
        fetch = _fetcher_for(slot.role, reader, db_type)
        if fetch is None:
            reader.close()
            self._failed(
                slot,
                f"{slot.label} is of type {db_type!r}; expected {_EXPECTED[slot.role]}",
            )
            return
        old = slot.reader
        slot.reader = reader
        slot.fetch = fetch
        slot.ipv4_only = metadata.ip_version == 4
        slot.problem = None
        if old is not None:
            old.close()  # safe: every lookup holds the lock, so nobody is inside it

    @staticmethod
    def _failed(slot: _Slot, problem: str) -> None:
        problem = _clean(problem, _MAX_PROBLEM) or slot.label
        if slot.fetch is not None:
            problem += "; still using the copy opened earlier"
        slot.problem = problem
