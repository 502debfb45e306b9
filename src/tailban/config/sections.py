"""The optional sections of tailban.conf (``[fleet]``, ...): known keys and typed reading.

Each section is a small frozen settings value; an unknown key or a bad value is a
ConfigError with file, line, section and option, like everywhere else.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from typing import TypeVar

from tailban.config.errors import ConfigError
from tailban.config.ini import IniDocument
from tailban.config.model import FleetSettings
from tailban.core.durations import parse_duration

T = TypeVar("T")

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_TLS_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

SECTIONS: dict[str, frozenset[str]] = {
    "fleet": frozenset({"store", "host", "group", "password_file", "trust", "keep", "migrate",
                        *_TLS_KEYS}),
}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def parse_trust(text: str) -> tuple[str, ...]:
    """Host names and ``group:NAME`` entries, space or comma separated."""
    items = text.replace(",", " ").split()
    for item in items:
        name = item[len("group:"):] if item.startswith("group:") else item
        if not _NAME.match(name):
            raise ValueError(f"not a host or group:NAME: {item!r}")
    return tuple(items)


class SectionReader:
    """Typed values of one section, each error pointing at its line."""

    def __init__(self, doc: IniDocument, section: str) -> None:
        self.doc = doc
        self.section = section
        known = SECTIONS[section]
        for key, value in doc.sections.get(section, {}).items():
            if key not in known:
                raise ConfigError(f"unknown option (known: {', '.join(sorted(known))})",
                                  file=value.file, line=value.line, section=section,
                                  option=key)

    def get(self, key: str, parse: Callable[[str], T], default: T) -> T:
        value = self.doc.resolve(self.section, key)
        if value is None or not value.text.strip():
            return default
        try:
            return parse(value.text.strip())
        except ValueError as exc:
            raise ConfigError(f"{exc} (got {value.text!r})", file=value.file, line=value.line,
                              section=self.section, option=key) from None

    def text(self, key: str, default: str = "") -> str:
        return self.get(key, str, default)


def _store_url(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise ValueError("store is postgresql://[user@]host[:port]/database or sqlite:///path")
    if text.startswith("postgres") and ":" in text.split("://", 1)[1].split("@")[0] \
            and "@" in text:
        raise ValueError("do not put the password in the URL (it shows in ps and logs): "
                         "use password_file or TAILBAN_FLEET_PASSWORD")
    return text


def _host_name(text: str) -> str:
    if not _NAME.match(text):
        raise ValueError("host is letters, digits, '.', '_', ':' or '-' (max 128)")
    return text


def _absolute(text: str) -> str:
    if not os.path.isabs(text):
        raise ValueError("must be an absolute path")
    return text


def _sslmode(text: str) -> str:
    if text not in _SSLMODES:
        raise ValueError(f"sslmode is one of {', '.join(_SSLMODES)}")
    return text


def fleet_settings(doc: IniDocument) -> FleetSettings:
    read = SectionReader(doc, "fleet")
    tls = [("sslmode", read.get("sslmode", _sslmode, ""))]
    tls += [(key, read.get(key, _absolute, "")) for key in _TLS_KEYS[1:]]
    hostname = socket.gethostname()
    return FleetSettings(
        store=read.get("store", _store_url, ""),
        host=read.get("host", _host_name, hostname if _NAME.match(hostname) else "localhost"),
        group=read.get("group", _host_name, ""),
        password_file=read.get("password_file", _absolute, None),
        tls=tuple((k, v) for k, v in tls if v),
        trust=read.get("trust", parse_trust, ()),
        keep=read.get("keep", parse_duration, 7 * 86400.0),
        migrate=read.get("migrate", parse_bool, True))
