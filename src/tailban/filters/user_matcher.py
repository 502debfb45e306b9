"""The matcher of filters read from fail2ban-format files (:mod:`fail2ban_file`).

Same interface as :class:`tailban.filters.matcher.ChunkMatcher` (``scan``, ``match_line``,
``event_lines``, ``lines_matched``), fail2ban's semantics:

1. the time stamp is found (``datepattern``, else the usual stamp forms) and cut out of
   the line; the expressions see the rest, as fail2ban's do;
2. ``prefregex`` (when set) must match; its ``<F-CONTENT>`` is what the failregexes see;
3. the first ``failregex`` that matches (searched, anchored as written) decides; an
   ``ignoreregex`` that matches too drops the line;
4. ``<F-NOFAIL>`` matches only store their fields; lines with the same ``<F-MLFID>`` share
   host and user, and a failure without a host waits for a later line of its id;
   ``<F-MLFFORGET>`` ends an id, ``<F-MLFGAINED>`` ends it as a successful login;
5. with ``maxlines`` > 1 the expressions see the last N lines joined by newlines.

Only the expression's ``<HOST>``/``<ADDR>``/``<IP4>``/``<IP6>``/``<DNS>`` group gives the
address (or ``<F-ID>`` holding an address). A host name gives ``Failure(ip=None,
host=NAME)``.

Candidate lines: like ChunkMatcher, one alternation of the literal texts the failregexes
require finds the lines worth decoding in a whole chunk. When some failregex has no such
text (or maxlines > 1), every line is a candidate.

An expression that only the ``regex`` module can run is bounded per line; when it runs
out of time the line is skipped, counted in :attr:`UserMatcher.timeouts` and reported by a
warning naming the filter, file and line.
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from tailban.core.addresses import normalise_ip
from tailban.core.events import Failure, Success
from tailban.filters.fail2ban_file import (
    DEFAULT_DATE,
    DateSpec,
    PatternTimeout,
    Spans,
    UserFilter,
    UserRegex,
)
from tailban.filters.hosts import HostAddresses, is_host_name
from tailban.filters.matcher import Merged
from tailban.filters.timestamps import TimestampParser

log = logging.getLogger(__name__)

Event = Failure | Success

_MAX_IDS = 20000  # <F-MLFID> states kept
_MAX_WAITING = 16  # failures without a host kept per id
_MAX_LINE_KEPT = 1000
_CACHE_MAX = 8192
_DAY = 86400.0
PREVIOUS = -math.inf  # "the previous line's time"
_Parse = Callable[[str], "tuple[float, float | None] | None"]

_DEFAULT_SEARCH = re.compile("(?:" + DEFAULT_DATE + ")")
_DEFAULT_AT_START = re.compile(r"\W{0,2}?(" + DEFAULT_DATE + ")")
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_SLASHED = re.compile(r"(\d\d?)/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d)(?: ([+-]\d\d)(\d\d))?$")
_YMD_SLASH = re.compile(r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)$")
_SYSLOG_YEAR = re.compile(r"(?:[A-Za-z]{3} )?([A-Za-z]{3}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)"
                          r"(\.\d+)? (\d{4})$")


class _Id:
    """What lines of one ``<F-MLFID>`` told so far."""

    __slots__ = ("host", "user", "waiting")

    def __init__(self) -> None:
        self.host: str | None = None
        self.user: str | None = None
        self.waiting: list[tuple[str, float, str, str | None]] = []  # rule, time, line, user


class _Fields:
    """The fields one match gave."""

    __slots__ = ("host", "user", "mlfid", "nofail", "forget", "gained")

    def __init__(self) -> None:
        self.host: str | None = None
        self.user: str | None = None
        self.mlfid: str | None = None
        self.nofail = False
        self.forget = False
        self.gained = False

    def read(self, rx: UserRegex, spans: Spans, text: str) -> None:
        for role, numbers in rx.roles:
            taken = [text[s:e] for s, e in (spans[n] for n in numbers) if s >= 0]
            if not taken:
                continue
            if role == "host":
                if taken[0]:
                    self.host = taken[0]
            elif role == "id":
                if self.host is None and taken[0] and normalise_ip(taken[0]) is not None:
                    self.host = taken[0]
            elif role == "user":
                if taken[0]:
                    self.user = taken[0]
            elif role == "alt_user":
                if self.user is None:
                    self.user = next((t for t in taken if t), None)
            elif role == "mlfid":
                self.mlfid = taken[0]
            elif role == "nofail":
                self.nofail = True
            elif role == "forget":
                self.forget = True
            elif role == "gained":
                self.gained = True


class _Dates:
    """Finds a line's time stamp: its span (to cut out) and its epoch."""

    def __init__(self, specs: tuple[DateSpec, ...], tz: tzinfo | None) -> None:
        self.specs = specs
        self.tz = tz
        self.none = any(spec.kind == "none" for spec in specs)
        self._stamps = TimestampParser(tz)
        self._cache: dict[tuple[int, str], tuple[float, float | None]] = {}
        self._year = 0
        self._now = math.nan
        self._order = list(range(len(specs)))

    def find(self, text: str, now: float) -> tuple[int, int, float | None] | None:
        """(start, end, epoch) of the stamp; epoch None when its text is no valid time."""
        if now != self._now:
            self._now = now
            year = datetime.fromtimestamp(now, self.tz).year
            if year != self._year:
                self._year = year
                self._cache.clear()
        if not self.specs:
            return self._default(text, now, anchored=False)
        order = self._order
        for position, index in enumerate(order):
            found = self._one(self.specs[index], index, text, now)
            if found is not None:
                if position:
                    order.insert(0, order.pop(position))
                return found
        return None

    def _one(self, spec: DateSpec, index: int, text: str, now: float
             ) -> tuple[int, int, float | None] | None:
        kind = spec.kind
        if kind == "none":
            return None
        if kind == "previous":
            assert spec.compiled is not None
            return (0, 0, PREVIOUS) if spec.compiled.search(text) is not None else None
        if kind == "default":
            return self._default(text, now, spec.anchored)
        assert spec.compiled is not None
        spans = spec.compiled.search(text)
        if spans is None:
            return None
        start, end = spans[spec.date_group]
        if start < 0:
            return None
        stamp = text[start:end]
        if kind == "epoch":
            return start, end, float(stamp)
        if kind == "lepoch":
            return start, end, int(stamp) / 1000.0
        if kind in ("tai64n", "iso"):
            return start, end, self._stamps.parse(stamp, now)
        if spec.dt_group:
            s, e = spans[spec.dt_group]
            return start, end, self._parse_default(text[s:e], now) if s >= 0 else None
        return start, end, self._custom(spec, index, text, spans, now)

    def _default(self, text: str, now: float, anchored: bool
                 ) -> tuple[int, int, float | None] | None:
        if anchored:
            found = _DEFAULT_AT_START.match(text)
            if found is None:
                return None
            start, end = found.span(1)
        else:
            hit = _DEFAULT_SEARCH.search(text)
            if hit is None:
                return None
            start, end = hit.span()
        return start, end, self._parse_default(text[start:end], now)

    def _parse_default(self, stamp: str, now: float) -> float | None:
        first = stamp[:1]
        if first == "@" or (first.isdigit() and stamp[4:5] == "-"):
            return self._stamps.parse(stamp, now)
        if first.isalpha():
            if stamp[-5:-4] == " " and stamp[-4:].isdigit():
                return self._cached(-1, stamp, now, self._syslog_with_year)
            if stamp[3:4] == " " and stamp[4:5].isalpha():  # a weekday first
                stamp = stamp[4:]
            return self._stamps.parse(stamp, now)
        return self._cached(-2, stamp, now, self._numeric)

    def _cached(self, key: int, stamp: str, now: float, parse: _Parse) -> float | None:
        hit = self._cache.get((key, stamp))
        if hit is None:
            try:
                hit = parse(stamp)
            except (ValueError, OverflowError):
                return None
            if hit is None:
                return None
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[(key, stamp)] = hit
        value, last_year = hit
        if last_year is not None and value > now + _DAY:
            return last_year
        return value

    def _syslog_with_year(self, stamp: str) -> tuple[float, float | None] | None:
        found = _SYSLOG_YEAR.match(stamp)
        if found is None:
            return None
        month = _MONTHS.get(found.group(1).lower())
        if month is None:
            return None
        fraction = float(found.group(6)) if found.group(6) else 0.0
        when = datetime(int(found.group(7)), month, int(found.group(2)), int(found.group(3)),
                        int(found.group(4)), int(found.group(5)), tzinfo=self.tz)
        return self._epoch(when) + fraction, None

    def _numeric(self, stamp: str) -> tuple[float, float | None] | None:
        found = _SLASHED.match(stamp)
        if found is not None:
            month = _MONTHS.get(found.group(2).lower())
            if month is None:
                return None
            zone: tzinfo | None = self.tz
            if found.group(7):
                sign = -1 if found.group(7)[0] == "-" else 1
                zone = timezone(sign * timedelta(hours=int(found.group(7)[1:]),
                                                 minutes=int(found.group(8))))
            when = datetime(int(found.group(3)), month, int(found.group(1)),
                            int(found.group(4)), int(found.group(5)), int(found.group(6)),
                            tzinfo=zone)
            return self._epoch(when), None
        found = _YMD_SLASH.match(stamp)
        if found is not None:
            year, month, day, hour, minute, second = (int(g) for g in found.groups())
            when = datetime(year, month, day, hour, minute, second, tzinfo=self.tz)
            return self._epoch(when), None
        return None

    @staticmethod
    def _epoch(when: datetime) -> float:
        return when.timestamp()

    def _custom(self, spec: DateSpec, index: int, text: str, spans: Spans, now: float
                ) -> float | None:
        values: dict[str, str] = {}
        for name, number in spec.fields:
            s, e = spans[number]
            if s >= 0 and name not in values:
                values[name] = text[s:e]
        if "s" in values:
            try:
                return float(values["s"])
            except ValueError:
                return None
        dated = any(k in values for k in ("d", "j"))
        if not dated:  # only a time: today (or yesterday, when that puts it in the future)
            try:
                value = self._fields(values, None, now)
            except (ValueError, OverflowError):
                return None
            if value is None:
                return None
            return value - _DAY if value > now + 3600 else value
        key = "\x00".join(f"{k}={v}" for k, v in sorted(values.items()))
        return self._cached(index, key, now, lambda _: self._pair(values, now))

    def _pair(self, values: dict[str, str], now: float) -> tuple[float, float | None] | None:
        if "Y" in values or "y" in values:
            value = self._fields(values, None, now)
            return (value, None) if value is not None else None
        this_year = self._fields(values, self._year, now)
        if this_year is None:
            return None
        try:
            last_year = self._fields(values, self._year - 1, now)
        except ValueError:  # 29 February
            last_year = this_year
        return this_year, last_year

    def _fields(self, values: dict[str, str], year: int | None, now: float) -> float | None:
        if "Y" in values:
            year = int(values["Y"])
        elif "y" in values:
            year = 2000 + int(values["y"])
        today = datetime.fromtimestamp(now, self.tz)
        if year is None:
            year = today.year
        if "m" in values:
            month = int(values["m"])
        elif "b" in values:
            found = _MONTHS.get(values["b"][:3].lower())
            if found is None:
                return None
            month = found
        else:
            month = today.month if "j" not in values and "d" not in values else 1
        if "d" in values:
            day = int(values["d"])
        elif "j" not in values:
            day = today.day
        else:
            day = 1
        hour = int(values.get("H", values.get("I", "0")).strip() or 0)
        if "I" in values and "H" not in values:
            hour %= 12
            if values.get("p", "").lower().startswith("p"):
                hour += 12
        minute = int(values.get("M", "0"))
        second = min(59, int(values.get("S", "0")))
        zone: tzinfo | None = self.tz
        if "z" in values:
            z = values["z"]
            if z == "Z":
                zone = UTC
            else:
                digits = z[1:].replace(":", "")
                sign = -1 if z[0] == "-" else 1
                zone = timezone(sign * timedelta(hours=int(digits[:2]),
                                                 minutes=int(digits[2:4] or 0)))
        elif values.get("Z", "").upper() in ("UTC", "GMT", "Z"):
            zone = UTC
        when = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        if "j" in values:
            when += timedelta(days=int(values["j"]) - 1)
        value = when.timestamp()
        if "f" in values:
            value += float("0." + values["f"])
        return value


class UserMatcher:
    """Matches one :class:`UserFilter` over chunks of whole lines."""

    def __init__(self, spec: UserFilter, tz: tzinfo | None = None, *, trace: bool = False,
                 track_lines: bool = False) -> None:
        self.spec = spec
        self._failregex = spec.failregex
        self._ignore = spec.ignoreregex
        self._pref = spec.prefregex
        self._maxlines = spec.maxlines
        self._buffer: deque[str] = deque(maxlen=spec.maxlines)
        self._dates = _Dates(spec.datepatterns, tz)
        pieces: set[bytes] = set()
        every_line = spec.maxlines > 1
        for rx in spec.failregex:
            if not rx.pieces:
                every_line = True
            pieces.update(piece.encode() for piece in rx.pieces)
        ordered = sorted(pieces, key=len, reverse=True)
        self._candidates: re.Pattern[bytes] | None = None if every_line else re.compile(
            b"|".join(re.escape(p) for p in ordered))
        self._ids: dict[str, _Id] = {}
        self._hosts = HostAddresses()
        self._last_time: float | None = None
        self.lines_matched = 0
        self.timeouts = 0
        self.timeouts_by_place: dict[str, int] = {}
        self.trace: list[Merged] | None = [] if trace else None
        self.event_lines: list[int] | None = [] if track_lines else None
        self._lines_before = 0

    @property
    def every_line(self) -> bool:
        """True when no chunk pre-filter applies (some failregex has no literal text)."""
        return self._candidates is None

    def scan(self, chunk: bytes, now: float) -> list[Event]:
        """Events of every complete or final line in ``chunk``, in order."""
        events: list[Event] = []
        numbers = self.event_lines
        line = self._line
        if self._candidates is None:
            parts = chunk.split(b"\n")
            if parts and not parts[-1]:
                parts.pop()
            number = self._lines_before
            for raw in parts:
                number += 1
                before = len(events)
                line(raw, now, events)
                if numbers is not None and len(events) != before:
                    numbers.extend([number] * (len(events) - before))
        else:
            search = self._candidates.search
            find = chunk.find
            rfind = chunk.rfind
            size = len(chunk)
            pos = 0
            counted_to = 0
            number = self._lines_before
            while True:
                hit = search(chunk, pos)
                if hit is None:
                    break
                start = rfind(b"\n", 0, hit.start()) + 1
                end = find(b"\n", hit.end())
                if end < 0:
                    end = size
                before = len(events)
                line(chunk[start:end], now, events)
                if numbers is not None and len(events) != before:
                    number += chunk.count(b"\n", counted_to, start)
                    counted_to = start
                    numbers.extend([number + 1] * (len(events) - before))
                pos = end + 1
        if numbers is not None:
            self._lines_before += chunk.count(b"\n") + (0 if chunk.endswith(b"\n") or not chunk
                                                        else 1)
        return events

    def match_line(self, line: str, now: float) -> list[Event]:
        """Events of one line (for tools and tests; the daemon uses scan)."""
        events: list[Event] = []
        self._line(line.rstrip("\n").encode("utf-8", "surrogateescape"), now, events)
        return events

    # -- one line -----------------------------------------------------------------------------

    def _line(self, raw: bytes, now: float, events: list[Event]) -> None:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
        if text.endswith("\r"):
            text = text[:-1]
        try:
            self._match(text, now, events)
        except PatternTimeout as exc:
            self._timed_out(exc)

    def _match(self, text: str, now: float, events: list[Event]) -> None:
        found = self._dates.find(text, now)
        if found is None:
            when = now if self._dates.none else self._last_time
            rest = text
        else:
            start, end, when = found
            rest = text[:start] + text[end:]
            if when == PREVIOUS:
                when = self._last_time
            elif when is None:
                return
            else:
                self._last_time = when
        pref = self._pref
        fields = _Fields()
        subject = rest
        if pref is not None:
            assert pref.compiled is not None
            spans = pref.compiled.search(rest)
            if spans is None:
                return
            fields.read(pref, spans, rest)
            content = pref.groups_of("content")
            if content:
                s, e = spans[content[0]]
                if s >= 0:
                    subject = rest[s:e]
        if self._maxlines > 1:
            self._buffer.append(subject)
            subject = "\n".join(self._buffer)
        if when is None:
            return
        data = subject.encode()
        for rx in self._failregex:
            if rx.literal and rx.literal not in subject:
                continue
            assert rx.compiled is not None
            spans = rx.compiled.search(subject, data)
            if spans is None:
                continue
            for ignore in self._ignore:
                assert ignore.compiled is not None
                if ignore.compiled.search(subject, data) is not None:
                    return
            self.lines_matched += 1
            fields.read(rx, spans, subject)
            if self._maxlines > 1:
                self._buffer.clear()
            self._apply(rx, fields, when, text, now, events)
            return

    def _apply(self, rx: UserRegex, fields: _Fields, when: float, text: str, now: float,
               events: list[Event]) -> None:
        rule = f"{self.spec.name}:{rx.index}"
        host = fields.host
        user = fields.user
        mlfid = fields.mlfid
        if mlfid is None:
            if fields.gained:
                self._success(rule, host, user, when, events)
            elif not fields.nofail and host:
                self._fail(rule, host, user, when, text, events)
            return
        ids = self._ids
        state = ids.get(mlfid)
        if state is None:
            state = ids[mlfid] = _Id()
            if len(ids) > _MAX_IDS:
                del ids[next(iter(ids))]
        if host:
            state.host = host
        if user:
            state.user = user
        if state.waiting and state.host:
            # Counted when the address is known, at that line's time (as fail2ban does).
            for waiting_rule, _, waiting_line, waiting_user in state.waiting:
                self._fail(waiting_rule, state.host, waiting_user or state.user, when,
                           waiting_line, events)
            state.waiting.clear()
        if fields.gained:
            self._success(rule, state.host, user or state.user, when, events)
            del ids[mlfid]
            return
        if not fields.nofail:
            if state.host:
                self._fail(rule, state.host, user or state.user, when, text, events)
            elif len(state.waiting) < _MAX_WAITING:
                state.waiting.append((rule, when, text[:_MAX_LINE_KEPT], user))
        if fields.forget:
            ids.pop(mlfid, None)

    def _fail(self, rule: str, host: str, user: str | None, when: float, text: str,
              events: list[Event]) -> None:
        ip = self._hosts.address(host)
        if ip is None and not is_host_name(host):
            return  # neither an address nor a host name
        failure = Failure(ip, host, when, user, rule, 1, text[:_MAX_LINE_KEPT])
        events.append(failure)
        if self.trace is not None:
            self.trace.append(Merged(failure, 1, (user,) if user else ()))

    def _success(self, rule: str, host: str | None, user: str | None, when: float,
                 events: list[Event]) -> None:
        ip = self._hosts.address(host) if host else None
        if ip is not None:
            events.append(Success(ip, when, user, rule))

    def _timed_out(self, exc: PatternTimeout) -> None:
        self.timeouts += 1
        place = exc.pattern.where
        seen = self.timeouts_by_place.get(place, 0) + 1
        self.timeouts_by_place[place] = seen
        if seen == 1 or seen % 1000 == 0:
            log.warning("filter %s: the %s at %s took longer than its time bound on a line; "
                        "the line is skipped (%d time(s) so far). Rewrite the expression so "
                        "RE2 accepts it (no look-arounds or back-references) to lift the "
                        "bound.", self.spec.name, exc.pattern.option, place, seen)
