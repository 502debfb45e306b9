"""Conformance with fail2ban 1.0.2's own sample logs (``fail2ban-logs/debian-1.0.2``).

Each record of ``expectations.jsonl`` says what fail2ban's filter gives for one line: a
failure or none, and where asserted its host (raw text), user, time and attempts (lines
of the connection merged into it). Records of one (file, option set) are fed in
``line_no`` order into ONE matcher, as fail2ban's harness does, so multi-line state
(``sshd[pid]``) carries over. Semantics: ``../shared/corpus/fail2ban-logs/README.md``.

Selected (the "normal" modes this issue covers):

* ``sshd`` default options (= ``mode=normal``) and ``{"logtype": "rfc5424"}`` (normal
  mode on RFC 5424 lines; tailban reads that format with the same rules);
* ``postfix`` with ``{"mode": "auth"}`` (the ``postfix-sasl`` jail);
* ``dovecot`` default options (= ``mode=normal``).

Every other record of these filters is left out with the reason in :func:`excluded`;
one record is a documented deviation (:data:`DEVIATIONS`), asserted as tailban's reading.
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

Record = dict[str, Any]


def selected_filter(record: Record) -> str | None:
    """The tailban filter reference a record is checked against, None if left out."""
    options = json.loads(record["filter_options"]) if record["filter_options"] else {}
    name = record["filter"]
    if name == "sshd" and options in ({}, {"logtype": "rfc5424"}):
        return "sshd"
    if name == "postfix" and options == {"mode": "auth"}:
        return "postfix[mode=auth]"
    if name == "dovecot" and options == {}:
        return "dovecot"
    return None


def excluded(record: Record) -> str:
    """Why a record of sshd/postfix/dovecot is not checked here."""
    options = json.loads(record["filter_options"]) if record["filter_options"] else {}
    if options.get("logtype") == "journal":
        return ("journald input: the line has no syslog prefix, its time and connection "
                "id come from journal fields; reading the journal is a later issue")
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


DEVIATIONS: dict[str, Deviation] = {
    "sshd:144": Deviation(
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
    ),
}


def _load() -> list[Record]:
    if not EXPECTATIONS.exists():
        return []
    with EXPECTATIONS.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


ALL_RECORDS = _load()
SELECTED = [r for r in ALL_RECORDS if selected_filter(r) is not None]


def record_id(record: Record) -> str:
    return f"{record['file']}:{record['line_no']}"


IDS = [record_id(r) for r in SELECTED] or ["corpus-missing"]
assert len(set(IDS)) == len(IDS), "record ids must be unique"

Outcome = tuple[Record, list[Failure], list[Merged]]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Feed every selected group through one matcher each; the events of every record."""
    require_shared(EXPECTATIONS)
    groups: dict[tuple[str, str | None], list[Record]] = defaultdict(list)
    for record in SELECTED:
        groups[(record["file"], record["filter_options"])].append(record)
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
    counts: dict[str, int] = defaultdict(int)
    for record in ALL_RECORDS:
        if record["filter"] not in ("sshd", "postfix", "dovecot"):
            continue
        if selected_filter(record) is None:
            assert excluded(record)
        else:
            counts[record["filter"]] += 1
    # 99 sshd normal + 2 rfc5424, 12 postfix auth, 50 dovecot normal
    assert dict(counts) == {"sshd": 101, "postfix": 12, "dovecot": 50}


@pytest.mark.parametrize("rid", IDS)
def test_record(rid: str, outcomes: dict[str, Outcome]) -> None:
    record, failures, merged = outcomes[rid]
    expect = {key: record[key] for key in ("match", "host", "user", "time_epoch", "attempts")}
    if record["time"] is None:
        expect["time_epoch"] = None
    users = (record["extra"] or {}).get("users")
    unknown = set(record["extra"] or {}) - {"users"}
    deviation = DEVIATIONS.get(rid)
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
    if users is not None:
        assert sorted(trace.users) == sorted(users), f"{where}: users {trace.users}"
