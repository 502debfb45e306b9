"""Filters for the other services fail2ban users protect (one FilterSpec per service/mode).

Registered into the built-in table by ``tailban.filters.builtin``.

The same rules as there hold for attacker-controlled text: the address is read from a
place the daemon writes itself (``ip=[ADDR]``, ``(NAME[ADDR])``, ``[client ADDR]``), or
the user name before it is captured greedily and the expression is anchored at the
daemon's fixed tail; PAM lines use the two-way check of ``sshd``/``dovecot``.

Not here, because the matcher reads only syslog-style lines (``TIME [HOST] TAG[PID]: MSG``
or RFC 5424), and these services write their own format:

* ``selinux-ssh``: audit records (``type=USER_AUTH msg=audit(EPOCH.MS:SERIAL): ...``),
  no syslog stamp or tag;
* ``nginx-http-auth``: nginx's error log (``YYYY/MM/DD HH:MM:SS [error] PID#TID: ...``);
* ``apache-auth``: Apache's own error log (``[Www Mmm dd HH:MM:SS YYYY] [error] ...``).
  :data:`APACHE_AUTH_SYSLOG` reads the same messages sent through syslog (``ErrorLog
  syslog``, fail2ban's ``logging=syslog``) but is NOT registered: a jail ``apache-auth``
  on the default ``/var/log/apache2/error.log`` would then silently find nothing, and
  ``tests/test_config.py`` relies on ``apache-auth`` being unknown. Register it once the
  matcher reads Apache's stamp (or as an explicit syslog variant).
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

# --------------------------------------------------------------------------- vsftpd

VSFTPD: tuple[Rule, ...] = (
    # vsftpd's PAM failures (``vsftpd: (pam_unix) ...``, ``pam_unix(vsftpd:auth): ...``).
    _rule("vsftpd:pam-failure", "authentication failure;",
          r"(?:\(pam_unix\) |pam_unix\(vsftpd:auth\):\s+)" + _PAM_TAIL),
)

# --------------------------------------------------------------------------- proftpd

# ``SERVER (RNAME[ADDR]) - MESSAGE``: the client's address stands at a fixed place in
# front of every message; the reverse name is one token without brackets.
_PROFTPD_CLIENT = r"\S+ \([^\s\[\]()]*\[" + ADDR + r"\]\) - "

PROFTPD: tuple[Rule, ...] = (
    _rule("proftpd:no-such-user", "no such user found",
          _PROFTPD_CLIENT + r"USER (?P<user>.+?): no such user found from .*$"),
    _rule("proftpd:login-failed", "(Login failed)",
          _PROFTPD_CLIENT + r"USER (?P<user>.+?) \(Login failed\): .*$"),
    _rule("proftpd:root-login", "SECURITY VIOLATION",
          _PROFTPD_CLIENT + r"SECURITY VIOLATION: (?P<user>\S+) login attempted\.?$"),
    _rule("proftpd:max-attempts", "Maximum login attempts",
          _PROFTPD_CLIENT + r"Maximum login attempts \(\d+\) exceeded$"),
)

# --------------------------------------------------------------------------- dropbear

_DB_FROM = r" from \[?" + ADDR + r"\]?:\d+$"  # the daemon's own tail: `` from ADDR:PORT``

DROPBEAR: tuple[Rule, ...] = (
    _rule("dropbear:bad-password", "ad password attempt for ",
          r"[bB]ad password attempt for '(?P<user>.*)'" + _DB_FROM),
    _rule("dropbear:nonexistent-user", "ogin attempt for nonexistent user",
          r"[lL]ogin attempt for nonexistent user(?: '(?P<user>.*)')?" + _DB_FROM),
    _rule("dropbear:max-tries", "Max auth tries reached",
          r"Exit before auth(?: \(user '(?P<user>.*)', \d+ fails\))?: "
          r"Max auth tries reached - user '.*'" + _DB_FROM),
)

# --------------------------------------------------------------------------- apache-auth

# ``[MODULE:error] [pid N[:tid N]] [client ADDR[:PORT]] [AHnnnnn: ]MESSAGE``; mod_evasive's
# denials are not authentication failures (fail2ban's aggressive mode only).
_AP_CLIENT = (r"\[(?!evasive)[\w]*:?error\] (?:\[pid \d+(?::tid \d+)?\] )?"
              r"\[client \[?" + ADDR + r"\]?(?::\d+)?\] (?:AH\d+: )?")


def _apache(name: str, literal: str, message: str) -> Rule:
    return _rule("apache-auth:" + name, literal, _AP_CLIENT + message)


APACHE_AUTH: tuple[Rule, ...] = (
    _apache("user-not-found", " not found", r"(?:Digest: )?user (?:`(?P<user>.*)' in realm `.*'"
            r"|(?P<alt_user>.*?)) not found(?:: .*)?$"),
    _apache("password-mismatch", "Password Mismatch",
            r"user (?P<user>.*?): authentication failure for \".*\": Password Mismatch$"),
    _apache("digest-mismatch", "password mismatch",
            r"(?:Digest: )?user (?P<user>.*?): password mismatch: .*$"),
    _apache("denied", "client denied by server configuration",
            r"client denied by server configuration: .*$"),
    _apache("wrong-scheme", "wrong authentication scheme",
            r"client used wrong authentication scheme: .*$"),
    _apache("authz-owner", "Authorization of user ",
            r"Authorization of user (?P<user>.*?) to access .* failed, reason: .*$"),
    _apache("authz-failure", "authorization failure for ",
            r"user (?P<user>.*?): authorization failure for \".*\":.*$"),
    _apache("digest-qop", "invalid qop ", r"(?:Digest: )?invalid qop .* received: .*$"),
    _apache("digest-nonce", "invalid nonce ",
            r"(?:Digest: )?invalid nonce \S+ received - "
            r"(?:length is not \d+|user attempted time travel)$"),
    _apache("digest-realm", "realm mismatch",
            r"(?:Digest: )?realm mismatch - got `.*' but expected `.*'$"),
    _apache("digest-algorithm", "unknown algorithm ",
            r"(?:Digest: )?unknown algorithm `.*' received: .*$"),
    _apache("sni", "provided via SNI",
            r"Hostname \S+ provided via SNI(?:, but no hostname provided in HTTP request"
            r"| and hostname \S+ provided via HTTP (?:have no compatible SSL setup"
            r"|are different))$"),
    _apache("no-sni", "No hostname was provided via SNI",
            r"No hostname was provided via SNI for a name based virtual host$"),
)

SERVICE_FILTERS: dict[str, dict[str, FilterSpec]] = {
    # any program that uses pam_unix; ``prog(pam_unix)[pid]:`` is not a syslog tag
    "pam-generic": {"normal": FilterSpec("pam-generic", r"[\w.@/-]+", PAM_GENERIC)},
    "courier-auth": {"normal": FilterSpec(
        "courier-auth", r"(?:courier)?(?:imap|pop3|esmtp)(?:d|login)?(?:-ssl)?|courier-\w+",
        COURIER_AUTH)},
    "vsftpd": {"normal": FilterSpec("vsftpd", r"vsftpd", VSFTPD)},
    "proftpd": {"normal": FilterSpec("proftpd", r"proftpd", PROFTPD)},
    "dropbear": {"normal": FilterSpec("dropbear", r"dropbear", DROPBEAR)},
}

#: Apache's error messages sent through syslog; not registered (see the module's doc).
APACHE_AUTH_SYSLOG = FilterSpec("apache-auth", r"httpd(?:/[\w.-]+)?|apache2?(?:/[\w.-]+)?",
                                APACHE_AUTH)
