"""The chunk matcher: bytes of log in, failure and success events out.

Sans-I/O like h11: no file, clock or socket; the caller passes the chunk and ``now`` (used
only to infer the year of syslog stamps). One compiled alternation of the rules' literal
texts finds candidate lines in the whole chunk; only those lines are decoded and matched.

Lines of one connection (``tag[pid]``) share state: the connection's address (a failure
line without one, ``Disconnecting: Too many authentication failures``, takes it from an
earlier or a later line), the user names it tried, and the helper lines (``nofail``)
that a later failure merges. A line yields at most one event.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from typing import NamedTuple

from tailban.core.events import Failure, Success
from tailban.filters.hosts import HostAddresses, is_host_name
from tailban.filters.model import FilterSpec, Rule
from tailban.filters.timestamps import TimestampParser

_TIME = (r"(?P<time>[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?"
         r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d(?::?\d\d)?)?"
         r"|@[0-9a-f]{24})")
# time, an optional host name, the tag (``tag[pid]:``, ``tag(x):``, ``tag:``, ``[tag]``),
# Solaris' ``[ID n facility]``, a kernel time stamp (``kernel: [ 970.69]``), the message.
_PREFIX = (_TIME + r"\s+(?:[^\s\[]\S*\s+)??(?P<lb>\[)?(?P<tag>{tags})"
           r"(?(lb)\]:?|(?:\([^)\s]*\))?(?:\[(?P<pid>\d+)\])?:)\s+"
           r"(?:\[ID \d+ [\w.]+\]\s+)?(?:kernel: ?\[ *\d+\.\d+\]:? )?(?P<msg>.*)")
# RFC 5424: <PRI>1 TIME HOST APP PROCID MSGID [SD...]|- MSG
_PREFIX_5424 = (r"<\d{1,3}>\d{1,2} (?P<time>\S+) \S+ (?P<tag>{tags}) (?P<pid>\d+|-) \S+ "
                r"(?:-|(?:\[(?:[^\]\"\\]|\"(?:[^\"\\]|\\.)*\")*\])+)(?: \ufeff?(?P<msg>.*))?")
# rsyslog: the message and how often it was said
_REPEATED = re.compile(r"message repeated (\d+) times: \[ ?(.*)\]$")
# sysklogd: the previous line said N more times (no tag, or the tag without pid)
_LAST_REPEATED = re.compile(
    _TIME + r"\s+(?:\S+\s+)??(?:[\w./-]+(?:\[\d+\])?:\s+)?last message repeated (\d+) times?$")
_LAST_REPEATED_LITERAL = b"last message repeated"

# Connections (``sshd[pid]``) whose state is kept. sshd's MaxStartups lets 100 unauthenticated
# connections wait by default and fail2ban keeps 100 multi-line ids; a storm of connections
# that never log their end (10,000 in the burst benchmark) costs ~300 B each above this.
_MAX_CONNECTIONS = 4096
_MAX_NAMES = 1024  # user names kept as one string each ("root" of 10,000 connections)
_MAX_NAME_KEPT = 32
_MAX_USERS = 16
_MAX_LINE_KEPT = 1000
_MAX_COUNT = 1000
_MAX_CLOSED = 4096  # ended connections whose counted failures a summary line may follow

_MAX_PLANS = 512

Event = Failure | Success


def _overlaps(literals: list[str]) -> dict[str, frozenset[str]]:
    """For each literal, the others that can start inside it: the search, resuming after a
    literal it found, cannot see those (one that starts before it, or after, it sees)."""
    def hides(seen: str, other: str) -> bool:
        return other not in seen and any(seen.endswith(other[:k])
                                         for k in range(1, min(len(seen), len(other))))
    return {a: frozenset(b for b in literals if b != a and hides(a, b)) for a in literals}


class Merged(NamedTuple):
    """What a failure merged, for tests and tools (``ChunkMatcher(trace=True)``)."""

    failure: Failure
    attempts: int  # matched lines of the connection merged into it (fail2ban's "attempts")
    users: tuple[str, ...]  # user names the connection tried, in order


class _Compiled:
    __slots__ = ("rule", "name", "regex", "check", "literal", "also", "kind", "forget", "separator",
                 "has_host", "has_user", "has_alt", "has_count", "has_method")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.name
        self.regex = re.compile(rule.regex)
        self.check = re.compile(rule.check) if rule.check else None
        self.separator = rule.separator
        self.literal = rule.literal
        self.also = rule.also
        self.kind = rule.kind
        self.forget = rule.forget
        groups = self.regex.groupindex
        self.has_host = "host" in groups
        self.has_user = "user" in groups
        self.has_alt = "alt_user" in groups
        self.has_count = "count" in groups
        self.has_method = "method" in groups


_Plan = tuple[tuple["_Compiled", ...] | None, tuple[tuple["_Compiled", tuple[str, ...]], ...]]


class _Conn:
    """One connection's state: address, users tried, merged lines, a waiting failure."""

    __slots__ = ("host", "users", "lines", "waiting", "waiting_user", "waiting_count",
                 "counted")

    def __init__(self) -> None:
        self.host: str | None = None
        self.users: tuple[str, ...] = ()
        self.lines = 0
        self.waiting: str | None = None  # rule name of a failure still lacking an address
        self.waiting_user: str | None = None
        self.waiting_count = 1
        self.counted = 0  # failures counted for this connection (weights summed)


class ChunkMatcher:
    """Matches one filter over chunks of whole lines; keeps per-connection state.

    ``trace=True`` records a :class:`Merged` for every failure in :attr:`trace`.
    """

    def __init__(self, spec: FilterSpec, tz: tzinfo | None = None, *,
                 trace: bool = False, track_lines: bool = False) -> None:
        self.spec = spec
        self._prefix = re.compile(_PREFIX.replace("{tags}", spec.tags))
        self._prefix_5424 = re.compile(_PREFIX_5424.replace("{tags}", spec.tags))
        self._rules = tuple(_Compiled(rule) for rule in spec.rules
                            if spec.legacy_tags or not rule.legacy)
        self._expand = spec.expand_repeats
        self._summaries = spec.count_summaries
        # (literal, rule) in rule order; a rule with several literals comes once per literal
        self._entries = tuple((literal, compiled) for compiled in self._rules
                              for literal in (compiled.literal, *compiled.also))
        self._ignore = tuple(re.compile(rx) for rx in spec.ignore)
        literals = {lit.encode() for rule in self._rules
                    for lit in (rule.literal, *rule.also)}
        if self._expand:
            literals.add(_LAST_REPEATED_LITERAL)
        ordered = sorted(literals, key=len, reverse=True)
        # Longest first, so at one position the longest literal is the one found. (No groups
        # to tell which: they would cost re its fast scan for the literals' first bytes.)
        self._candidates = re.compile(b"|".join(re.escape(lit) for lit in ordered))
        self._overlaps = _overlaps([lit.decode("utf-8", "surrogateescape")
                                    for lit in ordered])
        # the rules worth trying for the literals found in a message
        self._plans: dict[bytes | frozenset[bytes], _Plan] = {}
        self._times = TimestampParser(tz)
        self._connections: dict[str, _Conn] = {}
        # connection id -> (address, failures counted) of connections that ended
        self._closed: dict[str, tuple[str, int]] = {}
        self._hosts = HostAddresses()
        self._names: dict[str, str] = {}
        # The last failure, when it came from the line just before position
        # ``_last_end + 1`` of the current chunk (-1: the previous chunk's last line).
        self._last: Failure | None = None
        self._last_end = -2
        self.lines_matched = 0
        self.trace: list[Merged] | None = [] if trace else None
        # With track_lines, event_lines[i] is the 1-based physical line (counted over every
        # chunk scanned so far) that produced the i-th event returned: for test-filter.
        self.event_lines: list[int] | None = [] if track_lines else None
        self._lines_before = 0

    def scan(self, chunk: bytes, now: float) -> list[Event]:
        """Events of every complete or final line in ``chunk``, in order."""
        events: list[Event] = []
        search = self._candidates.search
        find = chunk.find
        rfind = chunk.rfind
        line = self._match_line
        pos = 0
        size = len(chunk)
        numbers = self.event_lines
        counted_to = 0
        number = self._lines_before
        while True:
            hit = search(chunk, pos)
            if hit is None:
                break
            at = hit.start()
            start = rfind(b"\n", 0, at) + 1
            last = hit.end()
            end = find(b"\n", last)
            if end < 0:
                end = size
            # Every literal of the line, leftmost first: which rules to try (see _plan).
            found: bytes | frozenset[bytes] = hit.group()
            more = search(chunk, last, end)
            if more is not None:
                several = [hit.group()]
                while more is not None:
                    several.append(more.group())
                    last = more.end()
                    more = search(chunk, last, end)
                # a set: the plan depends on which literals, and a line crafted with many
                # of them in any order or number must not fill the cache with variants
                found = frozenset(several)
            if numbers is None:
                line(chunk[start:end], start, end, now, events, found, at - start, last - start)
            else:
                number += chunk.count(b"\n", counted_to, start)
                counted_to = start
                before = len(events)
                line(chunk[start:end], start, end, now, events, found, at - start, last - start)
                numbers.extend([number + 1] * (len(events) - before))
            pos = end + 1
        if numbers is not None:
            self._lines_before += chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
        # A failure on the chunk's last line may be repeated by the next chunk's first.
        self._last_end = -1 if self._last_end >= size - 1 else -2
        return events

    def match_line(self, line: str, now: float) -> list[Event]:
        """Events of one line (for tools and tests; the daemon uses scan)."""
        events: list[Event] = []
        raw = line.rstrip("\n").encode("utf-8", "surrogateescape")
        self._match_line(raw, 0, len(raw), now, events)
        self._last_end = -1 if self._last_end >= len(raw) else -2
        return events

    def _match_line(self, raw: bytes, start: int, end: int, now: float,
                    events: list[Event], seen: bytes | frozenset[bytes] = b"",
                    first: int = 0, last: int = 0) -> None:
        """``seen``: the literals the chunk search saw in ``raw`` between ``first`` and
        ``last`` (empty: unknown)."""
        text = raw.decode("utf-8", "replace").rstrip()
        if start - 1 == self._last_end and self._expand and _LAST_REPEATED_LITERAL in raw:
            self._repeat_last(text, end, now, events)
            return
        head = self._prefix.match(text)
        if head is None:
            if not text.startswith("<"):
                return
            head = self._prefix_5424.match(text)
            if head is None or head.group("msg") is None:
                return
        msg: str = head.group("msg")
        repeat = 1
        plain = True
        if msg.startswith("message repeated "):
            plain = False
            again = _REPEATED.match(msg)
            if again is None:
                return
            repeat = int(again.group(1)) if self._expand else 1
            msg = again.group(2).strip()
        conn: str | None = None
        known = False
        rules: tuple[_Compiled, ...] | list[_Compiled]
        if seen and plain and first >= head.start("msg") and last <= len(text) \
                and raw.isascii():
            # the search saw every literal of the message: no need to look for each
            plan = self._plans.get(seen) or self._plan(seen)
            if plan[0] is not None:
                rules = plan[0]
            else:
                rules = [compiled for compiled, checks in plan[1]
                         if not checks or any(lit in msg for lit in checks)]
        else:
            rules = []
            for literal, compiled in self._entries:
                if literal in msg and (not rules or rules[-1] is not compiled):
                    rules.append(compiled)
        for compiled in rules:
            if compiled.kind == "close":
                # Only the end of a connection this matcher knows can matter.
                if not known:
                    conn = self._conn_id(head)
                    known = True
                if conn is None or conn not in self._connections:
                    continue
            found = compiled.regex.match(msg)
            if found is None:
                continue
            if compiled.check is not None and (not compiled.separator
                                               or msg.count(compiled.separator) != 1):
                other = compiled.check.match(msg)
                if other is None or other.start("host") != found.start("host"):
                    return  # the line reads two ways: trust neither
            if self._ignore and any(rx.search(msg) for rx in self._ignore):
                return
            self.lines_matched += 1
            if not known:
                conn = self._conn_id(head)
            self._apply(compiled, found, conn, head.group("time"), text, repeat, end, now,
                        events)
            return

    def _plan(self, found: bytes | frozenset[bytes]) -> _Plan:
        """The rules to try, in order, for a message in which the leftmost-first search saw
        the literals ``found``: a rule whose literal was seen (or lies inside one seen) is
        tried; one whose literal can start inside a seen one may hide under it and is
        checked; any other literal would have been seen, so its rule is skipped."""
        names = {lit.decode("utf-8", "surrogateescape")
                 for lit in (found if isinstance(found, frozenset) else (found,))}
        steps: list[tuple[_Compiled, tuple[str, ...]]] = []
        for compiled in self._rules:
            checks: list[str] = []
            for literal in (compiled.literal, *compiled.also):
                if any(literal in seen for seen in names):
                    steps.append((compiled, ()))
                    break
                if any(literal in self._overlaps.get(seen, ()) for seen in names):
                    checks.append(literal)
            else:
                if checks:
                    steps.append((compiled, tuple(checks)))
        sure = all(not checks for _, checks in steps)
        plan: _Plan = (tuple(compiled for compiled, _ in steps) if sure else None, tuple(steps))
        if len(self._plans) < _MAX_PLANS:
            self._plans[found] = plan
        return plan

    @staticmethod
    def _conn_id(head: re.Match[str]) -> str | None:
        pid = head.group("pid")
        if not pid or pid == "-":
            return None
        return f"{head.group('tag')}[{pid}]"

    def _apply(self, compiled: _Compiled, found: re.Match[str], conn: str | None,
               stamp: str, text: str, repeat: int, end: int, now: float,
               events: list[Event]) -> None:
        kind = compiled.kind
        host: str | None = found.group("host") if compiled.has_host else None
        user: str | None = found.group("user") if compiled.has_user else None
        if user is None and compiled.has_alt:
            user = found.group("alt_user") or None
        if user:
            user = self._names.get(user) or self._name(user)
        count = repeat
        if compiled.has_count and kind != "summary" and self._summaries:
            given = found.group("count")
            if given:
                count = min(_MAX_COUNT, count * max(1, int(given)))

        if conn is None:  # no connection id: every line stands alone
            if kind == "summary" and host and self._summaries and compiled.has_count:
                # Nothing to tell the tries apart from: the N more only.
                self._fail(compiled.name, host, user, min(_MAX_COUNT, int(found.group("count"))),
                           stamp, text, now, end, events, 1, (user,) if user else ())
            elif kind == "fail" and host:
                self._fail(compiled.name, host, user, count, stamp, text, now, end, events,
                           1, (user,) if user else ())
            elif kind == "success" and host:
                self._success(compiled.name, host, user, stamp, now, events,
                              found.group("method") if compiled.has_method else None)
            return

        connections = self._connections
        state = connections.get(conn)
        if kind == "summary":
            if self._summaries:
                self._summary(compiled, found, conn, state, host, user, stamp, text, end, now,
                              events)
            return
        if state is None:
            state = connections[conn] = _Conn()
            if len(connections) > _MAX_CONNECTIONS:
                del connections[next(iter(connections))]
        if host and host != state.host:
            state.host = host  # (an equal address keeps the first string: one per connection)
        if kind == "host":
            return
        if user and user not in state.users and len(state.users) < _MAX_USERS:
            state.users = (*state.users, user)
        state.lines += 1

        if kind == "fail":
            if state.host:
                self._fail_conn(state, compiled.name, user, count, stamp, text, now, end,
                                events)
            else:
                state.waiting = compiled.name
                state.waiting_user = user
                state.waiting_count = count
            if compiled.forget:
                self._end(conn, state)
        elif kind == "nofail":
            if state.waiting and state.host:
                self._fail_conn(state, state.waiting, state.waiting_user or user,
                                state.waiting_count, stamp, text, now, end, events)
            elif len(state.users) > 1 and state.host:
                # A second user name on one connection: the earlier tries count.
                self._fail_conn(state, compiled.name, user, count, stamp, text, now, end,
                                events)
        elif kind == "success":
            if len(state.users) > 1 and state.host:
                # Logged in under another name than the one(s) it failed with.
                self._fail_conn(state, compiled.name, user, count, stamp, text, now, end,
                                events)
            elif host:
                self._success(compiled.name, host, user, stamp, now, events,
                              found.group("method") if compiled.has_method else None)
            self._end(conn, state)
        else:  # close
            if state.waiting and state.host:
                self._fail_conn(state, state.waiting, state.waiting_user or user,
                                state.waiting_count, stamp, text, now, end, events)
            self._end(conn, state)

    def _name(self, user: str) -> str:
        """A user name first seen: kept, while there is room, to be shared by later lines."""
        if len(self._names) < _MAX_NAMES and len(user) <= _MAX_NAME_KEPT:
            self._names[user] = user
        return user

    def _end(self, conn: str, state: _Conn) -> None:
        """Forget a connection; what it counted stays a while for a summary line after it."""
        del self._connections[conn]
        if state.counted and state.host:
            closed = self._closed
            closed[conn] = (state.host, state.counted)
            if len(closed) > _MAX_CLOSED:
                del closed[next(iter(closed))]

    def _summary(self, compiled: _Compiled, found: re.Match[str], conn: str | None,
                 state: _Conn | None, host: str | None, user: str | None, stamp: str,
                 text: str, end: int, now: float, events: list[Event]) -> None:
        """PAM's ``N more authentication failures``: N + 1 tries in all, of which the
        ones sshd already reported (``Failed password`` lines) were counted."""
        given = found.group("count") if compiled.has_count else None
        total = min(_MAX_COUNT, int(given) + 1) if given else 1
        counted = 0
        if state is not None:
            counted = state.counted
            host = host or state.host
        if conn is not None:
            # the connection may have been closed (and re-opened by a later line) before
            ended = self._closed.pop(conn, None)
            if ended is not None and (host is None or ended[0] == host):
                host = ended[0]
                counted += ended[1]
        extra = total - counted
        if extra <= 0 or not host:
            return
        if state is not None:
            state.counted += extra
        self._fail(compiled.name, host, user or (state.users[-1] if state and state.users
                                                 else None),
                   extra, stamp, text, now, end, events, 1, (user,) if user else ())

    def _fail_conn(self, state: _Conn, rule: str, user: str | None, count: int, stamp: str,
                   text: str, now: float, end: int, events: list[Event]) -> None:
        assert state.host is not None
        if user is None and state.users:
            user = state.users[-1]
        self._fail(rule, state.host, user, count, stamp, text, now, end, events,
                   state.lines, state.users)
        state.counted += count
        state.lines = 0
        state.waiting = None

    def _fail(self, rule: str, host: str, user: str | None, count: int, stamp: str,
              text: str, now: float, end: int, events: list[Event], attempts: int,
              users: tuple[str, ...]) -> None:
        ip = self._hosts.address(host)
        if ip is None and not is_host_name(host):
            return  # neither an address nor a host name
        when = self._times.parse(stamp, now)
        if when is None:
            return
        failure = Failure(ip, host, when, user, rule, count, text[:_MAX_LINE_KEPT])
        events.append(failure)
        self._last = failure
        self._last_end = end
        if self.trace is not None:
            self.trace.append(Merged(failure, attempts, users))

    def _success(self, rule: str, host: str, user: str | None, stamp: str, now: float,
                 events: list[Event], method: str | None = None) -> None:
        ip = self._hosts.address(host)
        when = self._times.parse(stamp, now)
        if ip is not None and when is not None:
            events.append(Success(ip, when, user, rule, method))

    def _repeat_last(self, text: str, end: int, now: float, events: list[Event]) -> None:
        """``last message repeated N times`` right after a failure: N more of it."""
        found = _LAST_REPEATED.match(text)
        last = self._last
        if found is None or last is None:
            return
        when = self._times.parse(found.group("time"), now)
        if when is None:
            return
        count = min(_MAX_COUNT, int(found.group(2)) * last.count)
        failure = Failure(last.ip, last.host, when, last.user, last.rule, count,
                          text[:_MAX_LINE_KEPT])
        events.append(failure)
        self._last_end = end
        if self.trace is not None:
            self.trace.append(Merged(failure, 1, (last.user,) if last.user else ()))
