"""Filters as data: what to look for, compiled once into a matcher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RuleKind = Literal["fail", "nofail", "host", "success", "close", "summary"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One regular expression over a line's message (the text after ``tag[pid]:``).

    ``literal`` is text that every matching line contains; the matcher looks for it in
    whole chunks first, so lines without any rule's literal cost almost nothing.
    The regex is matched at the start of the message (with trailing white space removed),
    so it must describe the whole message and end with ``$``.

    Named groups: ``host`` (address or name), ``user``, ``alt_user`` (a second user field,
    used when ``user`` did not take part), ``count`` (attempts the line stands for).

    ``kind`` says what a match means for the connection (``tag[pid]``) it belongs to:

    * ``fail``: a failure. When the connection's address is not known yet (the line has
      no ``host``), the failure waits until a later line of the same connection names it.
    * ``nofail``: an attempt that is not a failure by itself (a PAM line that sshd also
      reports as ``Failed password``, a rejected public key of a valid user). It is kept
      with the connection and becomes a failure when the connection tries a second user
      name, and it is merged into a later failure of the connection.
    * ``host``: only tells the connection's address (``Connection from ADDR``).
    * ``success``: a login; ends the connection. A failure instead when the connection
      tried another user name before (an intruder logging in under a second name).
    * ``summary``: a line that sums up the connection's tries (PAM's ``N more authentication
      failures``): it stands for ``count`` + 1 attempts, of which the connection's failures
      already counted are taken off, so an attempt is never counted twice.
    * ``close``: the end of a connection. Completes a waiting failure with its address,
      then forgets the connection. Skipped for connections the matcher does not know.

    ``forget``: a ``fail`` that also ends the connection.

    ``check``: a second expression for the same message that must capture ``host`` at the
    same place. Rules whose attacker-controlled text (user names, key info) can stand on
    both sides of the address use it: ``regex`` takes the right-most reading, ``check``
    the left-most one; when they differ the line could be read two ways and yields
    nothing rather than an address the attacker may have written.

    ``separator``: the fixed text just before ``host`` in both expressions (`` from ``).
    Where the message holds it once, both readings put the address at the same place, and
    the check is skipped.
    """

    name: str
    literal: str
    regex: str
    kind: RuleKind = "fail"
    forget: bool = False
    check: str | None = None
    also: tuple[str, ...] = ()  # further literals: any of them makes a line a candidate
    legacy: bool = False  # an old log format (``sshd(pam_unix)``, klogind): ``legacy_tags``
    separator: str = ""


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A named filter for one service: which syslog tags it reads and its rules."""

    name: str
    tags: str  # regular expression for the syslog program tag, e.g. ``sshd(?:-session)?``
    rules: tuple[Rule, ...]
    ignore: tuple[str, ...] = ()  # regexes: a line matching one is never a failure
    modes: tuple[str, ...] = ("normal",)
    options: dict[str, str] = field(default_factory=dict)
    # What tailban counts beyond fail2ban; each a per-jail opt-out (docs/filters.md).
    expand_repeats: bool = True  # ``message repeated N times`` counts N
    count_summaries: bool = True  # ``N attempts`` / ``PAM N more`` count their N
    legacy_tags: bool = True  # read old formats: ``sshd(pam_unix)[pid]:``, klogind
