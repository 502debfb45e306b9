"""The filters tailban ships, as data. Regexes are matched at the start of the message.

Attacker-controlled text (user names, the client's disconnect message, key info,
passwords some daemons log) is never trusted to delimit the address:

* where the attacker's text comes before the address and the daemon's fixed text after
  it, the user is captured greedily and the expression is anchored at the end of the
  line, so the address is the one in the daemon's own tail (``... from ADDR port N
  ssh2``): a user name containing `` from 6.6.6.6 port 1 ssh2`` is not followed by that
  tail and cannot become the captured host;
* where the address stands at a fixed place (``rip=``, ``unknown[ADDR]``, ``Received
  disconnect from ADDR``) it is read from that place only;
* where attacker text can stand on both sides of the address (key info, ``ruser=`` and
  ``user=`` of PAM), the rule carries a ``check`` expression reading the line the other
  way round (left-most address instead of right-most); a line that reads two ways
  yields no failure at all.
"""

from __future__ import annotations

import re
from dataclasses import replace

from tailban.filters.model import FilterSpec, Rule, RuleKind

# Addresses. ``::ffff:`` in front of an IPv4 address is left out of the capture.
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_IPV6 = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[\w.-]+)?"
_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_MAPPED = r"(?:::[fF]{4}:(?=\d))?"
#: an address written by the daemon itself
ADDR = _MAPPED + r"(?P<host>" + _IPV4 + "|" + _IPV6 + ")"
#: an address or, where the daemon may have resolved it, a host name
HOST = _MAPPED + r"(?P<host>" + _IPV4 + "|" + _IPV6 + "|" + _NAME + ")"


def _twin(template: str) -> tuple[str, str]:
    """The right-most (greedy) and left-most (lazy) reading of ``template``.

    ``{U}`` stands for attacker text before the address, ``{L}`` for text before it that
    should be read lazily in the main expression (and greedily in the check).
    """
    main = template.replace("{U}", ".*").replace("{L}", ".*?")
    check = template.replace("{U}", ".*?").replace("{L}", ".*")
    return main, check


def _rule(name: str, literal: str, template: str, kind: RuleKind = "fail", *,
          forget: bool = False, also: tuple[str, ...] = ()) -> Rule:
    """A rule; templates with ``{U}``/``{L}`` get the two-way check."""
    if "{U}" in template or "{L}" in template:
        main, check = _twin(template)
    else:
        main, check = template, None
    return Rule(name, literal, main, kind, forget, check, also,
                separator=_separator(template) if check else "")


def _separator(template: str) -> str:
    """The plain text right before the address in ``template`` ("" when there is none).

    Only text after the last attacker-text group counts, and none may follow the address:
    then a message holding the separator once can only be read one way.
    """
    at = min((i for i in (template.find(ADDR), template.find(HOST)) if i >= 0), default=-1)
    if at < 0 or max(template.rfind("{U})", 0, at), template.rfind("{L})", 0, at)) < 0 \
            or "{U}" in template[at:] or "{L}" in template[at:]:
        return ""  # no attacker text before the address, or some after it too
    end = at
    while at > 0 and (template[at - 1].isalnum() or template[at - 1] in " =,:"):
        at -= 1
    return template[at:end]


# --------------------------------------------------------------------------- sshd

_S = r"(?: \[preauth\])?$"  # sshd's optional suffix; messages are right-stripped
_ERR = r"(?:error: )?(?:PAM: )?"
_PORT = r"(?: port \d+)?"
#: what sshd appends to a password-like failure: nothing after ``ssh2``, ``ruser`` for ssh1
_PW_TAIL = r" port \d+(?: ssh2| ssh1(?:: ruser .*)?)?" + _S
#: public key and host based methods add ``: KEYTYPE FINGERPRINT[, client user ...]``
_KEY_TAIL = r"(?: port \d+)?(?: ssh[12])?(?:: .*)?$"
#: pam_unix: ``ruser`` (before the address) and ``user`` (after it) may both be the client's
_PAM_FIELDS = (r";(?:\s+(?:logname|e?uid|tty)=\S*)*"
               r"\s+ruser=(?P<alt_user>{L})\s+rhost=" + HOST + r"(?:\s+user=(?P<user>.*?))?" + _S)
_PAM_TAIL = r"authentication failure" + _PAM_FIELDS
_SSHD_DENIED = (r"not listed in AllowUsers|listed in DenyUsers|not in any group"
                r"|a group is listed in DenyGroups|none of user's groups are listed in AllowGroups")

_SSHD_COMMON: tuple[Rule, ...] = (
    *(_rule("sshd:auth-failure", literal,
            _ERR + r"[aA]uthentication (?:failure|error|failed) for "
            r"(?:illegal user |invalid user )?(?P<user>.*) from " + HOST + r"(?: via \S+)?" + _S)
      for literal in ("uthentication failure for ", "uthentication error for ",
                      "uthentication failed for ")),
    _rule("sshd:user-unknown", "User not known",
          _ERR + r"User not known to the underlying authentication module for "
          r"(?:illegal user |invalid user )?(?P<user>.*) from " + HOST + _S),
    # A rejected key of a valid user is not a failure (clients try several keys); of an
    # invalid user it is.
    _rule("sshd:failed-publickey-invalid", "Failed publickey for invalid user ",
          r"Failed publickey for invalid user (?P<user>{U}) from " + ADDR + _KEY_TAIL),
    _rule("sshd:failed-publickey", "Failed publickey for ",
          r"Failed publickey for (?P<user>{U}) from " + ADDR + _KEY_TAIL, "nofail"),
    _rule("sshd:failed-hostbased", "Failed hostbased for ",
          r"Failed hostbased for (?:invalid user )?(?P<user>{U}) from " + ADDR + _KEY_TAIL),
    # Password-like methods: sshd adds nothing after ``ssh2``, so the address is the one
    # before the line's fixed end (ssh1 added the client's ``ruser``: hence the check).
    _rule("sshd:failed-password", "Failed ",
          r"Failed [-\w/@.]+ for (?:invalid user )?(?P<user>{U}) from " + ADDR + _PW_TAIL),
    # Very old sshd: no port.
    _rule("sshd:failed-password", "Failed ",
          r"Failed [-\w/@.]+ for (?:invalid user )?(?P<user>.*) from " + ADDR + "$"),
    _rule("sshd:root-refused", "LOGIN REFUSED",
          r"(?P<user>ROOT) LOGIN REFUSED FROM " + HOST + _PORT + _S),
    _rule("sshd:invalid-user", "nvalid user ",
          r"[iI]nvalid user (?P<user>.*) from " + ADDR + _PORT + _S),
    _rule("sshd:invalid-user", "llegal user ",
          r"[iI]llegal user (?P<user>.*) from " + ADDR + _PORT + _S),
    _rule("sshd:not-allowed", "not allowed because",
          r"User (?P<user>.*) from " + HOST + r" not allowed because (?:" + _SSHD_DENIED + ")"
          + _S),
    _rule("sshd:account-locked", "account is locked",
          r"User (?P<user>.*) not allowed because account is locked" + _S),
    _rule("sshd:refused-connect", "refused connect from ",
          r"refused connect from .* \(" + HOST + r"\)$"),
    _rule("sshd:max-attempts", "maximum authentication attempts",
          _ERR + r"maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*)"
          r" from " + ADDR + _PORT + r"(?: ssh[12])?" + _S),
    _rule("sshd:change-user", "Change of username",
          r"Disconnecting(?: from)? (?:invalid|authenticating) user (?P<user>{U}) " + ADDR
          + r" port \d+: Change of username or service not allowed: \(.*\) -> \(.*\)" + _S,
          forget=True),
    # PAM's summary of a connection's tries; counts only the tries sshd did not report.
    _rule("sshd:pam-more", "more authentication failure",
          r"PAM (?P<count>\d+) more authentication failures?" + _PAM_FIELDS, "summary"),
    # Old Red Hat syslog: ``sshd(pam_unix)[pid]: authentication failure; ...`` is the only
    # trace of a failed password (no ``Failed password`` line exists in those logs).
    replace(_rule("sshd:pam-unix-legacy", "authentication failure;", _PAM_TAIL), legacy=True),
    # Kerberos rlogin of the same era: ``klogind[pid]: Authentication failed from NAME (ADDR):``
    replace(_rule("sshd:klogind", "Authentication failed from ",
                  r"Authentication failed from [^\s()]+ \(" + ADDR + r"\)(?:: .*)?$"),
            legacy=True),
    _rule("sshd:too-many", "Disconnecting: Too many authentication failures",
          r"Disconnecting: Too many authentication failures"
          r"(?: for (?:invalid user )?(?P<user>.*?))?" + _S),
    # OpenSSH >= 7.x writes ``maximum authentication attempts exceeded`` (counted above)
    # and then this line for the same connection: it only closes it.
    _rule("sshd:too-many-close", "Too many authentication failures",
          r"Disconnecting (?:invalid|authenticating) user (?P<user>.*) " + ADDR
          + r" port \d+: Too many authentication failures" + _S, "close"),
    _rule("sshd:disconnect-auth-fail", "Received disconnect from ",
          r"(?:error: )?Received disconnect from " + ADDR + _PORT + r":\s*3: .*: Auth fail"
          + _S, forget=True),
    _rule("sshd:disconnect", "Received disconnect from ",
          r"(?:error: )?Received disconnect from " + ADDR + _PORT + r":\s*11:.*$", "close"),
)

#: the connection's helper lines, last in every mode (a mode's own rules for the same
#: literals, e.g. ddos' ``Connection closed by ADDR [preauth]``, come before them)
_SSHD_HELPERS: tuple[Rule, ...] = (
    # Helper lines: PAM's view of a password failure (sshd logs the same attempt again as
    # ``Failed password``), the connection's address, its end.
    _rule("sshd:pam-unix", "authentication failure;",
          r"pam_unix\(sshd:auth\):\s+" + _PAM_TAIL, "nofail"),
    _rule("sshd:accepted", "Accepted ",
          r"Accepted (?P<method>[-\w/@.]+) for (?P<user>\S+) from " + ADDR + _PORT
          + r"(?: ssh[12])?(?:: .*)?$", "success"),
    _rule("sshd:connection-from", "Connection from ",
          r"Connection from " + ADDR + r"(?: port \d+(?: on \S+ port \d+)?(?: rdomain \S*)?)?$",
          "host"),
    _rule("sshd:connection-closed", "Connection closed by ",
          r"Connection closed by (?:(?:invalid |authenticating )?user (?P<user>.*) )?" + ADDR
          + _PORT + _S, "close"),
    _rule("sshd:disconnected", "Disconnected from ",
          r"Disconnected from (?:(?:invalid |authenticating )?user (?P<user>.*) )?" + ADDR
          + _PORT + _S, "close"),
)

SSHD_NORMAL: tuple[Rule, ...] = (*_SSHD_COMMON, *_SSHD_HELPERS)

#: sshd writes ``error: `` or ``fatal: `` in front of some messages
_PREF = r"(?:(?:error|fatal): (?:PAM: )?)?"
#: ``Connection closed by``/``Disconnected from`` with the user's name (attacker text,
#: captured greedily: the address is the one before sshd's fixed ``port N [preauth]``)
_AUTHNG_USER = r"(?:(?:invalid |authenticating )?user (?P<user>.*) )?"

#: mode ``ddos``: clients that connect and never get to authenticate
_SSHD_DDOS: tuple[Rule, ...] = (
    _rule("sshd:no-identification", "Did not receive identification string",
          _PREF + r"Did not receive identification string from " + ADDR + _PORT + _S),
    # The client's identification is quoted attacker text; the address is the one
    # before the fixed tail.
    _rule("sshd:bad-protocol", "Bad protocol version identification",
          _PREF + r"Bad protocol version identification '.*' from " + ADDR + _PORT + _S),
    # No address: the connection's (``Connection from``, or a later ``Connection closed``).
    _rule("sshd:kex-identification", "kex_exchange_identification: ",
          _PREF + r"kex_exchange_identification: (?:read: )?(?:[Cc]lient sent invalid "
          r"protocol identifier.*|[Cc]onnection (?:closed by remote host|reset by peer))"
          + _S),
    _rule("sshd:socket-reset", "Read from socket failed: Connection reset by peer",
          _PREF + r"Read from socket failed: Connection reset by peer" + _S, forget=True),
    _rule("sshd:banner-exchange", "banner exchange: Connection from ",
          _PREF + r"banner exchange: Connection from " + ADDR + _PORT + r": invalid format"
          + _S),
    # OpenSSH's transport failing before authentication (MAC errors of scanners).
    _rule("sshd:dispatch-fatal", "ssh_dispatch_run_fatal: Connection from ",
          _PREF + r"ssh_dispatch_run_fatal: Connection from " + ADDR + r" port \d+: "
          r"(?:message authentication code incorrect|[Cc]onnection corrupted)" + _S),
    # LoginGraceTime expired: newer sshd names the peer (and its own address after it).
    _rule("sshd:login-timeout", "Timeout before authentication for ",
          _PREF + r"Timeout before authentication for (?:connection from )?" + ADDR
          + r"(?: port \d+| to \S+, pid = \d+)?" + _S),
    # Solaris' audit line: only the connection's address (``Remote: ADDR-PORT;``).
    _rule("sshd:server-ltype", "SSH: Server;Ltype: ",
          r"SSH: Server;Ltype: (?:Authname|Version|Kex);Remote: " + ADDR
          + r"-\d+;[A-Z]\w+:.*$", "host"),
)

#: ``ddos``: a connection ending before authentication is a failure (with ``[preauth]``;
#: without it the line only closes the connection, see ``_SSHD_HELPERS``)
_SSHD_DDOS_CLOSE: tuple[Rule, ...] = (
    _rule("sshd:preauth-closed", "Connection closed by ",
          _PREF + r"Connection (?:closed|reset) by " + _AUTHNG_USER + ADDR + _PORT
          + r" \[preauth\]$", also=("Connection reset by ",)),
    _rule("sshd:preauth-disconnected", "Disconnected from ",
          _PREF + r"Disconnected from " + _AUTHNG_USER + ADDR + _PORT + r" \[preauth\]$"),
)

#: an algorithm name of ``no matching ALG found``: up to three words
_ALG = r"(?:\w+ ){0,2}\w+"

#: mode ``extra``: clients that cannot agree on algorithms or methods
_SSHD_EXTRA: tuple[Rule, ...] = (
    _rule("sshd:no-auth-methods", "Received disconnect from ",
          _PREF + r"Received disconnect from " + ADDR + _PORT
          + r":\s*14: No(?: supported)? authentication methods available" + _S,
          forget=True),
    # The client's offer follows the fixed place of the address.
    _rule("sshd:unable-to-negotiate", "Unable to negotiate with ",
          _PREF + r"Unable to negotiate with " + ADDR + _PORT + r": no matching " + _ALG
          + r" found\b.*$"),
    _rule("sshd:unable-to-negotiate", "Unable to negotiate a ",
          _PREF + r"Unable to negotiate a " + _ALG + _S),
    _rule("sshd:no-matching", "no matching ",
          _PREF + r"no matching " + _ALG + r" found:.*$"),
)

#: ``extra``: only the disconnect of a user that authenticated, before it did
_SSHD_EXTRA_CLOSE: tuple[Rule, ...] = (
    _rule("sshd:preauth-disconnected", "Disconnected from ",
          _PREF + r"Disconnected from (?:invalid |authenticating )user (?P<user>.*) " + ADDR
          + _PORT + r" \[preauth\]$"),
)

SSHD_DDOS: tuple[Rule, ...] = (*_SSHD_COMMON, *_SSHD_DDOS, *_SSHD_DDOS_CLOSE, *_SSHD_HELPERS)
SSHD_EXTRA: tuple[Rule, ...] = (*_SSHD_COMMON, *_SSHD_EXTRA, *_SSHD_EXTRA_CLOSE,
                                *_SSHD_HELPERS)
#: ``aggressive``: normal + ddos + extra (ddos' end-of-connection rules cover extra's)
SSHD_AGGRESSIVE: tuple[Rule, ...] = (*_SSHD_COMMON, *_SSHD_DDOS, *_SSHD_EXTRA,
                                     *_SSHD_DDOS_CLOSE, *_SSHD_HELPERS)

# --------------------------------------------------------------------------- postfix

#: ``NAME[ADDR]`` or postscreen's ``[ADDR]:PORT``: the name is one token without brackets
#: or blanks (a PTR record, "unknown"), so the address is the one in the first brackets
_PF_CLIENT = r"[^\s\[\]]*\[" + ADDR + r"\](?::\d+)?"
#: the queue id (or ``NOQUEUE``) postfix writes before a rejection
_PF_QUEUE = r"(?:NOQUEUE|[0-9A-Za-z]+): "


def _pf_sasl(name: str, lookahead: str) -> Rule:
    # ``warning: NAME[ADDR]: SASL MECH authentication failed: REASON[, sasl_username=U]``;
    # the address stands at a fixed place, the name is one validated token.
    return _rule(name, "authentication failed",
                 r"warning: " + _PF_CLIENT + r": SASL [-\w]+ authentication failed:"
                 + lookahead + r"(?: .*?)?(?:, sasl_username=(?P<user>.*))?$")


#: ``auth``: SASL failures, except a lost authentication server (no client's fault) and
#: a mechanism the server does not offer (a misconfigured client)
#: a successful SASL login (anomaly detection): ``QUEUEID: client=NAME[ADDR],
#: sasl_method=M, sasl_username=U``
_PF_SASL_LOGIN = _rule("postfix:sasl-login", "sasl_username=",
                       r"(?:[0-9A-Za-z]+: )?client=" + _PF_CLIENT
                       + r", sasl_method=(?P<method>[-\w]+), sasl_username=(?P<user>[^\s,]+)$",
                       "success")
_PF_AUTH = (_pf_sasl("postfix:sasl-failed", r"(?! Connection lost to authentication server"
                     r"| Invalid authentication mechanism)"), _PF_SASL_LOGIN)
#: ``aggressive`` also counts the unknown mechanism
_PF_AUTH_AGGRESSIVE = (_pf_sasl("postfix:sasl-failed",
                                r"(?! Connection lost to authentication server)"),
                       _PF_SASL_LOGIN)

POSTFIX_AUTH: tuple[Rule, ...] = _PF_AUTH

#: ``errors``: clients that make smtpd give up
_PF_ERRORS: tuple[Rule, ...] = (
    _rule("postfix:too-many-errors", "too many errors after ",
          r"too many errors after \S+ from " + _PF_CLIENT + r"$"),
)

#: ``rbl``: rejections because a DNS block list names the client
_PF_RBL: tuple[Rule, ...] = (
    _rule("postfix:rbl", "blocked using ",
          _PF_QUEUE + r"reject: RCPT from " + _PF_CLIENT + r": [45]\d\d [45]\.7\.1 Service "
          r"unavailable; [Cc]lient(?: host)? \[[^\]]*\] blocked using .*$"),
)

#: ``normal``: rejected commands and protocol abuse. A rejection's status code says what
#: was wrong: address (x.1.x), protocol (x.5.x) or policy/security (x.7.x); mailbox and
#: system conditions (x.2.x, x.3.x, x.4.x: full, greylisted, busy) are not the client's
#: fault. What follows the status (sender, recipient, helo) is attacker text.
_PF_NORMAL: tuple[Rule, ...] = (
    _rule("postfix:reject", "reject: ",
          _PF_QUEUE + r"(?:milter-)?reject: (?:RCPT|MAIL|EHLO|HELO|VRFY|EXPN|ETRN|DATA|BDAT"
          r"|CONNECT|END-OF-MESSAGE) from " + _PF_CLIENT
          + r": [45]\d\d [45]\.[157]\.\d{1,3}(?!.*[Gg]reylist).*$"),
    _rule("postfix:pipelining", "improper command pipelining after ",
          r"improper command pipelining after \S+ from " + _PF_CLIENT + r":?(?: .*)?$"),
    *_PF_ERRORS,
)

#: ``ddos``: clients that drop the connection before mail or trip postscreen's limits
_PF_DDOS: tuple[Rule, ...] = (
    _rule("postfix:auth-disconnect", "disconnect from ",
          r"disconnect from " + _PF_CLIENT + r"(?: [a-z]+=\d+(?:/\d+)?)* auth=0/[1-9]\d*"
          r"(?: [a-z]+=\d+(?:/\d+)?)*$"),
    # Not after DATA or later: a lawful client's connection may break while sending.
    _rule("postfix:lost-connection", "lost connection after ",
          r"(?:NOQUEUE: )?lost connection after (?:CONNECT|STARTTLS|AUTH|EHLO|HELO|UNKNOWN)"
          r" from " + _PF_CLIENT + r"$"),
    _rule("postfix:pregreet", "PREGREET ",
          r"PREGREET \d+ after [\d.]+ from \[" + ADDR + r"\]:\d+: .*$"),
    _rule("postfix:hangup", "HANGUP after ",
          r"HANGUP after [\d.]+ from \[" + ADDR + r"\]:\d+ in .*$"),
    _rule("postfix:command-limit", " LIMIT from ",
          r"COMMAND (?:TIME|COUNT|LENGTH) LIMIT from \[" + ADDR + r"\]:\d+(?: after \S+)?$"),
    _rule("postfix:rate-limit", "rate limit exceeded: ",
          r"warning: (?:Connection|Message delivery request|Recipient address|New TLS session"
          r"|Connection concurrency) (?:rate )?limit exceeded: \d+ from " + _PF_CLIENT
          + r" for service \S+$"),
)

#: ``aggressive`` only: the client's PTR name does not resolve back to its address (the
#: name is the client's DNS data, a single token; the address is postfix's)
_PF_FCRDNS: tuple[Rule, ...] = (
    _rule("postfix:fcrdns", "does not resolve to address ",
          r"warning: hostname [^\s\[\]]+ does not resolve to address " + ADDR
          + r"(?::.*)?$"),
)

_POSTFIX_MODES: dict[str, tuple[Rule, ...]] = {
    "normal": _PF_NORMAL,
    "auth": _PF_AUTH,
    "rbl": _PF_RBL,
    "errors": _PF_ERRORS,
    "ddos": _PF_DDOS,
    # fail2ban's default: normal + auth (block list rejections are rejections too)
    "more": (*_PF_RBL, *_PF_NORMAL, *_PF_AUTH),
    "aggressive": (*_PF_RBL, *_PF_NORMAL, *_PF_AUTH_AGGRESSIVE, *_PF_DDOS, *_PF_FCRDNS),
}

# --------------------------------------------------------------------------- dovecot

_D_LOGIN = (r"(?:dovecot: )?(?:(?:imap|pop3|managesieve|submission|lmtp)-login: )?(?:Info: )?"
            r"(?:Aborted login|Login aborted|Disconnected|Remote closed connection"
            r"|Client has quit the connection|Connection closed)\b[^<>]*? \(")
#: dovecot >= 2.4 adds a reason code after the reason: ``(auth failed, ...) (auth_failed):``
_D_LOGIN_TAIL = (r"\)(?: \([a-z_]+\))?: (?:user=<(?P<user>{U})>, )?(?:method=[-\w]+, )?"
                 r"rip=" + ADDR + r"(?:,.*)?$")
_D_AUTH = (r"(?:dovecot: )?(?:auth(?:-worker)?(?:\([^)]*\))?: )?(?:Info: )?"
           r"(?:conn unix:\S+ \([^)]*\): auth-worker<\d+>: )?(?:Info: )?")
_D_PASSDB = (r"(?:pam|passwd-file|passwd|shadow|bsdauth|sql|ldap|checkpassword|vpopmail|lua"
             r"|oauth2|static|imap)")
_D_REASON = (r"(?:unknown user|[Pp]assword mismatch|invalid credentials"
             r"|pam_authenticate\(\) failed: (?:Authentication failure|Permission denied"
             r"|User not known to the underlying authentication module"
             r"|Authentication token is no longer valid; new one required)"
             r"(?:: \d+ Time\(s\))?)"
             r"(?: \((?:for LDAP bind|[Pp]assword mismatch\?)\))?"
             r"(?: \((?:SHA1 of )?given password: .*\))?$")

DOVECOT_NORMAL: tuple[Rule, ...] = (
    _rule("dovecot:auth-failed", "auth failed",
          _D_LOGIN + r"(?:auth failed, (?P<count>\d+) attempts?(?: in \d+ secs?)?"
          r"|proxy dest auth failed)" + _D_LOGIN_TAIL),
    _rule("dovecot:disabled-auth", "tried to use dis",
          _D_LOGIN + r"tried to use (?:disabled|disallowed) [-\w]+ auth" + _D_LOGIN_TAIL),
    _rule("dovecot:passdb", "unknown user",
          _D_AUTH + _D_PASSDB + r"\((?P<user>{U})," + ADDR
          + r"(?:,(?:<[^>]*>)?)?\): " + _D_REASON,
          also=("assword mismatch", "invalid credentials", "pam_authenticate() failed")),
    _rule("dovecot:pam-unix", "authentication failure;",
          r"(?:dovecot: )?(?:(?:auth(?:-worker)?|dovecot-auth)(?:\([^)]*\))?: )?"
          r"pam_unix\(dovecot:auth\):\s+" + _PAM_TAIL),
    # a successful login (anomaly detection, reset_on_success): ``Login: user=<U>,
    # method=M, rip=ADDR, ...``; the name cannot hold ``<``, ``>`` or ``,``
    _rule("dovecot:login", "Login: user=<",
          r"(?:dovecot: )?(?:(?:imap|pop3|managesieve|submission)-login: )?(?:Info: )?"
          r"Login: user=<(?P<user>[^<>,]*)>, method=(?P<method>[-\w]+), rip=" + ADDR
          + r", lip=[0-9A-Fa-f.:]+(?:,.*)?$", "success"),
)

#: ``aggressive``: also clients that leave without trying to log in (scanners, TLS probes)
DOVECOT_AGGRESSIVE: tuple[Rule, ...] = (
    *DOVECOT_NORMAL,
    _rule("dovecot:no-auth", "no auth attempts",
          _D_LOGIN + r"(?:no auth attempts(?: in \d+ secs?)?"
          r"|disconnected before auth was ready(?:, waited \d+ secs?)?"
          r"|client didn't finish SASL auth(?:, waited \d+ secs?)?"
          r"|disconnected during TLS handshake)" + _D_LOGIN_TAIL,
          also=("before auth was ready", "didn't finish SASL auth",
                "during TLS handshake")),
)

_SSHD_TAGS = r"sshd(?:-session|-auth)?|klogind"
_SSHD_MODES = ("normal", "ddos", "extra", "aggressive")

_FILTERS: dict[str, dict[str, FilterSpec]] = {
    "sshd": {mode: FilterSpec("sshd", _SSHD_TAGS, rules, modes=_SSHD_MODES)
             for mode, rules in (("normal", SSHD_NORMAL), ("ddos", SSHD_DDOS),
                                 ("extra", SSHD_EXTRA), ("aggressive", SSHD_AGGRESSIVE))},
    "postfix": {mode: FilterSpec("postfix", r"postfix(?:-[\w.-]+)?(?:/[\w.-]+)+", rules,
                                 modes=tuple(_POSTFIX_MODES))
                for mode, rules in _POSTFIX_MODES.items()},
    "dovecot": {mode: FilterSpec(
        "dovecot",
        r"dovecot(?:-auth)?|auth(?:-worker)?|(?:imap|pop3|managesieve|submission|lmtp)-login",
        rules, modes=("normal", "aggressive"))
        for mode, rules in (("normal", DOVECOT_NORMAL), ("aggressive", DOVECOT_AGGRESSIVE))},
}
_DEFAULT_MODE = {"sshd": "normal", "postfix": "auth", "dovecot": "normal"}
_ALIASES = {"postfix-sasl": ("postfix", "auth")}

_REF = re.compile(r"^(?P<name>[\w.-]+)(?:\[(?P<opts>[^\]]*)\])?$")


class UnknownFilter(ValueError):
    """The named filter or mode does not exist."""


def filter_names() -> list[str]:
    return sorted(set(_FILTERS) | set(_ALIASES))


def resolve_filter(ref: str, mode: str | None = None) -> FilterSpec:
    """A filter by reference: ``sshd``, ``sshd[mode=normal]``, ``postfix[mode=auth]``."""
    match = _REF.match(ref.strip())
    if match is None:
        raise UnknownFilter(f"not a filter reference: {ref!r}")
    name = match.group("name")
    options: dict[str, str] = {}
    for item in (match.group("opts") or "").split(","):
        if item.strip():
            key, _, value = item.partition("=")
            options[key.strip()] = value.strip().strip("\"'")
    if name in _ALIASES:
        name, alias_mode = _ALIASES[name]
        options.setdefault("mode", alias_mode)
    chosen = options.get("mode") or mode or _DEFAULT_MODE.get(name, "normal")
    modes = _FILTERS.get(name)
    if modes is None:
        raise UnknownFilter(
            f"unknown filter {name!r} (known: {', '.join(filter_names())})")
    spec = modes.get(chosen)
    if spec is None:
        raise UnknownFilter(f"filter {name!r} has no mode {chosen!r} "
                            f"(known: {', '.join(sorted(modes))})")
    return spec


def _register_services() -> None:
    """Other services' filters live in their own module to keep this one about the three
    core services; imported here, after the helpers they reuse are defined."""
    from tailban.filters.services import SERVICE_FILTERS

    for name, modes in SERVICE_FILTERS.items():
        _FILTERS.setdefault(name, {}).update(modes)


_register_services()
