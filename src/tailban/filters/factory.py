"""Which matcher runs a filter, and which filter a jail's ``filter = ...`` means.

Built-in filters (:mod:`builtin`) run on :class:`ChunkMatcher`; filters read from
fail2ban-format files (:mod:`fail2ban_file`) on :class:`UserMatcher`. Both have the
interface of :class:`Matcher`.

Resolution of ``filter = REF`` (see docs/filters.md):

1. ``REF`` is a path (``/etc/tailban/filter.d/myapp.conf``): that file (and its ``.local``);
2. ``CONFDIR/filter.d/NAME.local`` exists: the administrator customised ``NAME``, so the
   file filter (``NAME.conf`` + ``NAME.local`` + ``NAME.d/``) is used even for a built-in
   name;
3. ``NAME`` is built in: the built-in filter;
4. ``CONFDIR/filter.d/NAME.conf`` exists: that file filter;
5. otherwise :class:`UnknownFilter`.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Protocol

from tailban.core.events import Failure, Success
from tailban.filters.builtin import UnknownFilter, filter_names, resolve_filter
from tailban.filters.fail2ban_file import UserFilter, load_filter, load_filter_path, parse_ref
from tailban.filters.matcher import ChunkMatcher
from tailban.filters.model import FilterSpec
from tailban.filters.user_matcher import UserMatcher

AnyFilter = FilterSpec | UserFilter


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


def resolve(ref: str, mode: str | None = None, confdir: str | None = None) -> AnyFilter:
    """The filter ``ref`` means (see the module's docstring).

    Raises UnknownFilter, ValueError (a malformed reference) or FilterFileError (a
    ConfigError naming the filter file's line).
    """
    if is_filter_path(ref):
        path, options = parse_ref(ref)
        if mode and "mode" not in options:
            options["mode"] = mode
        return load_filter_path(Path(path), options)
    name, options = parse_ref(ref)
    filter_d = Path(confdir) / "filter.d" if confdir else None
    if filter_d is not None and (filter_d / f"{name}.local").is_file():
        return _file_filter(name, options, mode, filter_d)
    try:
        return resolve_filter(ref, mode)
    except UnknownFilter:
        if name in filter_names() or filter_d is None \
                or not (filter_d / f"{name}.conf").is_file():
            if filter_d is not None and name not in filter_names():
                raise UnknownFilter(f"unknown filter {name!r}: not built in (known: "
                                    f"{', '.join(filter_names())}) and no {filter_d}/"
                                    f"{name}.conf") from None
            raise
    return _file_filter(name, options, mode, filter_d)


def _file_filter(name: str, options: dict[str, str], mode: str | None,
                 filter_d: Path) -> UserFilter:
    if mode and "mode" not in options:
        options["mode"] = mode
    return load_filter(name, filter_d, options)
