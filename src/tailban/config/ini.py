"""A small INI reader that remembers where every value came from.

configparser loses file and line numbers, and those are what an administrator needs in an
error message. The syntax is fail2ban's: ``[section]``, ``key = value`` (or ``key: value``),
indented continuation lines, ``#``/``;`` comments, ``%(name)s`` interpolation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tailban.config.errors import ConfigError

_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*(?:[#;].*)?$")
_OPTION = re.compile(r"^(?P<key>[^=:\s][^=:]*?)\s*(?P<op>\+?=|:)\s*(?P<value>.*)$")
_INTERP = re.compile(r"%\((?P<name>[^)]+)\)s")
_MAX_DEPTH = 10


@dataclass(frozen=True, slots=True)
class Value:
    """An option's raw text and the place it was written."""

    text: str
    file: str
    line: int


@dataclass
class IniDocument:
    """Sections in file order; later files override earlier ones key by key."""

    sections: dict[str, dict[str, Value]] = field(default_factory=dict)
    section_origin: dict[str, tuple[str, int]] = field(default_factory=dict)

    def merge_text(self, text: str, file: str) -> None:
        current: str | None = None
        last_key: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.rstrip()
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            if raw[:1] in (" ", "\t") and current is not None and last_key is not None:
                prev = self.sections[current][last_key]
                joined = prev.text + "\n" + stripped if prev.text else stripped
                self.sections[current][last_key] = Value(joined, prev.file, prev.line)
                continue
            section = _SECTION.match(stripped)
            if section:
                current = section.group("name").strip()
                self.sections.setdefault(current, {})
                self.section_origin.setdefault(current, (file, number))
                last_key = None
                continue
            option = _OPTION.match(stripped)
            if option is None:
                raise ConfigError(f"cannot parse line {stripped[:80]!r}", file=file, line=number)
            if current is None:
                raise ConfigError("option before any [section]", file=file, line=number,
                                  option=option.group("key"))
            key = option.group("key").strip()
            value = _strip_comment(option.group("value"))
            if option.group("op") == "+=" and key in self.sections[current]:
                prev = self.sections[current][key]
                value = prev.text + "\n" + value
            self.sections[current][key] = Value(value, file, number)
            last_key = key

    def get(self, section: str, key: str, defaults: str | None = "DEFAULT") -> Value | None:
        own = self.sections.get(section, {})
        if key in own:
            return own[key]
        if defaults and defaults != section:
            return self.sections.get(defaults, {}).get(key)
        return None

    def keys(self, section: str) -> list[str]:
        return list(self.sections.get(section, {}))

    def resolve(self, section: str, key: str, extra: dict[str, str] | None = None,
                defaults: str | None = "DEFAULT") -> Value | None:
        """The value with ``%(name)s`` replaced from the section, then DEFAULT, then extra."""
        value = self.get(section, key, defaults)
        if value is None:
            return None
        text = self._interpolate(section, value, extra or {}, defaults, 0)
        return Value(text, value.file, value.line)

    def _interpolate(self, section: str, value: Value, extra: dict[str, str],
                     defaults: str | None, depth: int) -> str:
        if "%(" not in value.text:
            return value.text.replace("%%", "%")
        if depth > _MAX_DEPTH:
            raise ConfigError("interpolation nests too deeply (a loop?)", file=value.file,
                              line=value.line, section=section)

        def replace(match: re.Match[str]) -> str:
            name = match.group("name")
            if name in extra:
                return extra[name]
            ref = self.get(section, name, defaults)
            if ref is None:
                raise ConfigError(f"%({name})s refers to an option that is not defined",
                                  file=value.file, line=value.line, section=section)
            return self._interpolate(section, ref, extra, defaults, depth + 1)

        return _INTERP.sub(replace, value.text).replace("%%", "%")


def _strip_comment(value: str) -> str:
    """Drop a trailing `` # comment`` or `` ; comment`` (fail2ban needs the leading space)."""
    for marker in (" #", " ;", "\t#", "\t;"):
        index = value.find(marker)
        if index >= 0:
            value = value[:index]
    return value.strip()
