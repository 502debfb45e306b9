"""Conformance with fail2ban's own sample logs (``fail2ban-logs``).

Each record of ``expectations.jsonl`` says what fail2ban's filter gives for one line: a
failure or none, and where asserted its host (raw text), user, time and attempts (lines
of the connection merged into it). Records of one (file, option set) are fed in
``line_no`` order into ONE matcher, as fail2ban's harness does, so multi-line state
(``sshd[pid]``) carries over. Semantics: ``../shared/corpus/fail2ban-logs/README.md``.

Two corpora:

* ``debian`` (``debian-1.0.2/``, fail2ban 1.0.2), selected:

  * ``sshd`` default options (= ``mode=normal``) and ``{"logtype": "rfc5424"}`` (normal
    mode on RFC 5424 lines; tailban reads that format with the same rules);
  * ``sshd`` with ``{"mode": "ddos"}``, ``{"mode": "extra"}``, ``{"mode": "aggressive"}``
    (``sshd[mode=...]``; aggressive = normal + ddos + extra);
  * ``postfix`` with ``{"mode": "auth"}`` (the ``postfix-sasl`` jail);
  * ``dovecot`` default options (= ``mode=normal``).

* ``upstream`` (top level, fail2ban master 1.1.2.dev1: newer samples such as OpenSSH >= 9.8
  ``sshd-session`` lines and ``Timeout before authentication``): the same sshd option
  sets; its other filters are left to the Debian corpus.

Every other record is left out with the reason in :func:`excluded`; the records where
tailban deliberately reads a line otherwise are in :data:`DEVIATIONS`, asserted as
tailban's reading.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from filterutil import F2B_LOGS, F2B_NOW, F2B_TZ, local_zone, require_shared
from tailban.core.events import Failure
from tailban.filters.builtin import resolve_filter
from tailban.filters.matcher import ChunkMatcher, Merged

EXPECTATIONS = F2B_LOGS / "debian-1.0.2" / "expectations.jsonl"
UPSTREAM = F2B_LOGS / "expectations.jsonl"
CORPORA = {"debian": EXPECTATIONS, "upstream": UPSTREAM}

Record = dict[str, Any]

SSHD_MODES = ("ddos", "extra", "aggressive")


def _options(record: Record) -> dict[str, Any]:
    options: dict[str, Any] = (json.loads(record["filter_options"])
                               if record["filter_options"] else {})
    return options


def selected_filter(record: Record) -> str | None:
    """The tailban filter reference a record is checked against, None if left out."""
    options = _options(record)
    name = record["filter"]
    if name == "sshd" and options in ({}, {"logtype": "rfc5424"}):
        return "sshd"
    if name == "sshd" and len(options) == 1 and options.get("mode") in SSHD_MODES:
        return f"sshd[mode={options['mode']}]"
    if record["corpus"] != "debian":
        return None
    if name == "postfix" and options == {"mode": "auth"}:
        return "postfix[mode=auth]"
    if name == "dovecot" and options == {}:
        return "dovecot"
    return None


def excluded(record: Record) -> str:
    """Why a record of sshd/postfix/dovecot is not checked here."""
    options = _options(record)
    if options.get("logtype") == "journal":
        return ("journald input: the line has no syslog prefix, its time and connection "
                "id come from journal fields; reading the journal is a later issue")
    if record["corpus"] != "debian" and record["filter"] != "sshd":
        return ("upstream corpus: only sshd is checked against the newer samples; postfix "
                "and dovecot are checked against Debian 1.0.2's")
    mode = options.get("mode")
    if record["filter"] == "postfix" and mode is None:
        return "postfix default mode is 'more', not in this issue (only mode=auth)"
    if mode is not None and mode != "normal":
        return f"mode={mode} is not in this issue (only the normal modes and postfix auth)"
    if record["filter"] == "postfix" and mode == "normal":
        return "postfix mode=normal (rejections, not logins) is not in this issue"
    raise AssertionError(f"record neither selected nor excluded: {record}")


@dataclass(frozen=True)
class Deviation:
    """A record where tailban deliberately differs from fail2ban: asserted as tailban's."""

    reason: str
    expect: dict[str, Any]


_INJECTED_AUTH_INFO = Deviation(
    reason=(
        "'Failed password for invalid user test from 127.0.0.1 port 58946 ssh2: from "
        "10.10.1.2 port 55555 ssh2'. fail2ban reads the text after 'ssh2: ' as auth-info "
        "and bans 127.0.0.1. OpenSSH writes auth-info only for publickey/hostbased "
        "failures, never after a password failure, so this line can only come from user "
        "'test from 127.0.0.1 port 58946 ssh2:' connecting from 10.10.1.2: the first "
        "address is attacker text. Reading it fail2ban's way would let any client get "
        "an address of its choice banned with such a user name (see "
        "test_filters_injection.py), so tailban takes the address sshd wrote."),
    expect={"host": "10.10.1.2"},
)

#: ``corpus:file:line_no`` (every option set of that line) -> the deviation
DEVIATIONS: dict[str, Deviation] = {
    "debian:sshd:144": _INJECTED_AUTH_INFO,
    "upstream:sshd:147": _INJECTED_AUTH_INFO,
}


def _load() -> list[Record]:
    records: list[Record] = []
    for corpus, path in CORPORA.items():
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as handle:
            records.extend({**json.loads(line), "corpus": corpus}
                           for line in handle if line.strip())
    return records


ALL_RECORDS = _load()
SELECTED = [r for r in ALL_RECORDS if selected_filter(r) is not None]


def line_id(record: Record) -> str:
    return f"{record['corpus']}:{record['file']}:{record['line_no']}"


def record_id(record: Record) -> str:
    options = _options(record)
    option_set = ",".join(f"{k}={v}" for k, v in sorted(options.items())) or "default"
    return f"{line_id(record)}[{option_set}]"


IDS = [record_id(r) for r in SELECTED] or ["corpus-missing"]
assert len(set(IDS)) == len(IDS), "record ids must be unique"

Outcome = tuple[Record, list[Failure], list[Merged]]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Feed every selected group through one matcher each; the events of every record."""
    require_shared(EXPECTATIONS)
    require_shared(UPSTREAM)
    groups: dict[tuple[str, str, str | None], list[Record]] = defaultdict(list)
    for record in SELECTED:
        groups[(record["corpus"], record["file"], record["filter_options"])].append(record)
    results: dict[str, Outcome] = {}
    with local_zone(F2B_TZ):
        for records in groups.values():
            ref = selected_filter(records[0])
            assert ref is not None
            matcher = ChunkMatcher(resolve_filter(ref), trace=True)
            assert matcher.trace is not None
            for record in sorted(records, key=lambda r: r["line_no"]):
                matcher.trace.clear()
                events = matcher.scan(record["line"].encode("utf-8") + b"\n", F2B_NOW)
                failures = [e for e in events if isinstance(e, Failure)]
                results[record_id(record)] = (record, failures, list(matcher.trace))
    return results


def test_selection_is_complete() -> None:
    """Every record of the three filters is checked or left out for a stated reason."""
    require_shared(EXPECTATIONS)
    require_shared(UPSTREAM)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for record in ALL_RECORDS:
        if record["filter"] not in ("sshd", "postfix", "dovecot"):
            continue
        ref = selected_filter(record)
        if ref is None:
            assert excluded(record)
        else:
            counts[(record["corpus"], record["filter"], ref)] += 1
    assert dict(counts) == {
        # 99 sshd normal + 2 rfc5424
        ("debian", "sshd", "sshd"): 101,
        ("debian", "sshd", "sshd[mode=ddos]"): 30,
        ("debian", "sshd", "sshd[mode=extra]"): 15,
        ("debian", "sshd", "sshd[mode=aggressive]"): 129,
        ("debian", "postfix", "postfix[mode=auth]"): 12,
        ("debian", "dovecot", "dovecot"): 50,
        # 102 sshd normal + 2 rfc5424
        ("upstream", "sshd", "sshd"): 104,
        ("upstream", "sshd", "sshd[mode=ddos]"): 34,
        ("upstream", "sshd", "sshd[mode=extra]"): 15,
        ("upstream", "sshd", "sshd[mode=aggressive]"): 134,
    }


@pytest.mark.parametrize("rid", IDS)
def test_record(rid: str, outcomes: dict[str, Outcome]) -> None:
    record, failures, merged = outcomes[rid]
    expect = {key: record[key] for key in ("match", "host", "user", "time_epoch", "attempts")}
    if record["time"] is None:
        expect["time_epoch"] = None
    users = (record["extra"] or {}).get("users")
    # ``dns: null``: fail2ban resolved no name, the failure's host is the address itself
    no_dns = "dns" in (record["extra"] or {}) and record["extra"]["dns"] is None
    unknown = set(record["extra"] or {}) - {"users"} - ({"dns"} if no_dns else set())
    deviation = DEVIATIONS.get(line_id(record))
    if deviation is not None:
        expect.update(deviation.expect)
    where = f"{rid} {record['line']!r} (filter {selected_filter(record)})"

    assert not unknown, f"{where}: unhandled extra assertions {unknown}"
    if not expect["match"]:
        assert failures == [], f"{where}: fail2ban finds no failure, tailban {failures}"
        return
    assert len(failures) == 1, f"{where}: want exactly one failure, got {failures}"
    failure = failures[0]
    trace = merged[0]
    if expect["host"] is not None:
        assert failure.host == expect["host"], f"{where}: host {failure.host!r}"
    if expect["user"] is not None:
        assert failure.user == expect["user"], f"{where}: user {failure.user!r}"
    if expect["time_epoch"] is not None:
        assert math.floor(failure.time) == int(expect["time_epoch"]), (
            f"{where}: time {failure.time} != {expect['time_epoch']} ({record['time']})")
    if expect["attempts"] is not None:
        assert trace.attempts == expect["attempts"], f"{where}: attempts {trace.attempts}"
    if no_dns:
        assert failure.ip is not None and failure.ip == failure.host, (
            f"{where}: host {failure.host!r} is not an address (ip {failure.ip!r})")
    if users is not None:
        assert sorted(trace.users) == sorted(users), f"{where}: users {trace.users}"
