"""Administrators' own filters in fail2ban's format: ``filter.d/NAME.conf`` and ``.local``.

The reader turns a filter file (with its ``[INCLUDES]``, ``[Init]`` variables, the jail's
``filter = NAME[key=value]`` options, ``%(var)s`` interpolation and ``<tag>`` substitution)
into a :class:`UserFilter`: compiled expressions with the place each was written, ready for
:class:`tailban.filters.user_matcher.UserMatcher`.

Every mistake is a :class:`FilterFileError` (a ConfigError) naming the file and line where
the offending text was written and what is wrong with it, e.g.
``/etc/tailban/filter.d/myapp.conf:7: [Definition] failregex: <F-FOO> is not supported``.

Expressions are written in Python's ``re`` syntax, as for fail2ban. Each one runs on RE2
(linear time, so no crafted line can make it backtrack for ages) when RE2 accepts it; one
that needs what RE2 lacks (look-arounds, back-references, conditionals) runs on the
``regex`` module with a time bound per line (:data:`TIME_BOUND`).
"""

from __future__ import annotations

import re
import re._parser as sre_parse  # type: ignore[import-not-found, import-untyped, unused-ignore]
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailban.config.errors import ConfigError

#: seconds one expression that RE2 cannot run may spend on one line
TIME_BOUND = 0.05
#: largest maxlines accepted
MAX_LINES = 100
_MAX_FILES = 64
_MAX_DEPTH = 40
_MAX_TAG_ROUNDS = 40

COMMON_CONF = r"""# tailban: building blocks for filters written in fail2ban's format.
#
# A filter reads them with
#
#     [INCLUDES]
#     before = common.conf
#
# and starts its expressions with ^%(__prefix_line)s, which skips what a syslog line has
# before the message once the time stamp is taken out: the host name, the program and its
# pid ("sshd[123]:"), the kernel's "[ 12.34]" and Solaris' "[ID 123 auth.info]".
#
# tailban has these definitions built in and uses them when there is no common.conf
# beside the filter. This copy is here to read; a changed copy in filter.d is used instead
# of the built-in one, and common.local beside it can override single values.

[INCLUDES]

after = common.local

[DEFAULT]

# The log's layout: file (syslog files), short, journal (journalctl's short output) or
# rfc5424.
logtype = file

# The program that writes the lines: a filter sets it, e.g. _daemon = sshd
_daemon = \S*

# "[1234]"
__pid_re = (?:\[\d+\])

# The program's name, maybe bracketed and with an "(unit)": sshd, [sshd], pop(pam_unix)
__daemon_re = [\[\(]?<_daemon>(?:\(\S+\))?[\]\)]?:?

# Solaris: [ID 800047 auth.info]
__daemon_extra_re = \[ID \d+ \S+\]

# The program and its pid in either order: sshd[31607]:, [31607]: sshd, pop(pam_unix)[4920]:
__daemon_combs_re = (?:<__daemon_re><__pid_re>?:?|<__pid_re>?:\s+<__daemon_re>)

# "kernel: [769570.846956]"
__kernel_prefix = kernel:\s?\[ *\d+\.\d+\]:?

# The host that logged the line.
__hostname = \S+

# 16 hex bytes with colons, e.g. an MD5 fingerprint
__md5hex = (?:[\da-f]{2}:){15}[\da-f]{2}

# BSD syslogd -v adds the facility and level: <4.3> or <auth.info>
__bsd_syslog_verbose = <[^.]+\.[^.]+>

# Linux-VServer's tag
__vserver = @vserver_\S+

# What is left of a bracketed time stamp once the time is taken out: "[]"
__date_ambit = (?:\[\])

# The PAM module that reports authentication failures.
__pam_auth = pam_unix

# What a syslog file line has before the program, and the program with its pid; both parts
# are optional.
__syslog_head = (?:<__bsd_syslog_verbose>\s+)?(?:<__hostname>\s+)?(?:<__kernel_prefix>\s+)?
__syslog_program = (?:<__vserver>\s+)?(?:<__daemon_combs_re>\s+)?(?:<__daemon_extra_re>\s+)?

__prefix_line = <lt_<logtype>/__prefix_line>

datepattern = <lt_<logtype>/datepattern>

[lt_file]
__prefix_line = <__date_ambit>?\s*<__syslog_head><__syslog_program>
datepattern = {^LN-BEG}

[lt_short]
__prefix_line = \s*(?:<__hostname>\s+)?(?:<_daemon><__pid_re>?:?\s+)?(?:<__kernel_prefix>\s+)?
datepattern = {^LN-BEG}

[lt_journal]
__prefix_line = %(lt_short/__prefix_line)s
datepattern = %(lt_short/datepattern)s

[lt_rfc5424]
# <PRI>VERSION TIME HOST APP PROCID MSGID [STRUCTURED-DATA]|- MESSAGE
__prefix_line = \s*<__hostname> <__daemon_re> \d+ \S+ (?:-|(?:\[(?:[^\]"]|"[^"]*")*\])+)\s+
datepattern = ^<\d+>\d+\s+{DATE}
"""
COMMON_LABEL = "<built-in common.conf>"


class FilterFileError(ConfigError):
    """A mistake in a filter file, located by file, line, section and option."""


class PatternTimeout(Exception):
    """An expression that RE2 cannot run took longer than :data:`TIME_BOUND` on a line."""

    def __init__(self, pattern: Pattern) -> None:
        super().__init__(f"{pattern.where}: took longer than {TIME_BOUND} s on one line")
        self.pattern = pattern


Spans = list[tuple[int, int]] | tuple[tuple[int, int], ...]
_NO_SPAN = (-1, -1)


class _Engines:
    """google-re2 and regex, imported when the first user filter is compiled (a daemon
    without file filters does not carry them)."""

    loaded = False
    re2: Any = None
    regex: Any = None
    options: Any = None
    anchor: Any = None

    @classmethod
    def load(cls) -> type[_Engines]:
        if not cls.loaded:
            import re2  # google-re2
            import regex

            options = re2.Options()
            options.log_errors = False  # the error is reported by us, located
            options.max_mem = 32 << 20
            cls.re2, cls.regex, cls.options = re2, regex, options
            cls.anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
            cls.loaded = True
        return cls


_Z_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\Z")


class Pattern:
    """One compiled expression; :meth:`search` gives spans in character offsets.

    ``engine`` is ``re2`` or ``regex`` (the latter bounded by :data:`TIME_BOUND`).
    """

    __slots__ = ("source", "text", "file", "line", "option", "engine", "groups",
                 "groupindex", "_re2", "_low", "_anchor", "_regex", "_flags")

    def __init__(self, text: str, *, source: str, file: str, line: int, option: str,
                 multiline: bool = False) -> None:
        self.source = source  # as written (after interpolation), for messages
        self.text = text  # Python syntax, tags translated
        self.file = file
        self.line = line
        self.option = option
        flags = re.MULTILINE if multiline else 0
        self._flags = flags
        try:
            checked = re.compile(text, flags)
        except re.error as exc:
            raise FilterFileError(f"does not compile: {exc.msg}"
                                  + (f" at position {exc.pos}" if exc.pos is not None else "")
                                  + f": {_short(source)}", file=file, line=line,
                                  section="Definition", option=option) from None
        except (OverflowError, RecursionError):
            raise FilterFileError(f"expression too large: {_short(source)}", file=file,
                                  line=line, section="Definition", option=option) from None
        self.groups: int = checked.groups
        self.groupindex: dict[str, int] = dict(checked.groupindex)
        self._re2: Any = None
        self._low: Any = None
        self._regex: Any = None
        self._anchor: Any = None
        engines = _Engines.load()
        try:
            for_re2 = _Z_ESCAPE.sub(r"\1\\z", text)
            compiled = engines.re2.compile(("(?m)" if multiline else "") + for_re2,
                                           engines.options)
            if compiled.groups != self.groups:
                raise engines.re2.error("group numbering differs")
            self._re2 = compiled
            low = getattr(compiled, "_regexp", None)
            if low is not None and engines.anchor is not None and hasattr(low, "Match"):
                self._low = low
                self._anchor = engines.anchor
            self.engine = "re2"
        except engines.re2.error:
            try:
                self._regex = engines.regex.compile(text, flags | engines.regex.VERSION0)
            except Exception as exc:  # noqa: BLE001 - any refusal is reported the same way
                raise FilterFileError(f"does not compile: {exc}: {_short(source)}", file=file,
                                      line=line, section="Definition",
                                      option=option) from None
            self.engine = "regex"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def search(self, text: str, data: bytes | None = None) -> Spans | None:
        """Spans of group 0..n (``(-1, -1)`` for groups that took no part), or None.

        ``data`` is ``text`` encoded as UTF-8 when the caller has it already.
        Raises :class:`PatternTimeout` when a ``regex`` expression exceeds the bound.
        """
        low = self._low
        if low is not None:
            encoded = text.encode() if data is None else data
            spans = low.Match(self._anchor, encoded, 0, len(encoded))
            if spans[0] == _NO_SPAN:
                return None
            if len(encoded) != len(text):
                return _char_spans(encoded, spans)
            return spans  # type: ignore[no-any-return]
        if self._re2 is not None:
            found = self._re2.search(text)
            if found is None:
                return None
            return [found.span(i) for i in range(self.groups + 1)]
        try:
            match = self._regex.search(text, timeout=TIME_BOUND)
        except TimeoutError:
            raise PatternTimeout(self) from None
        if match is None:
            return None
        return match.regs  # type: ignore[no-any-return]


def _char_spans(encoded: bytes, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if start < 0:
            out.append(_NO_SPAN)
            continue
        first = len(encoded[:start].decode("utf-8", "replace"))
        out.append((first, first + len(encoded[start:end].decode("utf-8", "replace"))))
    return out


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


# ----------------------------------------------------------------------- the INI reader

class _Line:
    """One physical line of a value and where it was written."""

    __slots__ = ("text", "file", "line")

    def __init__(self, text: str, file: str, line: int) -> None:
        self.text = text
        self.file = file
        self.line = line

    def copy(self) -> _Line:
        return _Line(self.text, self.file, self.line)


@dataclass(slots=True)
class _Def:
    """One definition of an option: its lines (the first is the text after ``=``)."""

    lines: list[_Line]
    file: str
    line: int


_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
_OPTION = re.compile(r"^(?P<key>[^=:\s\[][^=:]*?)\s*[=:]\s?(?P<value>.*)$")


def _strip_comment(value: str) -> str:
    for marker in (" #", " ;", "\t#", "\t;"):
        index = value.find(marker)
        if index >= 0:
            value = value[:index]
    return value.strip()


def _parse_ini(text: str, file: str) -> list[tuple[str, str, _Def]]:
    """(section, key, definition) in file order."""
    out: list[tuple[str, str, _Def]] = []
    section: str | None = None
    current: _Def | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if raw[:1] in (" ", "\t") and current is not None:
            current.lines.append(_Line(_strip_comment(stripped), file, number))
            continue
        header = _SECTION.match(stripped)
        if header is not None:
            section = header.group("name").strip()
            current = None
            continue
        option = _OPTION.match(stripped)
        if option is None:
            raise FilterFileError(f"cannot read this line: {_short(stripped)!r}", file=file,
                                  line=number)
        if section is None:
            raise FilterFileError("option before any [section]", file=file, line=number,
                                  option=option.group("key").strip())
        current = _Def([_Line(_strip_comment(option.group("value")), file, number)], file,
                       number)
        out.append((section, option.group("key").strip(), current))
    return out


class _Options:
    """Every definition of every option, in reading order, and how to resolve them."""

    def __init__(self, overrides: dict[str, str]) -> None:
        self.sections: dict[str, dict[str, list[_Def]]] = {}
        self.files: list[str] = []
        self.overrides = {key: _Def([_Line(value, "<jail filter options>", 0)],
                                    "<jail filter options>", 0)
                          for key, value in overrides.items()}

    # -- reading ------------------------------------------------------------------------

    def read(self, path: Path, stack: tuple[str, ...] = ()) -> None:
        name = str(path)
        if name in stack:
            raise FilterFileError("include loop: " + " -> ".join((*stack, name)), file=name)
        if len(self.files) >= _MAX_FILES:
            raise FilterFileError(f"more than {_MAX_FILES} files included", file=name)
        if name == COMMON_LABEL:
            text = COMMON_CONF
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise FilterFileError(f"cannot read: {exc}", file=name) from None
        self.files.append(name)
        entries = _parse_ini(text, name)
        includes = [(key, d) for section, key, d in entries if section == "INCLUDES"]
        base = path.parent if name != COMMON_LABEL else None
        for key, d in includes:
            if key == "before":
                self._include(key, d, base, (*stack, name))
        for section, key, d in entries:
            if section != "INCLUDES":
                self.sections.setdefault(section, {}).setdefault(key, []).append(d)
        for key, d in includes:
            if key == "after":
                self._include(key, d, base, (*stack, name))
        for key, d in includes:
            if key not in ("before", "after"):
                raise FilterFileError("only 'before' and 'after' are read here", file=d.file,
                                      line=d.line, section="INCLUDES", option=key)

    def _include(self, key: str, d: _Def, base: Path | None,
                 stack: tuple[str, ...]) -> None:
        for ln in d.lines:
            for item in ln.text.split():
                target = Path(item) if base is None else base / item
                if target.is_file():
                    self.read(target, stack)
                elif item.endswith(".local"):
                    continue  # optional customisations, as in fail2ban
                elif Path(item).name == "common.conf":
                    self.read(Path(COMMON_LABEL), stack)
                else:
                    raise FilterFileError(f"cannot find {target}", file=ln.file, line=ln.line,
                                          section="INCLUDES", option=key)

    # -- lookups --------------------------------------------------------------------------

    def _find(self, name: str, section: str, before: _Def | None = None
              ) -> tuple[str, _Def] | None:
        """The definition ``name`` means in ``section``: (context section, definition)."""
        if "/" in name:
            scope, _, option = name.partition("/")
            if scope == "known":
                return self._known(option, section, before)
            defs = self.sections.get(scope, {}).get(option)
            if defs:
                return scope, defs[-1]
            defaults = self.sections.get("DEFAULT", {}).get(option)
            return (scope, defaults[-1]) if defaults and scope in self.sections else None
        if name in self.overrides:
            return section, self.overrides[name]
        order = ["Init", section, "DEFAULT"] if section in ("Definition", "Init") else \
            [section, "DEFAULT"]
        for scope in order:
            defs = self.sections.get(scope, {}).get(name)
            if defs:
                return section, defs[-1]
        return None

    def _known(self, option: str, section: str, before: _Def | None) -> tuple[str, _Def]:
        """``%(known/option)s``: the option's value before the definition being read."""
        empty = _Def([_Line("", before.file if before else "", before.line if before else 0)],
                     before.file if before else "", before.line if before else 0)
        for scope in (section, "DEFAULT"):
            defs = self.sections.get(scope, {}).get(option, [])
            for index, candidate in enumerate(defs):
                if candidate is before:
                    return (scope, defs[index - 1]) if index > 0 else (scope, empty)
        for scope in (section, "DEFAULT"):
            defs = self.sections.get(scope, {}).get(option, [])
            if defs:
                return scope, defs[-1]
        return section, empty

    def defined(self, name: str, section: str) -> bool:
        return self._find(name, section) is not None

    def value(self, name: str, section: str = "Definition") -> tuple[_Def, list[_Line]] | None:
        """The interpolated lines of option ``name`` (with their places), or None."""
        found = self._find(name, section)
        if found is None:
            return None
        scope, d = found
        return d, self._interpolate(d, scope, ())

    def _interpolate(self, d: _Def, section: str, stack: tuple[tuple[str, int], ...]
                     ) -> list[_Line]:
        key = (section, id(d))
        if key in stack:
            raise FilterFileError("interpolation loop (an option refers to itself)",
                                  file=d.file, line=d.line, section=section)
        if len(stack) > _MAX_DEPTH:
            raise FilterFileError("interpolation nests too deeply", file=d.file, line=d.line,
                                  section=section)
        inner = (*stack, key)
        out: list[_Line] = []
        for ln in d.lines:
            out.extend(self._interpolate_line(ln, d, section, inner))
        return out

    def _interpolate_line(self, ln: _Line, d: _Def, section: str,
                          stack: tuple[tuple[str, int], ...]) -> list[_Line]:
        text = ln.text
        if "%" not in text:
            return [ln.copy()]
        pieces = [_Line("", ln.file, ln.line)]
        pos = 0
        while True:
            at = text.find("%", pos)
            if at < 0:
                pieces[-1].text += text[pos:]
                break
            pieces[-1].text += text[pos:at]
            follower = text[at + 1:at + 2]
            if follower == "%":
                pieces[-1].text += "%"
                pos = at + 2
                continue
            if follower != "(":
                pieces[-1].text += "%"  # a lone % (e.g. %Y in a datepattern) stays
                pos = at + 1
                continue
            end = text.find(")", at)
            if end < 0 or text[end + 1:end + 2] != "s":
                raise FilterFileError(f"bad interpolation {text[at:at + 30]!r}: write "
                                      "%(name)s, or %% for a percent sign", file=ln.file,
                                      line=ln.line, section=section)
            name = text[at + 2:end]
            found = self._find(name, section, d)
            if found is None:
                raise FilterFileError(f"%({name})s is not defined", file=ln.file,
                                      line=ln.line, section=section)
            scope, ref = found
            lines = self._interpolate(ref, scope, stack)
            _splice(pieces, lines)
            pos = end + 2
        return pieces


def _splice(pieces: list[_Line], lines: list[_Line]) -> None:
    """Insert a value's lines at the end of ``pieces`` (the line being built)."""
    if not lines:
        return
    if len(lines) == 1:
        pieces[-1].text += lines[0].text
        return
    last = pieces[-1]
    first = lines[0]
    if last.text.strip():
        last.text += first.text
    else:
        pieces[-1] = _Line(last.text + first.text, first.file, first.line)
    pieces.extend(line.copy() for line in lines[1:])


# ------------------------------------------------------------------------ tags

#: ``<name>`` of a fail2ban tag; not a named group ``(?P<name>``, ``(?<name>``, ``\k<name>``
_TAG = re.compile(r"(?<!\(\?P)(?<!\(\?)(?<!\\k)<(/?[\w.-]+(?:/[\w.-]+)?)>")
_SPECIAL = {"HOST", "ADDR", "IP4", "IP6", "DNS", "CIDR", "SUBNET", "SKIPLINES"}
_F_TAG = re.compile(r"<(/?)F-([\w-]*)>")
_BACKREF = re.compile(r"\(\?P=(\w+)\)")
_BACKREF_ROLES = {"user": "user", "alt_user": "alt_user", "host": "host", "ip4": "host",
                  "ip6": "host", "dns": "host", "fid": "id", "mlfid": "mlfid"}
_GLOBAL_FLAGS = re.compile(r"(?<!\\)\(\?([aiLmsux]+)\)")

_IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
_IPV6 = r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?:%[\w.-]+)?"
_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_MAPPED = r"(?:::[fF]{4}(?::0{1,4})?:)?"
_HOST_TAGS = {
    "IP4": _MAPPED + "(?P<{g}>" + _IPV4 + ")",
    "IP6": r"\[?(?P<{g}>" + _IPV6 + r")\]?",
    "ADDR": r"\[?" + _MAPPED + "(?P<{g}>" + _IPV4 + "|" + _IPV6 + r")\]?",
    "HOST": r"\[?" + _MAPPED + "(?P<{g}>" + _IPV4 + "|" + _IPV6 + "|" + _NAME + r")\]?",
    "DNS": "(?P<{g}>" + _NAME + ")",
}
_SKIPLINES = r"\n(?:[^\n]*\n)*?"

# F- fields: the name in the file -> role
_FIELDS = {"USER": "user", "ID": "id", "FID": "id", "MLFID": "mlfid", "NOFAIL": "nofail",
           "CONTENT": "content", "MLFFORGET": "forget", "MLFGAINED": "gained",
           "ERROR": "data"}
_ALT_USER = re.compile(r"ALT_USER\d*")
SUPPORTED_FIELDS = ("<F-USER>", "<F-ALT_USER>", "<F-ALT_USERn>", "<F-ID>", "<F-MLFID>",
                    "<F-NOFAIL>", "<F-CONTENT>", "<F-MLFFORGET>", "<F-MLFGAINED>",
                    "<F-ERROR>")


@dataclass(frozen=True, slots=True)
class UserRegex:
    """One failregex, ignoreregex or prefregex line, translated and compiled."""

    index: int
    source: str  # after interpolation and tag substitution, before translation
    pattern: str  # Python syntax with tailban's group names
    file: str
    line: int
    roles: tuple[tuple[str, tuple[int, ...]], ...]  # role -> group numbers, in order
    literal: str = ""  # text every match contains (empty: none known)
    pieces: tuple[str, ...] = ()  # one of these is in every raw line that can match
    compiled: Pattern | None = field(default=None, compare=False, repr=False)

    def groups_of(self, role: str) -> tuple[int, ...]:
        for name, numbers in self.roles:
            if name == role:
                return numbers
        return ()

    @property
    def has_host(self) -> bool:
        return bool(self.groups_of("host") or self.groups_of("id"))

    @property
    def engine(self) -> str:
        return self.compiled.engine if self.compiled is not None else "?"


def _translate(text: str, where: _Line, option: str, maxlines: int,
               allow_content: bool) -> tuple[str, list[tuple[str, str]]]:
    """fail2ban's tags -> Python named groups: (pattern, [(group name, role), ...])."""
    groups: list[tuple[str, str]] = []
    counter = [0]

    def fail(message: str) -> FilterFileError:
        return FilterFileError(message, file=where.file, line=where.line,
                               section="Definition", option=option)

    def name_for(role: str) -> str:
        counter[0] += 1
        group = f"_tb_{role}_{counter[0]}"
        groups.append((group, role))
        return group

    open_fields: list[str] = []

    def f_tag(match: re.Match[str]) -> str:
        closing, raw = match.group(1), match.group(2)
        if raw in _FIELDS:
            role = _FIELDS[raw]
        elif _ALT_USER.fullmatch(raw):
            role = "alt_user"
        else:
            raise fail(f"<F-{raw}> is not supported (supported: {', '.join(SUPPORTED_FIELDS)})")
        if role == "content" and not allow_content:
            raise fail("<F-CONTENT> belongs in prefregex")
        if closing:
            if not open_fields or open_fields[-1] != raw:
                expected = f"</F-{open_fields[-1]}>" if open_fields else "nothing open"
                raise fail(f"</F-{raw}> does not close the open field ({expected})")
            open_fields.pop()
            return ")"
        open_fields.append(raw)
        return f"(?P<{name_for(role)}>"

    out = _F_TAG.sub(f_tag, text)
    if open_fields:
        raise fail(f"<F-{open_fields[-1]}> is not closed (</F-{open_fields[-1]}>)")

    def host_tag(match: re.Match[str]) -> str:
        tag = match.group(1)
        if tag in ("CIDR", "SUBNET"):
            raise fail(f"<{tag}> is not supported: tailban bans addresses; "
                       "use <ADDR> and the jail's banprefix4/banprefix6 for networks")
        if tag == "SKIPLINES":
            if maxlines < 2:
                raise fail("<SKIPLINES> needs maxlines of 2 or more")
            return _SKIPLINES
        return _HOST_TAGS[tag].replace("{g}", name_for("host"))

    out = re.sub(r"<(HOST|ADDR|IP4|IP6|DNS|CIDR|SUBNET|SKIPLINES)>", host_tag, out)
    # fail2ban's group names, for back-references such as (?P=user)
    first: dict[str, str] = {}
    for group, role in groups:
        first.setdefault(role, group)

    def backref(match: re.Match[str]) -> str:
        role = _BACKREF_ROLES.get(match.group(1))
        return f"(?P={first[role]})" if role in first else match.group(0)

    out = _BACKREF.sub(backref, out)
    # Python 3.11 wants global flags such as (?i) first; fail2ban's filters may have them
    # anywhere.
    flags = _GLOBAL_FLAGS.findall(out)
    if flags and not out.startswith("(?" + flags[0] + ")") or len(flags) > 1:
        out = "(?" + "".join(sorted(set("".join(flags)))) + ")" + _GLOBAL_FLAGS.sub("", out)
    return out, groups


def _literal_runs(pattern: str, flags: int) -> list[str]:
    """Literal texts that every match contains, in order (runs of the top-level sequence)."""
    try:
        parsed = sre_parse.parse(pattern, flags)
    except Exception:  # noqa: BLE001 - no literal then
        return []
    if parsed.state.flags & re.IGNORECASE:
        return []
    runs: list[str] = []
    current: list[str] = []

    def end_run() -> None:
        if current:
            runs.append("".join(current))
            current.clear()

    def walk(items: Any) -> None:
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                current.append(chr(av))
            elif name in ("AT", "ASSERT", "ASSERT_NOT"):
                continue  # zero width: the text around it is adjacent
            elif name == "SUBPATTERN" and not (av[1] & re.IGNORECASE):
                walk(av[3])
            elif name == "ATOMIC_GROUP":
                walk(av)
            else:
                end_run()

    walk(parsed.data)
    end_run()
    return runs


def _pieces(runs: list[str], whole_line_safe: bool) -> tuple[str, tuple[str, ...]]:
    """(literal for the subject, pieces for raw lines: one of them is in every candidate).

    The time stamp is cut out of a line before the expressions see it, so a literal of the
    expression may be split in the raw line by the stamp. One cut splits at most one run:
    with two runs, one of them is whole in the raw line; a single run is split in halves.
    """
    usable = sorted((r for r in runs if len(r) >= 3 and "\ufffd" not in r), key=len,
                    reverse=True)
    if not usable:
        return "", ()
    literal = usable[0]
    if whole_line_safe:
        # The stamp is cut after at most 2 non-word characters at the start of the line.
        skip = 0
        while skip < 2 and skip < len(literal) and not (literal[skip].isalnum()
                                                        or literal[skip] == "_"):
            skip += 1
        stripped = literal[skip:]
        return literal, ((stripped,) if len(stripped) >= 3 else ())
    options: list[tuple[str, ...]] = []
    if len(usable) >= 2:
        options.append((usable[0], usable[1]))
    if len(literal) >= 6:
        half = len(literal) // 2
        options.append((literal[:half], literal[half:]))
    if not options:
        return literal, ()
    best = max(options, key=lambda pair: min(len(p) for p in pair))
    return literal, best


# ------------------------------------------------------------------------ date patterns

_DIRECTIVES: dict[str, tuple[str, str | None]] = {
    "Y": (r"\d{4}", "Y"), "ExY": (r"\d{4}", "Y"), "y": (r"\d\d", "y"), "Exy": (r"\d\d", "y"),
    "m": (r"1[0-2]|0?[1-9]", "m"), "Exm": (r"1[0-2]|0[1-9]", "m"),
    "d": (r"3[01]|[12]\d|0?[1-9]", "d"), "Exd": (r"3[01]|[12]\d|0[1-9]", "d"),
    "e": (r" ?[1-9]|[12]\d|3[01]", "d"), "j": (r"36[0-6]|3[0-5]\d|[12]\d\d|0?[1-9]\d|0{0,2}[1-9]",
                                              "j"),
    "H": (r"2[0-3]|[01]?\d", "H"), "ExH": (r"2[0-3]|[01]\d", "H"), "k": (r" ?\d|1\d|2[0-3]", "H"),
    "I": (r"1[0-2]|0?[1-9]", "I"), "l": (r" ?[1-9]|1[0-2]", "I"),
    "M": (r"[0-5]?\d", "M"), "ExM": (r"[0-5]\d", "M"),
    "S": (r"6[01]|[0-5]?\d", "S"), "ExS": (r"6[01]|[0-5]\d", "S"),
    "f": (r"\d{1,9}", "f"), "p": (r"(?i:[ap]\.?m\.?)", "p"),
    "b": (r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)", "b"),
    "h": (r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)", "b"),
    "B": (r"(?i:january|february|march|april|may|june|july|august|september|october"
          r"|november|december)", "b"),
    "a": (r"(?i:mon|tue|wed|thu|fri|sat|sun)", None),
    "A": (r"(?i:monday|tuesday|wednesday|thursday|friday|saturday|sunday)", None),
    "z": (r"Z|[+-]\d\d(?::?\d\d)?", "z"), "Z": (r"[A-Z]{1,5}", "Z"),
    "s": (r"\d{9,11}(?:\.\d{1,9})?", "s"),
}
_DIRECTIVE = re.compile(r"%(Ex[YymdHMS]|[A-Za-z%])")
#: the default stamp forms (DEFAULT_DATE in user_matcher), as a regex for {DATE}
DEFAULT_DATE = (
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) )?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d{1,9})?(?: \d{4})?"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?: ?(?:Z|[+-]\d\d(?::?\d\d)?))?"
    r"|\d\d?/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d\d:\d\d:\d\d"
    r"(?: [+-]\d{4})?"
    r"|\d{4}/\d\d/\d\d \d\d:\d\d:\d\d"
    r"|@[0-9a-f]{24}")
_LN_BEG = r"^\W{0,2}?"


@dataclass(frozen=True, slots=True)
class DateSpec:
    """One ``datepattern`` line.

    ``kind``: ``default`` (the usual stamp forms), ``custom`` (a strftime-like pattern or
    ``{DATE}``), ``epoch``/``lepoch`` (seconds/milliseconds since 1970), ``tai64n``,
    ``none`` (the lines have no time: the time they are read is used), ``previous`` (a
    line that matches has no time of its own: it has the previous line's; ``...**``).
    ``anchored``: at the start of the line (``{^LN-BEG}``).
    ``date_group``: the group whose text is cut out (the first unnamed group, else the date).
    ``fields``: directive group numbers, e.g. (("Y", 2), ("m", 3)); ``dt_group``: the
    group holding a ``{DATE}``, read like a default stamp.
    """

    source: str
    file: str
    line: int
    kind: str
    anchored: bool = False
    date_group: int = 0
    fields: tuple[tuple[str, int], ...] = ()
    dt_group: int = 0
    compiled: Pattern | None = field(default=None, compare=False, repr=False)
    line_start: bool = False  # whatever precedes the stamp is at most 2 non-word characters


def _date_spec(ln: _Line) -> DateSpec:
    text = ln.text.strip()
    anchored = False
    if text.startswith("{^LN-BEG}"):
        anchored = True
        text = text[len("{^LN-BEG}"):]
    text = text.replace("{UNB}", "")
    if text.endswith("**"):  # fail2ban: a line without its own time (the previous line's)
        body = text[:-2]
        if anchored and not body.startswith("^"):
            body = "^" + body
        compiled = Pattern(body, source=ln.text,
                           file=ln.file, line=ln.line, option="datepattern")
        return DateSpec(ln.text, ln.file, ln.line, "previous", anchored, 0, compiled=compiled)
    keyword = text.strip().upper()
    if keyword == "{NONE}":
        return DateSpec(ln.text, ln.file, ln.line, "none", line_start=True)
    if not keyword:
        return DateSpec(ln.text, ln.file, ln.line, "default", anchored, line_start=anchored)
    if keyword in ("EPOCH", "LEPOCH", "TAI64N", "ISO8601"):
        body = {"EPOCH": r"\d{9,11}(?:\.\d{1,9})?", "LEPOCH": r"\d{12,14}",
                "TAI64N": r"@[0-9a-fA-F]{24}",
                "ISO8601": r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?"
                           r"(?:Z|[+-]\d\d(?::?\d\d)?)?"}[keyword]
        prefix = _LN_BEG if anchored else r"\b" if keyword != "TAI64N" else ""
        kind = {"EPOCH": "epoch", "LEPOCH": "lepoch", "TAI64N": "tai64n",
                "ISO8601": "iso"}[keyword]
        compiled = Pattern(prefix + "(?P<_tbdate>" + body + ")", source=ln.text,
                           file=ln.file, line=ln.line, option="datepattern")
        return DateSpec(ln.text, ln.file, ln.line, kind, anchored,
                        compiled.groupindex["_tbdate"], compiled=compiled, line_start=anchored)

    counter = [0]
    used_date = "{DATE}" in text

    def directive(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "%":
            return "%"
        if name == "T":
            return directive_text("H") + ":" + directive_text("M") + ":" + directive_text("S")
        if name not in _DIRECTIVES:
            raise FilterFileError(f"%{name} is not supported in a datepattern",
                                  file=ln.file, line=ln.line, section="Definition",
                                  option="datepattern")
        return directive_text(name)

    def directive_text(name: str) -> str:
        rx, key = _DIRECTIVES[name]
        if key is None:
            return "(?:" + rx + ")"
        counter[0] += 1
        return f"(?P<_tbd_{key}_{counter[0]}>{rx})"

    body = _DIRECTIVE.sub(directive, text)
    body = body.replace("{DATE}", "(?P<_tbdt>" + DEFAULT_DATE + ")")
    if body.startswith("^"):
        body = body[1:]
        anchored = True
    probe = _compile_probe(body, ln)
    unnamed = sorted(set(range(1, probe.groups + 1)) - set(probe.groupindex.values()))
    prefix = _LN_BEG if anchored else ""
    wrapped = prefix + (body if unnamed else "(?P<_tbdate>" + body + ")")
    compiled = Pattern(wrapped, source=ln.text, file=ln.file, line=ln.line,
                       option="datepattern")
    index = compiled.groupindex
    if unnamed:
        date_group = min(set(range(1, compiled.groups + 1)) - set(index.values()))
    else:
        date_group = index["_tbdate"]
    fields = tuple(sorted(((name.split("_")[2], number) for name, number in index.items()
                           if name.startswith("_tbd_")), key=lambda item: item[1]))
    if not fields and not used_date:
        raise FilterFileError("the datepattern has no date or time field (%Y, %H, ... or "
                              "{DATE})", file=ln.file, line=ln.line, section="Definition",
                              option="datepattern")
    return DateSpec(ln.text, ln.file, ln.line, "custom", anchored, date_group, fields,
                    index.get("_tbdt", 0), compiled, anchored and not unnamed)


def _compile_probe(body: str, ln: _Line) -> re.Pattern[str]:
    try:
        return re.compile(body)
    except re.error as exc:
        raise FilterFileError(f"does not compile: {exc.msg}: {_short(ln.text)}", file=ln.file,
                              line=ln.line, section="Definition",
                              option="datepattern") from None


# ------------------------------------------------------------------------ the filter

@dataclass(frozen=True, slots=True)
class UserFilter:
    """A filter read from a file in fail2ban's format, compiled and ready to match."""

    name: str
    path: str  # the main file (NAME.conf, or NAME.local when there is no .conf)
    files: tuple[str, ...]  # every file read, in order
    failregex: tuple[UserRegex, ...]
    ignoreregex: tuple[UserRegex, ...] = ()
    prefregex: UserRegex | None = None
    datepatterns: tuple[DateSpec, ...] = ()
    maxlines: int = 1
    journalmatch: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # the jail's filter options
    line_start_dates: bool = True  # every stamp is at the start of the line


_REF = re.compile(r"^\s*(?P<name>[^\[\]]+?)\s*(?:\[(?P<opts>.*)\])?\s*$", re.DOTALL)


def parse_ref(ref: str) -> tuple[str, dict[str, str]]:
    """``name[key=value, key2="a, b"]`` -> (name, options). Raises ValueError."""
    match = _REF.match(ref)
    if match is None or not match.group("name"):
        raise ValueError(f"not a filter reference: {ref!r}")
    options: dict[str, str] = {}
    text = match.group("opts") or ""
    pos = 0
    item = re.compile(r"\s*(?P<key>[\w.-]+)\s*=\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'"
                      r"|(?P<plain>[^,]*?))\s*(?:,|$)")
    while pos < len(text):
        if not text[pos:].strip():
            break
        found = item.match(text, pos)
        if found is None or found.end() == pos:
            raise ValueError(f"cannot read the filter options {text!r} (write key=value, "
                             "separated by commas)")
        value = found.group("dq")
        if value is None:
            value = found.group("sq")
        if value is None:
            value = found.group("plain")
        options[found.group("key")] = value
        pos = found.end()
    return match.group("name"), options


def filter_files(filter_d: str | Path, name: str) -> list[Path]:
    """NAME.conf, NAME.local, NAME.d/*.conf, NAME.d/*.local that exist, in reading order."""
    root = Path(filter_d)
    files = [root / f"{name}.conf", root / f"{name}.local"]
    drop_in = root / f"{name}.d"
    if drop_in.is_dir():
        files += sorted(drop_in.glob("*.conf")) + sorted(drop_in.glob("*.local"))
    return [f for f in files if f.is_file()]


def load_filter(name: str, filter_d: str | Path, options: dict[str, str] | None = None
                ) -> UserFilter:
    """The filter ``name`` of the directory ``filter_d`` (fail2ban's filter.d)."""
    files = filter_files(filter_d, name)
    if not files:
        raise FilterFileError(f"no filter {name!r}: neither {name}.conf nor {name}.local",
                              file=str(Path(filter_d)))
    return _build(name, files, options or {})


def load_filter_path(path: str | Path, options: dict[str, str] | None = None) -> UserFilter:
    """A filter from one file (``/path/myapp.conf``); its ``.local`` beside it is read too."""
    main = Path(path)
    if not main.is_file():
        raise FilterFileError("no such filter file", file=str(main))
    files = [main]
    if main.suffix == ".conf":
        local = main.with_suffix(".local")
        if local.is_file():
            files.append(local)
    name = main.stem
    return _build(name, files, options or {})


def _build(name: str, files: list[Path], options: dict[str, str]) -> UserFilter:
    reader = _Options(options)
    for path in files:
        reader.read(path)
    main = str(files[0])
    maxlines = _maxlines(reader, main)
    failregex_value = _lines(reader, "failregex")
    if failregex_value is None or not any(ln.text.strip() for ln in failregex_value[1]):
        where = failregex_value[0] if failregex_value is not None else None
        raise FilterFileError("no failregex: the filter must define at least one expression",
                              file=where.file if where else main,
                              line=where.line if where else None, section="Definition",
                              option="failregex")
    prefregex = None
    pref_value = _lines(reader, "prefregex")
    pref_roles: set[str] = set()
    if pref_value is not None:
        pref_lines = [ln for ln in pref_value[1] if ln.text.strip()]
        if len(pref_lines) > 1:
            raise FilterFileError("prefregex is one expression", file=pref_lines[1].file,
                                  line=pref_lines[1].line, section="Definition",
                                  option="prefregex")
        if pref_lines:
            prefregex = _regex(0, pref_lines[0], "prefregex", maxlines, True, False)
            pref_roles = {role for role, _ in prefregex.roles}
    dates = _dates(reader)
    line_start = bool(dates) and all(d.line_start for d in dates)
    failregex = tuple(_regex(index, ln, "failregex", maxlines, False, line_start)
                      for index, ln in enumerate(
                          (ln for ln in failregex_value[1] if ln.text.strip()), start=1))
    for rx in failregex:
        if not rx.has_host and not ({"host", "id", "mlfid"} & pref_roles):
            raise FilterFileError("failregex needs <HOST> (or <ADDR>, <IP4>, <IP6>, <DNS>, "
                                  f"<F-ID>): {_short(rx.source)}", file=rx.file, line=rx.line,
                                  section="Definition", option="failregex")
    ignore_value = _lines(reader, "ignoreregex")
    ignoreregex = tuple(_regex(index, ln, "ignoreregex", maxlines, False, line_start)
                        for index, ln in enumerate(
                            (ln for ln in (ignore_value[1] if ignore_value else ())
                             if ln.text.strip()), start=1))
    journal = _lines(reader, "journalmatch")
    journalmatch = tuple(ln.text.strip() for ln in (journal[1] if journal else ())
                         if ln.text.strip())
    return UserFilter(name, main, tuple(reader.files), failregex, ignoreregex, prefregex,
                      dates, maxlines, journalmatch, tuple(sorted(options.items())),
                      line_start)


def _lines(reader: _Options, option: str) -> tuple[_Def, list[_Line]] | None:
    """An option's lines after interpolation and ``<tag>`` substitution."""
    found = reader.value(option)
    if found is None:
        return None
    d, lines = found
    for _ in range(_MAX_TAG_ROUNDS):
        changed = False
        out: list[_Line] = []
        for ln in lines:
            if "<" not in ln.text:
                out.append(ln)
                continue
            pieces = [_Line("", ln.file, ln.line)]
            pos = 0
            for match in _TAG.finditer(ln.text):
                tag = match.group(1)
                if tag in _SPECIAL or tag.startswith(("F-", "/F-")) \
                        or not reader.defined(tag, "Definition"):
                    continue
                value = reader.value(tag)
                assert value is not None
                pieces[-1].text += ln.text[pos:match.start()]
                _splice(pieces, value[1])
                pos = match.end()
                changed = True
            pieces[-1].text += ln.text[pos:]
            out.extend(pieces)
        lines = out
        if not changed:
            return d, lines
    raise FilterFileError(f"<tag> substitution does not end (a tag refers to itself?) in "
                          f"{option}", file=d.file, line=d.line, section="Definition",
                          option=option)


def _maxlines(reader: _Options, main: str) -> int:
    found = _lines(reader, "maxlines")
    if found is None:
        return 1
    d, lines = found
    text = " ".join(ln.text for ln in lines).strip()
    if not text:
        return 1
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_LINES:
        raise FilterFileError(f"maxlines must be a whole number from 1 to {MAX_LINES} "
                              f"(got {text!r})", file=d.file, line=d.line,
                              section="Definition", option="maxlines")
    return number


def _dates(reader: _Options) -> tuple[DateSpec, ...]:
    found = _lines(reader, "datepattern")
    if found is None:
        return ()
    return tuple(_date_spec(ln) for ln in found[1] if ln.text.strip())


def _regex(index: int, ln: _Line, option: str, maxlines: int, is_pref: bool,
           line_start: bool) -> UserRegex:
    source = ln.text.strip()
    pattern, groups = _translate(source, ln, option, maxlines, is_pref)
    compiled = Pattern(pattern, source=source, file=ln.file, line=ln.line, option=option,
                       multiline=maxlines > 1)
    roles: dict[str, list[int]] = {}
    for group, role in groups:
        roles.setdefault(role, []).append(compiled.groupindex[group])
    literal = ""
    pieces: tuple[str, ...] = ()
    if not is_pref and option == "failregex":
        runs = _literal_runs(pattern, re.MULTILINE if maxlines > 1 else 0)
        literal, pieces = _pieces(runs, line_start)
        if maxlines > 1:
            pieces = ()
    return UserRegex(index, source, pattern, ln.file, ln.line,
                     tuple((role, tuple(numbers)) for role, numbers in roles.items()),
                     literal, pieces, compiled)
