"""Filters for the other services fail2ban users protect (one FilterSpec per service/mode).

Registered into the built-in table by ``tailban.filters.builtin``.

The same rules as there hold for attacker-controlled text: the address is read from a
place the daemon writes itself (``ip=[ADDR]``, ``Exit before auth from <ADDR:PORT>``), or
the user name before it is captured greedily and the expression is anchored at the
daemon's fixed tail; PAM lines use the two-way check of ``sshd``/``dovecot``.

The services that write logs of their own format (or both their own and syslog) are
filter files in fail2ban's format shipped in ``filters/shipped/`` (read by
:mod:`tailban.filters.fail2ban_file`, resolved by :mod:`tailban.filters.factory`):
``vsftpd``, ``proftpd``, ``selinux-ssh``, ``nginx-http-auth``, ``apache-auth`` and
``recidive``. The syslog-only matcher here cannot read their own logs, and one name
must read all of a service's formats.
"""

from __future__ import annotations

from tailban.filters.builtin import _PAM_TAIL, ADDR, _rule
from tailban.filters.model import FilterSpec, Rule

# --------------------------------------------------------------------------- pam-generic

# ``(pam_unix) authentication failure;`` (old), ``pam_unix(SERVICE:auth): ...``,
# ``pam_unix: ...``; the fields after it as in sshd's PAM rule (two-way check).
_PAM_HEAD = r"(?:\(pam_unix\) |pam_unix(?:\([^)\s]*\))?:\s+)"

PAM_GENERIC: tuple[Rule, ...] = (
    _rule("pam-generic:auth-failure", "authentication failure;", _PAM_HEAD + _PAM_TAIL),
)

# --------------------------------------------------------------------------- courier-auth

COURIER_AUTH: tuple[Rule, ...] = (
    # ``LOGIN FAILED, user=U, ip=[ADDR][, port=[N]]`` or ``method=M`` instead of the user:
    # the user is greedy and the line anchored at the daemon's own ``ip=[..]`` tail.
    _rule("courier-auth:login-failed", "LOGIN FAILED, ",
          r"LOGIN FAILED, (?:user=(?P<user>.*), )?(?:method=[-\w]+, )?ip=\[" + ADDR
          + r"\](?:, port=\[\d+\])?$"),
)

# --------------------------------------------------------------------------- dropbear

_DB_FROM = r" from \[?" + ADDR + r"\]?:\d+$"  # the daemon's own tail: `` from ADDR:PORT``
# dropbear logging to stderr (``-E``), its output sent on to syslog: its own ``[PID] Mmm dd
# HH:MM:SS `` before the message
_DB_HEAD = r"(?:\[\d+\] [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?"

DROPBEAR: tuple[Rule, ...] = (
    _rule("dropbear:bad-password", "ad password attempt for ",
          _DB_HEAD + r"[bB]ad password attempt for '(?P<user>.*)'" + _DB_FROM),
    _rule("dropbear:nonexistent-user", "ogin attempt for nonexistent user",
          _DB_HEAD + r"[lL]ogin attempt for nonexistent user(?: '(?P<user>.*)')?" + _DB_FROM),
    _rule("dropbear:max-tries", "Max auth tries reached",
          _DB_HEAD + r"Exit before auth(?: \(user '(?P<user>.*)', \d+ fails\))?: "
          r"Max auth tries reached - user '.*'" + _DB_FROM),
    # newer dropbear: the address at a fixed place in front, ``Exit before auth from
    # <ADDR:PORT>: [(user 'U', N fails): ]Max auth tries reached - user 'U'``
    _rule("dropbear:max-tries", "Exit before auth from <",
          _DB_HEAD + r"Exit before auth from <\[?" + ADDR + r"\]?:\d+>: "
          r"(?:\(user '(?P<user>.*)', \d+ fails\): )?Max auth tries reached - user '.*'$"),
)

SERVICE_FILTERS: dict[str, dict[str, FilterSpec]] = {
    # any program that uses pam_unix; ``prog(pam_unix)[pid]:`` is not a syslog tag
    "pam-generic": {"normal": FilterSpec("pam-generic", r"[\w.@/-]+", PAM_GENERIC)},
    "courier-auth": {"normal": FilterSpec(
        "courier-auth", r"(?:courier)?(?:imap|pop3|esmtp)(?:d|login)?(?:-ssl)?|courier-\w+",
        COURIER_AUTH)},
    "dropbear": {"normal": FilterSpec("dropbear", r"dropbear", DROPBEAR)},
}
