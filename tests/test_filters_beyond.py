"""What the built-in filters count beyond fail2ban, and each per-jail opt-out.

``expand_repeats`` (rsyslog/sysklogd repeat lines), ``count_summaries`` (PAM ``N more``,
Dovecot ``N attempts``), ``legacy_tags`` (``sshd(pam_unix)[pid]:``, klogind).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tailban.config.load import load_config
from tailban.core.events import Failure
from tailban.filters.builtin import resolve_filter
from tailban.filters.matcher import ChunkMatcher
from tailban.filters.model import FilterSpec

NOW = 1_780_000_000.0  # 2026: syslog stamps without a year take it from "now"
ATTACKER = "198.51.100.7"


def failures(spec: FilterSpec, text: str) -> list[Failure]:
    events = ChunkMatcher(spec).scan(text.encode(), NOW)
    return [e for e in events if isinstance(e, Failure)]


def weights(found: list[Failure]) -> list[tuple[str | None, str, int]]:
    return [(f.ip, f.rule, f.count) for f in found]


def off(spec: FilterSpec, **flags: bool) -> FilterSpec:
    return dataclasses.replace(spec, **flags)


SSHD = resolve_filter("sshd")
PAM = (f"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
       f"ruser= rhost={ATTACKER}")
MORE = f"PAM {{n}} more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= " \
       f"rhost={ATTACKER}  user=root"


def sshd(pid: int, message: str, second: int = 1) -> str:
    return f"Jun 10 10:00:{second:02d} host sshd[{pid}]: {message}\n"


def test_pam_more_counts_only_tries_sshd_did_not_report() -> None:
    # OpenSSH reports every try as "Failed password" and PAM sums them up again after the
    # connection closed: nothing more to count (loghub line 222's shape).
    log = "".join(sshd(7, f"Failed password for root from {ATTACKER} port 4 ssh2", s)
                  for s in range(5))
    log += sshd(7, f"Connection closed by {ATTACKER} port 4 [preauth]", 6)
    log += sshd(7, MORE.format(n=4), 6)
    found = failures(SSHD, log)
    assert weights(found) == [(ATTACKER, "sshd:failed-password", 1)] * 5


def test_pam_more_counts_tries_only_pam_saw() -> None:
    # PAM logged its first failure, sshd reported none (keyboard-interactive through PAM
    # without "Failed" lines): the summary stands for 2 more, 3 in all.
    log = sshd(8, PAM) + sshd(8, MORE.format(n=2), 3)
    assert weights(failures(SSHD, log)) == [(ATTACKER, "sshd:pam-more", 3)]
    # two reported, PAM says 4 in all: two more
    log = "".join(sshd(9, f"Failed password for root from {ATTACKER} port 4 ssh2", s)
                  for s in range(2)) + sshd(9, MORE.format(n=3), 5)
    assert [f.count for f in failures(SSHD, log)] == [1, 1, 2]
    assert failures(off(SSHD, count_summaries=False), log)[-1].count == 1
    # PAM writes the singular for one: "PAM 1 more authentication failure;"
    log = sshd(10, PAM) + sshd(10, MORE.format(n=1).replace("failures;", "failure;"), 3)
    assert weights(failures(SSHD, log)) == [(ATTACKER, "sshd:pam-more", 2)]


def test_old_red_hat_pam_tag_and_klogind() -> None:
    log = (f"Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= "
           f"uid=0 euid=0 tty=NODEVssh ruser= rhost={ATTACKER}\n"
           f"Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown\n"
           "Jun 30 20:53:04 combo klogind[19272]: Authentication failed from 203.0.113.9 "
           "(203.0.113.9): Permission denied in replay cache code\n"
           "Jun 30 20:53:04 combo klogind[19272]: Kerberos authentication failed\n")
    assert weights(failures(SSHD, log)) == [(ATTACKER, "sshd:pam-unix-legacy", 1),
                                            ("203.0.113.9", "sshd:klogind", 1)]
    assert failures(off(SSHD, legacy_tags=False), log) == []


def test_klogind_takes_the_address_in_parentheses_only() -> None:
    # the name before it comes from reverse DNS, which the client's network controls
    log = ("Jun 30 20:53:04 combo klogind[1]: Authentication failed from 192.0.2.1 "
           f"({ATTACKER}): Permission denied\n"
           "Jun 30 20:53:05 combo klogind[2]: Authentication failed from a (192.0.2.1) "
           f"({ATTACKER}): Permission denied\n")
    assert [f.ip for f in failures(SSHD, log)] == [ATTACKER]


def test_repeat_expansion_opt_out() -> None:
    log = (sshd(3, f"message repeated 5 times: [ Failed password for root from {ATTACKER} "
                   f"port 22 ssh2]")
           + sshd(4, f"Failed password for root from {ATTACKER} port 22 ssh2", 2)
           + "Jun 10 10:00:03 host last message repeated 3 times\n")
    assert [f.count for f in failures(SSHD, log)] == [5, 1, 3]
    assert [f.count for f in failures(off(SSHD, expand_repeats=False), log)] == [1, 1]


def test_dovecot_attempts_opt_out() -> None:
    line = ("Aug 30 23:50:45 mx dovecot: pop3-login: Disconnected (auth failed, 4 attempts): "
            f"user=<victor>, method=PLAIN, rip={ATTACKER}, lip=192.0.2.2\n")
    dovecot = resolve_filter("dovecot")
    assert [f.count for f in failures(dovecot, line)] == [4]
    assert [f.count for f in failures(off(dovecot, count_summaries=False), line)] == [1]


def test_opt_outs_are_jail_options(tmp_path: Path) -> None:
    (tmp_path / "jail.conf").write_text(
        "[sshd]\nenabled = true\nlogpath = /var/log/auth.log\n"
        "[dovecot]\nenabled = true\nlogpath = /var/log/mail.log\n"
        "expand_repeats = false\ncount_summaries = no\nlegacy_tags = off\n")
    jails = load_config(str(tmp_path)).jails
    assert (jails["sshd"].filter.expand_repeats, jails["sshd"].filter.count_summaries,
            jails["sshd"].filter.legacy_tags) == (True, True, True)
    flt = jails["dovecot"].filter
    assert (flt.expand_repeats, flt.count_summaries, flt.legacy_tags) == (False, False, False)
