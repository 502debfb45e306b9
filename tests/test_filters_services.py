"""Conformance of the service filters with fail2ban's sample logs, both corpora
(``fail2ban-logs/debian-1.0.2``: fail2ban 1.0.2, and the top level: fail2ban master).

Services: ``pam-generic``, ``courier-auth``, ``dropbear`` (built in, ``filters/services.py``)
and ``vsftpd``, ``proftpd``, ``selinux-ssh``, ``nginx-http-auth``, ``apache-auth``,
``recidive`` (filter files in fail2ban's format shipped in ``filters/shipped/``). Each
record is checked with the filter tailban resolves for its name and options
(``filter = NAME[mode=..., logging=...]``), through the same code as a jail.

As in ``test_filters_conformance.py``, records of one (corpus, file, option set) are fed
in ``line_no`` order into ONE matcher. Records with ``logtype: journal`` are the text
fail2ban's harness makes of a journal entry (``HOST IDENT[PID]: MESSAGE``); they are turned
back into that entry, at the harness' "now", and the line tailban's journald source makes
of it (:func:`tailban.sources.journal.entry_line`) is what the filter reads.

Every record is checked: match or not, host, user, time, attempts. The records where
tailban deliberately reads a line otherwise than fail2ban are in :data:`DEVIATIONS`, with
the reason, and are asserted as tailban's reading. No record is left out.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from filterutil import (
    EXPECTATIONS,
    F2B_NOW,
    F2B_TZ,
    UPSTREAM,
    check_failure,
    load_expectations,
    local_zone,
    require_shared,
)
from tailban.core.events import Failure
from tailban.daemon import server
from tailban.daemon.runtime import setup_logging
from tailban.filters.factory import make_matcher, resolve
from tailban.filters.matcher import Merged
from tailban.sources.journal import entry_line

SERVICES = ("pam-generic", "courier-auth", "vsftpd", "proftpd", "dropbear", "selinux-ssh",
            "nginx-http-auth", "apache-auth", "recidive")

Record = dict[str, Any]


def options_of(record: Record) -> dict[str, Any]:
    options: dict[str, Any] = (json.loads(record["filter_options"])
                               if record["filter_options"] else {})
    return options


def is_journal(record: Record) -> bool:
    return bool(record["logtype"] == "journal")


def ref_of(record: Record) -> str:
    """The filter reference of a jail with the record's options. ``logtype = journal`` is
    no filter option in tailban: the journald source writes entries as lines."""
    options = {k: v for k, v in options_of(record).items() if k != "logtype"}
    if not options:
        return str(record["filter"])
    return f"{record['filter']}[{', '.join(f'{k}={v}' for k, v in sorted(options.items()))}]"


def line_id(record: Record) -> str:
    return f"{record['corpus']}:{record['file']}:{record['line_no']}"


def record_id(record: Record) -> str:
    options = options_of(record)
    option_set = ",".join(f"{k}={v}" for k, v in sorted(options.items())) or "default"
    return f"{line_id(record)}[{option_set}]"


@dataclass(frozen=True)
class Deviation:
    """A record where tailban deliberately differs from fail2ban: asserted as tailban's."""

    reason: str
    expect: dict[str, Any]


_PAM_TWO_WAYS = Deviation(
    reason=(
        "'ruser= rhost=192.0.2.2 user=test rhost=192.0.2.152' reads two ways: ruser "
        "'', rhost 192.0.2.2, user 'test rhost=192.0.2.152' (fail2ban's reading) or "
        "ruser ' rhost=192.0.2.2 user=test', rhost 192.0.2.152. ruser and user both "
        "come from the client, so either address may be the attacker's text; like "
        "sshd's and dovecot's PAM rules, tailban yields no failure for such a line "
        "(see the check expressions in filters/builtin.py)."),
    expect={"match": False},
)

_VSFTPD_OLD_PAM_TAG = Deviation(
    reason=(
        "'vsftpd(pam_unix)[15522]: authentication failure; ... rhost=64.168.103.1': PAM's "
        "report of a failed vsftpd login in old Red Hat syslog, where the PAM module is "
        "written into the tag. fail2ban 1.0.2 does not count it; fail2ban master does "
        "(upstream:vsftpd:7, the same line, expects a failure for 64.168.103.1). The two "
        "corpora disagree; tailban follows master: it is a failed password."),
    expect={"match": True, "host": "64.168.103.1"},
)

#: ``corpus:file:line_no`` (every option set of that line) -> the deviation
DEVIATIONS: dict[str, Deviation] = {
    "debian:pam-generic:23": _PAM_TWO_WAYS,
    "upstream:pam-generic:23": _PAM_TWO_WAYS,
    "debian:vsftpd:7": _VSFTPD_OLD_PAM_TAG,
}


RECORDS = [r for r in load_expectations() if r["filter"] in SERVICES]
IDS = [record_id(r) for r in RECORDS] or ["corpus-missing"]
assert len(set(IDS)) == len(IDS), "record ids must be unique"

#: ``HOST IDENT[PID]: MESSAGE``: how fail2ban's harness writes a journal entry as a line
_JOURNAL_TEXT = re.compile(r"(?P<host>\S+) (?P<ident>[^\s\[]+)\[(?P<pid>\d+)\]: (?P<msg>.*)")


def journal_line(text: str, when: float = F2B_NOW) -> bytes:
    """The line tailban's journald source makes of the entry fail2ban's harness wrote as
    ``text``, logged at ``when``."""
    parts = _JOURNAL_TEXT.fullmatch(text)
    assert parts is not None, f"not HOST IDENT[PID]: MESSAGE: {text!r}"
    line = entry_line({b"__REALTIME_TIMESTAMP": b"%d" % (int(when) * 1_000_000),
                       b"_HOSTNAME": parts["host"].encode(),
                       b"SYSLOG_IDENTIFIER": parts["ident"].encode(),
                       b"_PID": parts["pid"].encode(), b"MESSAGE": parts["msg"].encode()})
    assert line is not None
    return line


Outcome = tuple[Record, list[Failure], list[Merged]]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    require_shared(EXPECTATIONS)
    require_shared(UPSTREAM)
    groups: dict[tuple[str, str, str | None], list[Record]] = defaultdict(list)
    for record in RECORDS:
        groups[(record["corpus"], record["file"], record["filter_options"])].append(record)
    results: dict[str, Outcome] = {}
    with local_zone(F2B_TZ):
        for records in groups.values():
            matcher = make_matcher(resolve(ref_of(records[0])), trace=True)
            trace = matcher.trace  # type: ignore[attr-defined]
            assert trace is not None
            for record in sorted(records, key=lambda r: r["line_no"]):
                trace.clear()
                line = (journal_line(record["line"]) if is_journal(record)
                        else record["line"].encode("utf-8") + b"\n")
                failures = [e for e in matcher.scan(line, F2B_NOW) if isinstance(e, Failure)]
                results[record_id(record)] = (record, failures, list(trace))
    return results


def test_selection_is_complete() -> None:
    """Every record of these filters is checked (deviations as tailban's reading)."""
    require_shared(EXPECTATIONS)
    require_shared(UPSTREAM)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for record in RECORDS:
        kind = "journal" if is_journal(record) else "file"
        counts[(record["corpus"], ref_of(record), kind)] += 1
    assert dict(counts) == {
        ("debian", "pam-generic", "file"): 9,
        ("debian", "courier-auth", "file"): 6,
        ("debian", "vsftpd", "file"): 5,
        ("debian", "proftpd", "file"): 10,
        ("debian", "dropbear", "file"): 7,
        ("debian", "selinux-ssh", "file"): 10,
        ("debian", "nginx-http-auth[mode=normal]", "file"): 6,
        ("debian", "nginx-http-auth[mode=auth]", "file"): 6,
        ("debian", "nginx-http-auth[mode=fallback]", "file"): 4,
        ("debian", "nginx-http-auth[mode=aggressive]", "file"): 2,
        ("debian", "apache-auth", "file"): 39,
        ("debian", "apache-auth[mode=aggressive]", "file"): 1,
        ("debian", "apache-auth[logging=syslog]", "file"): 4,
        ("debian", "recidive", "file"): 8,
        ("upstream", "pam-generic", "file"): 9,
        ("upstream", "courier-auth", "file"): 6,
        ("upstream", "vsftpd", "file"): 8,
        ("upstream", "proftpd", "file"): 10,
        ("upstream", "dropbear", "file"): 10,
        ("upstream", "selinux-ssh", "file"): 11,
        ("upstream", "nginx-http-auth[mode=normal]", "file"): 7,
        ("upstream", "nginx-http-auth[mode=auth]", "file"): 7,
        ("upstream", "nginx-http-auth[mode=fallback]", "file"): 7,
        ("upstream", "nginx-http-auth[mode=aggressive]", "file"): 2,
        ("upstream", "nginx-http-auth", "journal"): 2,
        ("upstream", "apache-auth", "file"): 40,
        ("upstream", "apache-auth[mode=aggressive]", "file"): 1,
        ("upstream", "apache-auth[logging=syslog]", "file"): 4,
        ("upstream", "recidive", "file"): 8,
        ("upstream", "recidive", "journal"): 1,
    }
    assert sum(counts.values()) == 133 + 117  # upstream + debian
    assert set(DEVIATIONS) <= {line_id(r) for r in RECORDS}


@pytest.mark.parametrize("rid", IDS)
def test_record(rid: str, outcomes: dict[str, Outcome]) -> None:
    record, failures, merged = outcomes[rid]
    expect = {key: record[key] for key in ("match", "host", "user", "time_epoch", "attempts")}
    if record["time"] is None:
        expect["time_epoch"] = None
    deviation = DEVIATIONS.get(line_id(record))
    if deviation is not None:
        expect.update(deviation.expect)
    where = f"{rid} {record['line']!r} (filter {ref_of(record)})"
    assert not record["extra"], f"{where}: unhandled extra assertions {record['extra']}"
    failure = check_failure(failures, expect, record, where)
    if failure is None:
        return
    if expect["attempts"] is not None:
        assert merged[0].attempts == expect["attempts"], f"{where}: attempts {merged}"
    if is_journal(record):  # the journal entry's time
        assert failure.time == F2B_NOW, f"{where}: time {failure.time}"


# ------------------------------------------------------------------------ other forms

_APACHE_STAMP = re.compile(r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d(?:\.\d+)? \d{4}\] ")


def test_apache_error_lines_through_syslog() -> None:
    """apache-auth reads Apache's messages sent through syslog (``ErrorLog syslog``) without
    fail2ban's ``logging=syslog``: the default-mode error-log records of both corpora, their
    stamp replaced by a syslog prefix, give what fail2ban says of the error-log line."""
    require_shared(EXPECTATIONS)
    require_shared(UPSTREAM)
    records = [r for r in RECORDS if r["filter"] == "apache-auth" and not r["filter_options"]
               and _APACHE_STAMP.match(r["line"])]
    assert len(records) == 79
    spec = resolve("apache-auth")
    with local_zone(F2B_TZ):
        for record in records:
            line = _APACHE_STAMP.sub("Feb 15 16:23:00 srv httpd[1]: ", record["line"], count=1)
            failures = [e for e in make_matcher(spec).match_line(line, F2B_NOW)
                        if isinstance(e, Failure)]
            expect = {"match": record["match"], "host": record["host"],
                      "user": record["user"], "time_epoch": None}
            check_failure(failures, expect, record, f"{record_id(record)} {line!r}")


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
    ("dropbear", "Jul 10 23:57:29 b dropbear[825]: [825] Jul 10 23:57:29 Exit before auth "
     "from <192.0.2.9:52289>: (user 'x from <6.6.6.6:1>: ', 10 fails): Max auth tries "
     "reached - user 'root'", "192.0.2.9"),
    ("proftpd", "May 31 10:53:25 m proftpd[1]: s (n[192.0.2.9]) - USER x (n[6.6.6.6]) - "
     "USER y: no such user found from n [6.6.6.6] to 1.2.3.4:21", "192.0.2.9"),
    ("proftpd", "May 31 10:53:25 m proftpd[1] s (n[192.0.2.9]): USER x proftpd[2] s "
     "(n[6.6.6.6]): y (Login failed): Incorrect password.", "192.0.2.9"),
    ("pam-generic", "Jul 19 18:11:50 s d: pam_unix(auth): authentication failure; logname= "
     "uid=0 euid=0 tty=x ruser=a rhost=6.6.6.6 user=b rhost=192.0.2.9 user=c", None),
    ("apache-auth", "Feb 15 16:23:00 srv httpd[1]: [error] [client 192.0.2.9] user "
     "x [client 6.6.6.6] user y not found: /", "192.0.2.9"),
    ("apache-auth", "[Sat Jun 01 02:17:42 2013] [error] [client 192.0.2.9] File does not "
     "exist: /x/[client 6.6.6.6] user root not found", None),
    # vsftpd: the user name before Client "ADDR" is the client's
    ("vsftpd", 'Fri Jan 19 12:20:33 2007 [pid 1] [x] FAIL LOGIN: Client "6.6.6.6", y] '
     'FAIL LOGIN: Client "192.0.2.9"', "192.0.2.9"),
    ("vsftpd", 'Mar  4 01:06:36 h vsftpd[1]: [x] FAIL LOGIN: Client "6.6.6.6", "] FAIL '
     'LOGIN: Client "192.0.2.9"', "192.0.2.9"),
    # vsftpd's PAM line: ruser and user are the client's; a line that reads two ways
    # yields nothing, the right-most rhost is read when only it fits
    ("vsftpd", "Oct 23 21:15:42 vps vsftpd: pam_unix(vsftpd:auth): authentication failure; "
     "logname= uid=0 euid=0 tty=ftp ruser= rhost=192.0.2.9 user=x rhost=6.6.6.6", None),
    ("vsftpd", "Oct 23 21:15:42 vps vsftpd: pam_unix(vsftpd:auth): authentication failure; "
     "logname= uid=0 euid=0 tty=ftp ruser=a rhost=6.6.6.6 user=b rhost=192.0.2.9", None),
    ("vsftpd", "Oct 23 21:15:42 vps vsftpd: pam_unix(vsftpd:auth): authentication failure; "
     "logname= uid=0 euid=0 tty=ftp ruser=x rhost=6.6.6.6 rhost=192.0.2.9", "192.0.2.9"),
    ("vsftpd", 'Fri Jan 19 12:20:33 2007 [pid 1] [a rhost=b user=c rhost=d] FAIL LOGIN: '
     'Client "192.0.2.9"', "192.0.2.9"),
    # another service's PAM line in the same log is not vsftpd's
    ("vsftpd", "Oct 23 21:15:42 vps sshd[1]: pam_unix(sshd:auth): authentication failure; "
     "logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.9", None),
    # nginx: the user name before ", client: ADDR" is the client's, and so are the request
    # line, Host header and referrer after it: nginx's tail holds no spaces of theirs
    ("nginx-http-auth", '2014/04/03 22:20:40 [error] 1#0: *3 user "x": password mismatch, '
     'client: 6.6.6.6, server: s, request: "GET / HTTP/1.1", host: "h"": password mismatch, '
     'client: 192.0.2.9, server: s, request: "GET / HTTP/1.1", host: "h"', "192.0.2.9"),
    ("nginx-http-auth", '2014/04/03 22:20:40 [error] 1#0: *3 user "x": password mismatch, '
     'client: 192.0.2.9, server: s, request: "GET / HTTP/1.1", host: "h", referrer: "x", '
     'client: 6.6.6.6, server: s, request: "GET / HTTP/1.1", host: "h"', None),
    # ... a copy of nginx's tail in the referrer makes the line read two ways: nothing
    ("nginx-http-auth", '2014/04/03 22:20:40 [error] 1#0: *3 user "x": password mismatch, '
     'client: 192.0.2.9, server: s, request: "GET / HTTP/1.1", host: "h", referrer: "x": '
     'password mismatch, client: 6.6.6.6, server: s, request: "GET / HTTP/1.1", host: "h"',
     None),
    ("nginx-http-auth", '2014/04/03 22:20:40 [error] 1#0: *3 user "x": password mismatch, '
     'client: 6.6.6.6, server: s, request: "GET / HTTP/1.1", host: "h", referrer: "z": '
     'password mismatch, client: 192.0.2.9, server: s, request: "GET /a b HTTP/1.1", '
     'host: "h"', None),
    # ... while a referrer with spaces alone is no reason to miss a failure
    ("nginx-http-auth", '2014/04/03 22:20:40 [error] 1#0: *3 user "x": password mismatch, '
     'client: 192.0.2.9, server: s, request: "GET / HTTP/1.1", host: "h", referrer: "a b, '
     'c"', "192.0.2.9"),
    ("nginx-http-auth", "2025/09/07 21:20:40 [error] 1#1: *2 PAM: user 'x' - not "
     "authenticated: Authentication failure, client: 6.6.6.6, server: s, request: \"GET / "
     "HTTP/2.0\", host: \"h\"' - not authenticated: Authentication failure, client: "
     "192.0.2.9, server: s, request: \"GET / HTTP/2.0\", host: \"h\"", "192.0.2.9"),
    # selinux-ssh: the audit library hex-encodes an account name with spaces or quotes
    ("selinux-ssh", "type=USER_AUTH msg=audit(1373129280.000:9): pid=1 uid=0 auid=1 ses=1 "
     "subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op=password acct=\"x addr=6.6.6.6\" "
     "exe=\"/usr/sbin/sshd\" hostname=? addr=192.0.2.9 terminal=ssh res=failed'", None),
    ("selinux-ssh", "type=USER_AUTH msg=audit(1373129280.000:9): pid=1 uid=0 auid=1 ses=1 "
     "subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op=password acct=78206164"
     "6472 exe=\"/usr/sbin/sshd\" hostname=? addr=192.0.2.9 terminal=ssh res=failed'",
     "192.0.2.9"),
])
def test_injection(ref: str, line: str, host: str | None) -> None:
    """Client text that looks like the daemon's own address field never becomes the host
    (``None``: the line reads two ways, or is no failure, and yields nothing)."""
    with local_zone(F2B_TZ):
        events = make_matcher(resolve(ref)).match_line(line, F2B_NOW)
    failures = [e for e in events if isinstance(e, Failure)]
    assert [f.host for f in failures] == ([host] if host else [])


# ------------------------------------------------------------------------ recidive

def _ban_format() -> str:
    """The message the daemon logs for a ban, as written in daemon/server.py."""
    source = (Path(__file__).resolve().parents[1] / "src" / "tailban" / "daemon"
              / "server.py").read_text(encoding="utf-8")
    found = re.findall(r'log\.info\("(Ban [^"]*)"', source)
    assert len(found) == 1, found
    return found[0]


def test_recidive_reads_tailbans_own_log(tmp_path: Path) -> None:
    """The ban lines the daemon writes (the log file target of daemon/runtime.py, syslog's
    and the journal's forms) count for the address banned, except the jail's own."""
    log_file = tmp_path / "tailban.log"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging(str(log_file), "INFO")
        for ip, jail in (("192.0.2.1", "sshd"), ("192.0.2.2", "recidive"),
                         ("2001:db8::3", "postfix-sasl"), ("192.0.2.4", "repeat")):
            server.log.info(_ban_format(), ip, jail, 5)
        server.log.info("Unban %s in %s (expired)", "192.0.2.1", "sshd")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    data = log_file.read_bytes()
    assert data.count(b"\n") == 5
    message = f"INFO {server.log.name}: " + _ban_format() % ("192.0.2.5", "dovecot", 3)
    data += b"Nov 23 15:22:02 host tailban[42]: " + message.encode() + b"\n"
    data += journal_line(f"host tailban[42]: {message}", 1_700_000_000)
    # the jail's own name comes from the jail: recidive by default, else its name
    hosts = {name: [f.host for f in make_matcher(spec).scan(data, 1_800_000_000)
                    if isinstance(f, Failure)]
             for name, spec in (("recidive", resolve("recidive")),
                                ("repeat", resolve("recidive", jail="repeat")))}
    assert hosts == {
        "recidive": ["192.0.2.1", "2001:db8::3", "192.0.2.4", "192.0.2.5", "192.0.2.5"],
        "repeat": ["192.0.2.1", "192.0.2.2", "2001:db8::3", "192.0.2.5", "192.0.2.5"]}
    journal = [f for f in make_matcher(resolve("recidive")).scan(data, 1_800_000_000)
               if isinstance(f, Failure)][-1]
    assert math.isclose(journal.time, 1_700_000_000)


def test_recidive_ignores_its_own_jail_in_fail2ban_lines() -> None:
    spec = resolve("recidive", jail="repeat")
    lines = [b"2006-02-13 15:52:30,388 fail2ban.actions: NOTICE [repeat] Ban 192.0.2.1",
             b"2006-02-13 15:52:30,388 fail2ban.actions: NOTICE [recidive] Ban 192.0.2.2",
             b"2006-02-13 15:52:30,388 fail2ban.actions: NOTICE [sshd] Restore Ban 192.0.2.3",
             b"2006-02-13 15:52:30,388 fail2ban.filter [1]: INFO [sshd] Found 192.0.2.4",
             b"2006-02-13 15:52:30,388 fail2ban.actions: NOTICE [sshd] Ban 192.0.2.5"]
    failures = [f for f in make_matcher(spec).scan(b"\n".join(lines) + b"\n", F2B_NOW)
                if isinstance(f, Failure)]
    assert [f.host for f in failures] == ["192.0.2.2", "192.0.2.5"]
