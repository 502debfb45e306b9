"""Conformance of the service filters (``filters/services.py``) with fail2ban 1.0.2's
sample logs (``fail2ban-logs/debian-1.0.2``): pam-generic, courier-auth, vsftpd, proftpd,
dropbear, selinux-ssh, nginx-http-auth, apache-auth.

As in ``test_filters_conformance.py``, records of one (file, option set) are fed in
``line_no`` order into ONE matcher. Every record of these filters is either checked or
listed in :func:`unsupported` with the reason it cannot pass; :data:`DEVIATIONS` are
checked as tailban's reading.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from filterutil import (
    F2B_LOGS,
    F2B_NOW,
    F2B_TZ,
    check_failure,
    local_zone,
    require_shared,
)
from tailban.core.events import Failure
from tailban.filters.builtin import resolve_filter
from tailban.filters.matcher import ChunkMatcher
from tailban.filters.model import FilterSpec
from tailban.filters.services import APACHE_AUTH_SYSLOG

EXPECTATIONS = F2B_LOGS / "debian-1.0.2" / "expectations.jsonl"

SERVICES = ("pam-generic", "courier-auth", "vsftpd", "proftpd", "dropbear", "selinux-ssh",
            "nginx-http-auth", "apache-auth")

Record = dict[str, Any]

_NO_SYSLOG = ("the matcher reads syslog lines (TIME [HOST] TAG[PID]: MSG) or RFC 5424; "
              "this line has no syslog prefix: ")
_PROFTPD_NO_COLON = re.compile(r"proftpd\[\d+\] ")


def spec_of(name: str) -> FilterSpec:
    """The filter a record is checked with: apache-auth's syslog variant is not
    registered (services.py says why), so it is taken from the module directly."""
    return APACHE_AUTH_SYSLOG if name == "apache-auth" else resolve_filter(name)


def options_of(record: Record) -> dict[str, Any]:
    return json.loads(record["filter_options"]) if record["filter_options"] else {}


def unsupported(record: Record) -> str | None:
    """Why a record cannot pass with tailban's filters (None: it is checked)."""
    name = record["filter"]
    options = options_of(record)
    if name == "selinux-ssh":
        return _NO_SYSLOG + "an audit record (type=... msg=audit(EPOCH:SERIAL): ...)"
    if name == "nginx-http-auth":
        return _NO_SYSLOG + "nginx's error log (YYYY/MM/DD HH:MM:SS [level] PID#TID: ...)"
    if name == "apache-auth":
        if options.get("mode") not in (None, "normal"):
            return f"apache-auth mode={options['mode']} is not implemented (default only)"
        if options.get("logging") != "syslog":
            return _NO_SYSLOG + "Apache's error log ([Www Mmm dd HH:MM:SS YYYY] [error] ...)"
    if name == "vsftpd" and record["line"].startswith(("Mon ", "Tue ", "Wed ", "Thu ",
                                                       "Fri ", "Sat ", "Sun ")):
        return _NO_SYSLOG + "vsftpd's own log (Www Mmm dd HH:MM:SS YYYY [pid N] ...)"
    if name == "proftpd" and _PROFTPD_NO_COLON.search(record["line"]):
        return ("old proftpd writes 'proftpd[PID] SERVER (NAME[ADDR]): MSG' with no ':' "
                "after the tag; the matcher's syslog prefix needs 'TAG[PID]:', so the "
                "client's address would stand in the prefix, outside the message the "
                "rules read (needs a matcher change, out of scope here)")
    return None


@dataclass(frozen=True)
class Deviation:
    """A record where tailban deliberately differs from fail2ban: asserted as tailban's."""

    reason: str
    expect: dict[str, Any]


DEVIATIONS: dict[str, Deviation] = {
    "pam-generic:23": Deviation(
        reason=(
            "'ruser= rhost=192.0.2.2 user=test rhost=192.0.2.152' reads two ways: ruser "
            "'', rhost 192.0.2.2, user 'test rhost=192.0.2.152' (fail2ban's reading) or "
            "ruser ' rhost=192.0.2.2 user=test', rhost 192.0.2.152. ruser and user both "
            "come from the client, so either address may be the attacker's text; like "
            "sshd's and dovecot's PAM rules, tailban yields no failure for such a line "
            "(see the check expressions in filters/builtin.py)."),
        expect={"match": False},
    ),
}


def _load() -> list[Record]:
    if not EXPECTATIONS.exists():
        return []
    with EXPECTATIONS.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


ALL_RECORDS = [r for r in _load() if r["filter"] in SERVICES]
CHECKED = [r for r in ALL_RECORDS if unsupported(r) is None]


def record_id(record: Record) -> str:
    rid = f"{record['file']}:{record['line_no']}"
    if record["filter_options"]:
        rid += f"[{','.join(f'{k}={v}' for k, v in options_of(record).items())}]"
    return rid


IDS = [record_id(r) for r in CHECKED] or ["corpus-missing"]
assert len(set(IDS)) == len(IDS), "record ids must be unique"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, tuple[Record, list[Failure]]]:
    require_shared(EXPECTATIONS)
    groups: dict[tuple[str, str | None], list[Record]] = defaultdict(list)
    for record in CHECKED:
        groups[(record["file"], record["filter_options"])].append(record)
    results: dict[str, tuple[Record, list[Failure]]] = {}
    with local_zone(F2B_TZ):
        for records in groups.values():
            matcher = ChunkMatcher(spec_of(records[0]["filter"]))
            for record in sorted(records, key=lambda r: r["line_no"]):
                events = matcher.scan(record["line"].encode("utf-8") + b"\n", F2B_NOW)
                failures = [e for e in events if isinstance(e, Failure)]
                results[record_id(record)] = (record, failures)
    return results


def test_selection_is_complete() -> None:
    """Every record of these filters is checked or left out with a stated reason."""
    require_shared(EXPECTATIONS)
    checked: dict[str, int] = defaultdict(int)
    left_out: dict[str, int] = defaultdict(int)
    for record in ALL_RECORDS:
        if unsupported(record) is None:
            checked[record["filter"]] += 1
        else:
            left_out[record["filter"]] += 1
    assert dict(checked) == {"pam-generic": 9, "courier-auth": 6, "vsftpd": 3,
                             "proftpd": 3, "dropbear": 7, "apache-auth": 4}
    assert dict(left_out) == {"vsftpd": 2, "proftpd": 7, "selinux-ssh": 10,
                              "nginx-http-auth": 18, "apache-auth": 40}
    assert set(DEVIATIONS) <= {record_id(r) for r in CHECKED}


@pytest.mark.parametrize("rid", IDS)
def test_record(rid: str, outcomes: dict[str, tuple[Record, list[Failure]]]) -> None:
    record, failures = outcomes[rid]
    expect = {key: record[key] for key in ("match", "host", "user", "time_epoch")}
    if record["time"] is None:
        expect["time_epoch"] = None
    deviation = DEVIATIONS.get(rid)
    if deviation is not None:
        expect.update(deviation.expect)
    where = f"{rid} {record['line']!r}"
    assert not record["extra"], f"{where}: unhandled extra assertions {record['extra']}"
    check_failure(failures, expect, record, where)


def test_unsupported_lines_find_nothing() -> None:
    """The left-out lines of the filters tailban has are known gaps: they yield nothing
    today (not a wrong address). When the matcher learns their format, move them over."""
    require_shared(EXPECTATIONS)
    with local_zone(F2B_TZ):
        for record in ALL_RECORDS:
            if unsupported(record) is None or record["filter"] in ("selinux-ssh",
                                                                   "nginx-http-auth"):
                continue
            matcher = ChunkMatcher(spec_of(record["filter"]))
            assert matcher.match_line(record["line"], F2B_NOW) == [], record_id(record)


_APACHE_STAMP = re.compile(r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d(?:\.\d+)? \d{4}\] ")


def test_apache_error_lines_through_syslog() -> None:
    """apache-auth's default-mode records, their Apache error-log stamp replaced by a
    syslog prefix (``ErrorLog syslog``): match, host and user as fail2ban says (the
    time is not comparable and not asserted)."""
    require_shared(EXPECTATIONS)
    records = [r for r in ALL_RECORDS if r["filter"] == "apache-auth"
               and not r["filter_options"] and _APACHE_STAMP.match(r["line"])]
    assert len(records) == 39
    with local_zone(F2B_TZ):
        for record in records:
            line = _APACHE_STAMP.sub("Feb 15 16:23:00 srv httpd[1]: ", record["line"], count=1)
            matcher = ChunkMatcher(APACHE_AUTH_SYSLOG)
            failures = [e for e in matcher.match_line(line, F2B_NOW)
                        if isinstance(e, Failure)]
            where = f"{record_id(record)} {line!r}"
            if not record["match"]:
                assert failures == [], where
                continue
            assert len(failures) == 1, where
            if record["host"] is not None:
                assert failures[0].host == record["host"], where
            if record["user"] is not None:
                assert failures[0].user == record["user"], where


@pytest.mark.parametrize(("ref", "line", "host"), [
    ("courier-auth", "Apr 23 21:59:01 dns2 imapd: LOGIN FAILED, user=x, ip=[6.6.6.6], "
     "ip=[::ffff:192.0.2.9]", "192.0.2.9"),
    ("courier-auth", "Apr 23 21:59:01 dns2 imapd: LOGIN FAILED, user=x, ip=[6.6.6.6], "
     "port=[1], ip=[192.0.2.9], port=[143]", "192.0.2.9"),
    ("dropbear", "Mar 24 15:25:51 b dropbear[1]: bad password attempt for 'x' from "
     "6.6.6.6:1' from 192.0.2.9:5543", "192.0.2.9"),
    ("dropbear", "Mar 24 15:25:51 b dropbear[1]: Exit before auth (user 'x' from 6.6.6.6:1"
     "', 3 fails): Max auth tries reached - user 'x' from 6.6.6.6:1' from 192.0.2.9:22",
     "192.0.2.9"),
    ("proftpd", "May 31 10:53:25 m proftpd[1]: s (n[192.0.2.9]) - USER x (n[6.6.6.6]) - "
     "USER y: no such user found from n [6.6.6.6] to 1.2.3.4:21", "192.0.2.9"),
    ("pam-generic", "Jul 19 18:11:50 s d: pam_unix(auth): authentication failure; logname= "
     "uid=0 euid=0 tty=x ruser=a rhost=6.6.6.6 user=b rhost=192.0.2.9 user=c", None),
    ("apache-auth", "Feb 15 16:23:00 srv httpd[1]: [error] [client 192.0.2.9] user "
     "x [client 6.6.6.6] user y not found: /", "192.0.2.9"),
])
def test_injection(ref: str, line: str, host: str | None) -> None:
    """Client text that looks like the daemon's own address field never becomes the host
    (``None``: the line reads two ways and yields nothing)."""
    with local_zone(F2B_TZ):
        events = ChunkMatcher(spec_of(ref)).match_line(line, F2B_NOW)
    failures = [e for e in events if isinstance(e, Failure)]
    assert [f.host for f in failures] == ([host] if host else [])
