"""Real logs (``../shared/corpus/real``) against fail2ban 1.0.2's labels.

Each log runs whole through ``ChunkMatcher.scan`` in 64 KiB chunks cut at newlines (the
last chunk ends without one where the file does). Runs: sshd ``normal`` and
``aggressive`` (``*.sshd.aggressive.matches.jsonl``), postfix ``auth``
(the postfix-sasl jail), dovecot ``normal`` and ``aggressive``.

Asserted per run:

* every failure fail2ban found, as (physical line, address), is one of tailban's, and at
  the same time (labels are UTC, with the year pinned per file: ``pinned_now``);
* every failure fail2ban did not find is listed in :data:`EXTRAS` with the reason it is
  a real failure (README "Caveats"), its rule and its count; the extras per rule are
  asserted as counts too. A log without an entry must give no extra at all.

Loopback failures are not extras here: StarshipEngineer's four ``localhost[127.0.0.1]``
SASL failures are fail2ban's as well; the jail's ignore list (127.0.0.0/8, ::1) is what
keeps them from a ban, not the filter.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from filterutil import (
    REAL_LOGS,
    line_numbers,
    physical_lines,
    require_shared,
    scan_failures,
)
from tailban.filters.builtin import resolve_filter
from tailban.filters.matcher import ChunkMatcher

RUNS = {("sshd", "normal"): "sshd", ("sshd", "aggressive"): "sshd[mode=aggressive]",
        ("postfix", "auth"): "postfix[mode=auth]", ("dovecot", "normal"): "dovecot",
        ("dovecot", "aggressive"): "dovecot[mode=aggressive]"}


class Extra(NamedTuple):
    rule: str
    count: int
    reason: str


_RSYSLOG_REPEAT = ("rsyslog 'message repeated 5 times: [ Failed password ...]': five failures "
                   "of the connection that fail2ban does not see (README caveat 2); one "
                   "failure with count 5")
_SYSKLOGD_REPEAT = ("sysklogd 'last message repeated 2 times' right after a Dovecot 'auth "
                    "failed' line: the same failure twice more (README caveat 2); one failure "
                    "with count 2")

_SYSKLOGD_REPEAT_NO_AUTH = ("sysklogd 'last message repeated 2 times' right after a Dovecot "
                            "'Disconnected (no auth attempts)' / 'Aborted login (no auth "
                            "attempts)' line: the same failure twice more (README caveat 2); "
                            "one failure with count 2")
_NOLE_AUTH_FAILED = {
    (809, "190.102.254.46"): Extra("dovecot:auth-failed", 2, _SYSKLOGD_REPEAT),
    (813, "190.102.254.46"): Extra("dovecot:auth-failed", 2, _SYSKLOGD_REPEAT),
}

_OPENSSH_2K = {
    (30, "5.36.59.76"): Extra("sshd:failed-password", 5, _RSYSLOG_REPEAT),
    (285, "106.5.5.195"): Extra("sshd:failed-password", 5, _RSYSLOG_REPEAT),
    (2000, "103.99.0.122"): Extra(
        "sshd:failed-password", 1,
        "'Failed password for invalid user user' on the file's unterminated last line: "
        "fail2ban waits for a newline that never comes (README caveat 8), tailban "
        "takes the final line of a chunk at EOF"),
}

#: failures tailban finds and fail2ban does not, per ``<log>.<filter>.<mode>``:
#: (line, address) -> what it is
EXTRAS: dict[str, dict[tuple[int, str], Extra]] = {
    "loghub_OpenSSH_2k.log.sshd.normal": _OPENSSH_2K,
    # aggressive (normal + ddos + extra) finds the same and nothing more than fail2ban
    "loghub_OpenSSH_2k.log.sshd.aggressive": _OPENSSH_2K,
    "NoLE-MailLog_mail.log.dovecot.normal": _NOLE_AUTH_FAILED,
    # aggressive: the same, and the same repeat after two 'Disconnected (no auth attempts)'
    "NoLE-MailLog_mail.log.dovecot.aggressive": {
        **_NOLE_AUTH_FAILED,
        (686, "190.102.254.46"): Extra("dovecot:no-auth", 2, _SYSKLOGD_REPEAT_NO_AUTH),
        (692, "190.102.254.46"): Extra("dovecot:no-auth", 2, _SYSKLOGD_REPEAT_NO_AUTH),
    },
}


_LEGACY = ("old Red Hat syslog: 'sshd(pam_unix)[pid]: authentication failure; ... rhost=' is "
           "the only trace of a failed ssh password in that log (README caveat 1); "
           "legacy_tags = true")
_KLOGIND = ("Kerberos rlogin 'klogind[pid]: Authentication failed from NAME (ADDR)' (README "
            "caveat 1); legacy_tags = true")

#: extras too many to list by line: per ``<log>.<filter>.<mode>``, rule -> (failures, why).
#: Failures whose host is a name count here too (usedns decides later what they ban).
EXTRA_RULES: dict[str, dict[str, tuple[int, str]]] = {
    "loghub_Linux_2k.log.sshd.normal": {"sshd:pam-unix-legacy": (489, _LEGACY),
                                        "sshd:klogind": (23, _KLOGIND)},
    "loghub_Linux_2k.log.sshd.aggressive": {"sshd:pam-unix-legacy": (489, _LEGACY),
                                            "sshd:klogind": (23, _KLOGIND)},
}


class Run(NamedTuple):
    key: str  # <log>.<filter>.<mode>
    log: Path
    labels: Path
    ref: str


def _runs() -> list[Run]:
    runs = []
    for labels in sorted(REAL_LOGS.glob("*.matches.jsonl")):
        key = labels.name.removesuffix(".matches.jsonl")
        log_name, flt, mode = key.rsplit(".", 2)
        ref = RUNS.get((flt, mode))
        if ref is not None:
            runs.append(Run(key, REAL_LOGS / log_name, labels, ref))
    return runs


RUN_LIST = _runs()


def _pinned_now(run: Run) -> float:
    bans = run.labels.with_name(run.key + ".bans.json")
    header = json.loads(bans.read_text(encoding="utf-8"))
    return datetime.fromisoformat(header["pinned_now"]).timestamp()


def test_runs_found() -> None:
    require_shared(REAL_LOGS)
    keys = {run.key for run in RUN_LIST}
    assert set(EXTRAS) <= keys, f"extras listed for logs that are not there: {set(EXTRAS) - keys}"
    assert len(RUN_LIST) >= 16


@pytest.mark.parametrize("run", RUN_LIST or [None], ids=[r.key for r in RUN_LIST] or ["missing"])
def test_real_log(run: Run | None) -> None:
    require_shared(REAL_LOGS)
    assert run is not None
    data = run.log.read_bytes()
    now = _pinned_now(run)
    matcher = ChunkMatcher(resolve_filter(run.ref), tz=UTC)
    failures = scan_failures(matcher, data, now)
    numbers = line_numbers(physical_lines(data), failures)
    ours = {(line, f.ip): f for line, f in zip(numbers, failures, strict=True)}
    assert len(ours) == len(failures), "two failures on one line"

    labels = [json.loads(line) for line in run.labels.read_text(encoding="utf-8").splitlines()
              if line.strip()]
    missing = [(lab["line"], lab["ip"], lab["text"]) for lab in labels
               if (lab["line"], lab["ip"]) not in ours]
    assert not missing, f"{run.key}: fail2ban failures tailban misses: {missing[:10]}"
    wrong_time = [(lab["line"], ours[(lab["line"], lab["ip"])].time, lab["epoch"])
                  for lab in labels
                  if math.floor(ours[(lab["line"], lab["ip"])].time) != lab["epoch"]]
    assert not wrong_time, f"{run.key}: times differ: {wrong_time[:10]}"

    theirs = {(lab["line"], lab["ip"]) for lab in labels}
    extras = {key: ours[key] for key in ours if key not in theirs}
    listed = EXTRAS.get(run.key, {})
    by_rule = EXTRA_RULES.get(run.key, {})
    grouped = Counter(f.rule for key, f in extras.items()
                      if key not in listed and f.rule in by_rule)
    assert grouped == Counter({rule: n for rule, (n, _) in by_rule.items()}), run.key
    unexplained = {key: (f.rule, f.line) for key, f in extras.items()
                   if key not in listed and f.rule not in by_rule}
    assert not unexplained, f"{run.key}: extra failures without a listed reason: {unexplained}"
    absent = set(listed) - set(extras)
    assert not absent, f"{run.key}: listed extras tailban no longer finds: {absent}"
    for key, extra in listed.items():
        found = extras[key]
        assert (found.rule, found.count) == (extra.rule, extra.count), (
            f"{run.key} line {key[0]}: {found.rule} count {found.count}, listed {extra}")
    assert Counter(f.rule for key, f in extras.items() if key in listed) == Counter(
        extra.rule for extra in listed.values())
