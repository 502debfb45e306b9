"""Which matcher runs a filter, and which filter a jail's ``filter = ...`` means.

Built-in filters (:mod:`builtin`) run on :class:`ChunkMatcher`; filters read from
fail2ban-format files (:mod:`fail2ban_file`) on :class:`UserMatcher`. Both have the
interface of :class:`Matcher`.

Resolution of ``filter = REF`` (see docs/filters.md):

1. ``REF`` is a path (``/etc/tailban/filter.d/myapp.conf``): that file (and its ``.local``);
2. ``CONFDIR/filter.d/NAME.local`` exists: the administrator customised ``NAME``, so the
   file filter (``NAME.conf`` + ``NAME.local`` + ``NAME.d/``) is used even for a built-in
   name; for a shipped name without ``CONFDIR/filter.d/NAME.conf``, the shipped
   ``NAME.conf`` is read first and the administrator's files on top, as fail2ban does;
3. ``NAME`` is shipped (a filter file of ``filters/shipped/``) or built in: that filter;
4. ``CONFDIR/filter.d/NAME.conf`` exists: that file filter;
5. otherwise :class:`UnknownFilter`.

A file filter of a jail gets the jail's name as the option ``_jailname`` (unless the jail's
``filter = NAME[...]`` sets it), so ``recidive`` never counts its own jail's ban lines.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Protocol

from tailban.core.events import Failure, Success
from tailban.filters.builtin import UnknownFilter, filter_names, resolve_filter
from tailban.filters.fail2ban_file import (
    UserFilter,
    filter_files,
    load_filter,
    load_filter_path,
    parse_ref,
)
from tailban.filters.fail2ban_file import _build as build_filter
from tailban.filters.matcher import ChunkMatcher
from tailban.filters.model import FilterSpec
from tailban.filters.user_matcher import UserMatcher

AnyFilter = FilterSpec | UserFilter

#: the filter files in fail2ban's format that tailban ships (package data)
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


def shipped_names() -> list[str]:
    """The names of the shipped filter files (``vsftpd``, ``apache-auth``, ...)."""
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.conf"))


def known_names() -> list[str]:
    """Every filter name tailban knows without a filter.d: built in or shipped."""
    return sorted(set(filter_names()) | set(shipped_names()))


class Matcher(Protocol):
    """What the daemon and the tools use of a matcher."""

    lines_matched: int
    event_lines: list[int] | None

    def scan(self, chunk: bytes, now: float) -> list[Failure | Success]: ...

    def match_line(self, line: str, now: float) -> list[Failure | Success]: ...


def make_matcher(spec: AnyFilter, tz: tzinfo | None = None, *, trace: bool = False,
                 track_lines: bool = False) -> Matcher:
    """A fresh matcher for ``spec`` (matchers keep per-connection state: one per jail)."""
    if isinstance(spec, UserFilter):
        return UserMatcher(spec, tz, trace=trace, track_lines=track_lines)
    return ChunkMatcher(spec, tz, trace=trace, track_lines=track_lines)


def is_filter_path(ref: str) -> bool:
    """Whether ``ref`` names a filter file rather than a filter."""
    name = ref.split("[", 1)[0].strip()
    return "/" in name or name.endswith((".conf", ".local"))


def resolve(ref: str, mode: str | None = None, confdir: str | None = None,
            jail: str | None = None) -> AnyFilter:
    """The filter ``ref`` means (see the module's docstring); ``jail``: the jail's name.

    Raises UnknownFilter, ValueError (a malformed reference) or FilterFileError (a
    ConfigError naming the filter file's line).
    """
    if is_filter_path(ref):
        path, options = parse_ref(ref)
        return load_filter_path(Path(path), _file_options(options, mode, jail))
    name, options = parse_ref(ref)
    filter_d = Path(confdir) / "filter.d" if confdir else None
    shipped = SHIPPED_DIR / f"{name}.conf"
    if filter_d is not None and (filter_d / f"{name}.local").is_file():
        if shipped.is_file() and not (filter_d / f"{name}.conf").is_file():
            return build_filter(name, [shipped, *filter_files(filter_d, name)],
                                _file_options(options, mode, jail))
        return load_filter(name, filter_d, _file_options(options, mode, jail))
    if shipped.is_file():
        return build_filter(name, [shipped], _file_options(options, mode, jail))
    try:
        return resolve_filter(ref, mode)
    except UnknownFilter:
        if name in filter_names() or filter_d is None \
                or not (filter_d / f"{name}.conf").is_file():
            if name not in filter_names():
                where = f" and no {filter_d}/{name}.conf" if filter_d is not None else ""
                raise UnknownFilter(f"unknown filter {name!r}: not built in (known: "
                                    f"{', '.join(known_names())}){where}") from None
            raise
    return load_filter(name, filter_d, _file_options(options, mode, jail))


def _file_options(options: dict[str, str], mode: str | None,
                  jail: str | None) -> dict[str, str]:
    if mode and "mode" not in options:
        options["mode"] = mode
    if jail and "_jailname" not in options:
        options["_jailname"] = jail
    return options
