"""The journald source, on real journal files.

CI has no running journald, so the journals are written by ``systemd-journal-remote``
from the export format and read back through ``journalctl --file``/``--directory``, the
same program the daemon runs. Tests that need the two programs skip on a machine without
them and fail in CI (scripts/test.sh installs systemd-journal-remote).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest

from conftest import DaemonHandle, Namespaces, require, wait_for
from tailban.config.errors import ConfigError
from tailban.config.load import load_config
from tailban.config.model import JailConfig
from tailban.core.events import Failure
from tailban.daemon.logs import LogSet, choose_backend
from tailban.filters.builtin import resolve_filter
from tailban.filters.matcher import ChunkMatcher
from tailban.sources.follower import Position
from tailban.sources.journal import ExportParser, JournalSource, entry_line, journal_key

JOURNAL_REMOTE_PATHS = ("/lib/systemd/systemd-journal-remote",
                        "/usr/lib/systemd/systemd-journal-remote")
SSHD_UNIT = {"_SYSTEMD_UNIT": "ssh.service", "_COMM": "sshd", "SYSLOG_IDENTIFIER": "sshd"}

Fields = Mapping[str, str | bytes]


# ------------------------------------------------------------------ writing journals

def journal_remote() -> str | None:
    return next((p for p in JOURNAL_REMOTE_PATHS if os.access(p, os.X_OK)), None)


def journal_tools_missing() -> str | None:
    if shutil.which("journalctl") is None:
        return "needs journalctl (package systemd; scripts/test.sh installs it)"
    if journal_remote() is None:
        return ("needs systemd-journal-remote (package systemd-journal-remote; scripts/test.sh "
                "installs it)")
    return None


@pytest.fixture
def journal_tools() -> None:
    problem = journal_tools_missing()
    require(problem is None, problem or "")


def export_entry(fields: Fields) -> bytes:
    """One entry in journald's export format; a value with control characters (or given
    as bytes) takes the binary form: NAME, newline, 64-bit LE length, bytes, newline."""
    out = bytearray()
    for name, value in fields.items():
        raw = value if isinstance(value, bytes) else value.encode()
        if isinstance(value, bytes) or any(c < 0x20 for c in raw):
            out += name.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
        else:
            out += name.encode() + b"=" + raw + b"\n"
    return bytes(out) + b"\n"


def write_journal(path: Path, entries: Iterable[Fields]) -> None:
    """Append entries to a journal file (created when missing); its name ends in .journal."""
    tool = journal_remote()
    assert tool is not None
    data = b"".join(export_entry(e) for e in entries)
    done = subprocess.run([tool, f"--output={path}", "-"], input=data, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()


def entry(message: str | bytes, when: float | None = None, pid: int = 100,
          host: str = "srv", **extra: str) -> dict[str, str | bytes]:
    usec = int((time.time() if when is None else when) * 1_000_000)
    return {"__REALTIME_TIMESTAMP": str(usec), "_HOSTNAME": host, **SSHD_UNIT,
            "_PID": str(pid), "MESSAGE": message, **extra}


def failed(ip: str, pid: int = 100, when: float | None = None) -> dict[str, str | bytes]:
    return entry(f"Failed password for root from {ip} port {40000 + pid} ssh2", when, pid)


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(epoch))) + (
        f".{round((epoch - int(epoch)) * 1e6):06d}+00:00")


# ------------------------------------------------------------------ reading them

class Collector:
    """Drives a JournalSource as the daemon does: read() whenever on_data fires."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.lines: list[bytes] = []

    def on_data(self, key: str) -> None:
        self.event.set()

    def take(self, source: JournalSource, count: int, timeout: float = 10.0) -> list[bytes]:
        """Read until ``count`` more lines came (or the time is up); returns the new ones."""
        start = len(self.lines)
        deadline = time.monotonic() + timeout
        while len(self.lines) - start < count and time.monotonic() < deadline:
            self.event.wait(max(0.0, min(1.0, deadline - time.monotonic())))
            self.event.clear()
            for chunk in source.read():
                assert chunk.endswith(b"\n")
                self.lines.extend(chunk.splitlines(keepends=True))
        return self.lines[start:]

    def settle(self, source: JournalSource, quiet: float = 0.5) -> list[bytes]:
        """Lines that come within ``quiet`` seconds (expected: none)."""
        return self.take(source, 10**9, quiet)


def source(collector: Collector, key: str = "journal:t", **kw: object) -> JournalSource:
    src = JournalSource(key, on_data=collector.on_data, **kw)  # type: ignore[arg-type]
    src.start()
    return src


SSHD_MATCH = ("_SYSTEMD_UNIT=ssh.service", "+", "_SYSTEMD_UNIT=sshd.service", "+",
              "_COMM=sshd", "+", "_COMM=sshd-session")


# ------------------------------------------------------------------ pure parts

def test_export_parser_streams_binary_multi_and_cut_values() -> None:
    data = (export_entry({"__CURSOR": "c1", "MESSAGE": "one\ntwo", "A": "x"})
            + export_entry({"__CURSOR": "c2", "MESSAGE": b"\xff\xfe bytes", "B": "=y="})
            + b"__CURSOR=c3\nMESSAGE=first\nMESSAGE=second\n\n"
            + export_entry({"__CURSOR": "c4", "MESSAGE": "L" * 5000, "BIN": b"\n" * 3000,
                            "AFTER": "ok"}))
    whole = ExportParser(max_value=1000).feed(data)
    for step in (1, 7, 4096):  # any split of the stream gives the same entries
        parser = ExportParser(max_value=1000)
        pieces: list[dict[bytes, bytes]] = []
        for i in range(0, len(data), step):
            pieces.extend(parser.feed(data[i:i + step]))
        assert pieces == whole
    assert [e[b"__CURSOR"] for e in whole] == [b"c1", b"c2", b"c3", b"c4"]
    assert whole[0][b"MESSAGE"] == b"one\ntwo" and whole[0][b"A"] == b"x"
    assert whole[1][b"MESSAGE"] == b"\xff\xfe bytes" and whole[1][b"B"] == b"=y="
    assert whole[2][b"MESSAGE"] == b"first second"  # several values: joined, as fail2ban
    assert whole[3][b"MESSAGE"] == b"L" * 1000 and whole[3][b"BIN"] == b"\n" * 1000
    assert whole[3][b"AFTER"] == b"ok"  # the stream is still in step after cut values


def test_entry_line_form_and_escaping() -> None:
    base = {b"__REALTIME_TIMESTAMP": b"1124013600123456", b"_HOSTNAME": b"srv",
            b"SYSLOG_IDENTIFIER": b"sshd", b"_PID": b"42"}
    assert entry_line({**base, b"MESSAGE": b"hello"}) == (
        b"2005-08-14T10:00:00.123456+00:00 srv sshd[42]: hello\n")
    line = entry_line({**base, b"MESSAGE": b"a\nsshd[1]: Failed\r\x00\x7f\tz"})
    assert line == (b"2005-08-14T10:00:00.123456+00:00 srv sshd[42]: "
                    b"a#012sshd[1]: Failed#015#000#177#011z\n")
    # SYSLOG_PID before _PID, _COMM when there is no identifier, a bad pid left out, and
    # host and identifier are single printable tokens whatever the entry says
    assert entry_line({**base, b"SYSLOG_PID": b"7", b"MESSAGE": b"m"}).endswith(  # type: ignore[union-attr]
        b" sshd[7]: m\n")
    assert entry_line({b"__REALTIME_TIMESTAMP": b"0", b"_COMM": b"cron", b"_PID": b"x1",
                       b"MESSAGE": b"m"}) == b"1970-01-01T00:00:00.000000+00:00 - cron: m\n"
    assert entry_line({**base, b"_HOSTNAME": b"a b\xc2\xa0[c]", b"SYSLOG_IDENTIFIER": b"s d",
                       b"MESSAGE": b"m"}) == (
        b"2005-08-14T10:00:00.123456+00:00 a_b___c_ s_d[42]: m\n")
    assert entry_line({b"MESSAGE": b"no time"}) is None


# ------------------------------------------------------------------ journalctl

def test_entries_become_lines_with_the_journals_own_time(journal_tools: None,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    times = [1124013600.0, 1124013601.5, 1700000000.25]
    write_journal(path, [entry(f"message {i}", t, pid=10 + i) for i, t in enumerate(times)])
    col = Collector()
    src = source(col, files=[str(path)], from_start=True)
    try:
        lines = col.take(src, 3)
        assert lines == [f"{stamp(t)} srv sshd[{10 + i}]: message {i}\n".encode()
                         for i, t in enumerate(times)]
        assert src.error is None and src.entries == 3
        position = src.position
        assert position is not None and position.path == "journal:t"
        assert position.fingerprint.startswith("s=") and ";i=3;" in position.fingerprint
        assert position.offset == int(times[-1] * 1e6)
        # the lines carry the journal's time: the matcher reads it from there
        matcher = ChunkMatcher(resolve_filter("sshd"))
        write_journal(path, [failed("192.0.2.5", when=1124013700.0)])
        (line,) = col.take(src, 1)
        (event,) = matcher.scan(line, time.time())
        assert isinstance(event, Failure) and event.time == 1124013700.0
    finally:
        src.close()


def test_journalmatch_selects_the_service_not_lookalikes(journal_tools: None,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "m.journal"
    now = time.time()
    spoof = "Failed password for root from 192.0.2.99 port 1 ssh2"
    write_journal(path, [
        failed("192.0.2.1", 1, now),
        # `logger -t sshd` by a user: the identifier says sshd, the trusted fields do not
        entry(spoof, now, 2, _SYSTEMD_UNIT="user@1000.service", _COMM="logger"),
        entry("cron says hi", now, 3, _SYSTEMD_UNIT="cron.service", _COMM="cron",
              SYSLOG_IDENTIFIER="CRON"),
        # OpenSSH >= 9.8 logs from sshd-session, also outside ssh.service (socket units)
        entry("Failed password for root from 192.0.2.2 port 2 ssh2", now, 4,
              _SYSTEMD_UNIT="ssh@1.service", _COMM="sshd-session",
              SYSLOG_IDENTIFIER="sshd-session"),
    ])
    col = Collector()
    src = source(col, files=[str(path)], from_start=True, matches=SSHD_MATCH)
    try:
        lines = col.take(src, 2) + col.settle(src)
    finally:
        src.close()
    assert [line.split(b" ", 3)[3] for line in lines] == [
        b"Failed password for root from 192.0.2.1 port 40001 ssh2\n",
        b"Failed password for root from 192.0.2.2 port 2 ssh2\n"]
    # an unrestricted source sees all four
    col = Collector()
    src = source(col, files=[str(path)], from_start=True)
    try:
        assert len(col.take(src, 4)) == 4
    finally:
        src.close()


def test_new_follow_starts_at_the_end_and_follows_appends(journal_tools: None,
                                                          tmp_path: Path) -> None:
    """A brand-new follow does not replay history (like a new log file); entries appended
    later to the same file, and files added to a followed directory, are read."""
    path = tmp_path / "a.journal"
    write_journal(path, [entry("old history", pid=1)])
    col = Collector()
    src = source(col, files=[str(path)])
    try:
        assert src.position is not None  # anchored at the last entry before any line
        assert col.settle(src) == []
        write_journal(path, [entry("appended", pid=2)])
        (line,) = col.take(src, 1)
        assert line.endswith(b"sshd[2]: appended\n")
    finally:
        src.close()
    directory = tmp_path / "dir"
    directory.mkdir()
    write_journal(directory / "one.journal", [entry("before", pid=3)])
    col = Collector()
    src = source(col, directory=str(directory))
    try:
        assert col.settle(src) == []
        write_journal(directory / "one.journal", [entry("same file", pid=4)])
        write_journal(directory / "two.journal", [entry("new file", pid=5)])
        lines = col.take(src, 2)
        assert sorted(line.split(b": ", 1)[1] for line in lines) == [b"new file\n",
                                                                      b"same file\n"]
    finally:
        src.close()


def test_cursor_resumes_exactly_once_across_restarts(journal_tools: None,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "r.journal"
    write_journal(path, [entry(f"batch1 {i}", pid=i) for i in range(50)])
    col = Collector()
    src = source(col, files=[str(path)], from_start=True)
    assert len(col.take(src, 50)) == 50
    src.close()
    saved = src.position
    assert saved is not None
    # written while the daemon is down
    write_journal(path, [entry(f"batch2 {i}", pid=100 + i) for i in range(30)])
    col = Collector()
    src = source(col, files=[str(path)], cursor=saved.fingerprint)
    try:
        lines = col.take(src, 30) + col.settle(src)
        assert [line.split(b": ", 1)[1] for line in lines] == [
            f"batch2 {i}\n".encode() for i in range(30)]
    finally:
        src.close()
    # a restart with nothing new reads nothing, and from_start does not override a cursor
    again = src.position
    assert again is not None and again != saved
    col = Collector()
    src = source(col, files=[str(path)], cursor=again.fingerprint, from_start=True)
    try:
        assert col.settle(src) == []
    finally:
        src.close()


def test_lines_read_but_not_handed_out_come_again_after_a_stop(journal_tools: None,
                                                               tmp_path: Path) -> None:
    """The saved position is the last entry read() handed out, not the last journalctl
    wrote: lines still buffered when the source stops are read again, not lost."""
    path = tmp_path / "b.journal"
    write_journal(path, [entry("first", pid=1)])
    col = Collector()
    src = source(col, files=[str(path)], from_start=True)
    assert col.take(src, 1)[0].endswith(b"first\n")
    write_journal(path, [entry("buffered", pid=2)])
    assert col.event.wait(10)  # read by the thread, not by us
    src.close()
    position = src.position
    assert position is not None
    col2 = Collector()
    src2 = source(col2, files=[str(path)], cursor=position.fingerprint)
    try:
        assert [x.split(b": ", 1)[1] for x in col2.take(src2, 1)] == [b"buffered\n"]
    finally:
        src2.close()


def test_injected_newline_cannot_forge_a_failure(journal_tools: None, tmp_path: Path) -> None:
    path = tmp_path / "i.journal"
    now = time.time()
    forged = "sshd[1]: Failed password for root from 192.0.2.66 port 22 ssh2"
    stamp_now = time.strftime("%b %d %H:%M:%S")
    write_journal(path, [
        # the user name is attacker text sshd writes into MESSAGE
        entry(f"Invalid user x\n{forged}", now, 10),
        entry(f"Invalid user y\r\n{stamp_now} srv {forged}", now, 11),
        entry(b"Invalid user \xff\xfe\n" + forged.encode(), now, 12),
        failed("192.0.2.7", 13, now),
    ])
    col = Collector()
    src = source(col, files=[str(path)], from_start=True)
    try:
        lines = col.take(src, 4)
    finally:
        src.close()
    assert len(lines) == 4  # one line per entry, whatever the message holds
    assert b"#012sshd[1]: Failed" in lines[0] and b"#015#012" in lines[1]
    matcher = ChunkMatcher(resolve_filter("sshd[mode=aggressive]"))
    found = [e for e in matcher.scan(b"".join(lines), now) if isinstance(e, Failure)]
    assert [f.ip for f in found] == ["192.0.2.7"]


def test_missing_files_are_waited_for_and_read_from_their_start(journal_tools: None,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "later.journal"
    col = Collector()
    src = source(col, files=[str(path)])
    try:
        assert wait_for(lambda: (src.read(), src.error)[1] is not None, 10)
        assert "No such file" in (src.error or "")
        write_journal(path, [entry("written before we looked", pid=1)])
        # the daemon calls read() on its safety timer; retries back off from 0 to 60 s
        lines: list[bytes] = []
        assert wait_for(lambda: bool(lines.extend(
            x for chunk in src.read() for x in chunk.splitlines()) or lines), 15, 0.2)
        assert lines[0].endswith(b"written before we looked")
        assert wait_for(lambda: (src.read(), src.error)[1] is None, 5)
    finally:
        src.close()


def test_missing_journalctl_is_an_error_not_a_crash(tmp_path: Path) -> None:
    src = JournalSource("journal:x", files=[str(tmp_path / "a.journal")],
                        journalctl=str(tmp_path / "no-such-journalctl"))
    src.start()
    assert src.read() == []
    assert src.error is not None and "not found" in src.error
    src.close()


def test_stop_ends_journalctl_by_its_pid(journal_tools: None, tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    write_journal(path, [entry("x")])
    src = source(Collector(), files=[str(path)])
    proc = src._proc
    assert proc is not None and proc.poll() is None
    src.close()
    assert proc.returncode is not None and not src.running
    assert src._thread is None


def test_throughput_smoke(journal_tools: None, tmp_path: Path) -> None:
    """20,000 entries through journalctl and the parser, in order and in few chunks."""
    path = tmp_path / "big.journal"
    base = time.time() - 100
    write_journal(path, [failed(f"198.51.100.{i % 250 + 1}", 1000 + i % 5000, base + i / 1e3)
                         for i in range(20000)])
    col = Collector()
    src = source(col, files=[str(path)], from_start=True, matches=SSHD_MATCH)
    try:
        started = time.monotonic()
        lines = col.take(src, 20000, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        src.close()
    assert len(lines) == 20000
    assert lines == sorted(lines)  # the journal's time order (the stamps sort as text)
    print(f"20000 entries in {elapsed:.2f} s ({20000 / elapsed:.0f}/s)")


# ------------------------------------------------------------------ configuration

def _conf(tmp_path: Path, jail: str) -> Path:
    (tmp_path / "jail.conf").write_text(jail)
    return tmp_path


def _load(tmp_path: Path, jail: str) -> JailConfig:
    return load_config(str(_conf(tmp_path, jail))).jails["sshd"]


def test_backend_systemd_options_and_default_matches(tmp_path: Path) -> None:
    jail = _load(tmp_path, "[sshd]\nenabled = true\nbackend = systemd\n")  # no logpath needed
    assert jail.backend == "systemd" and jail.logpaths == ()
    assert jail.journal.match == SSHD_MATCH and jail.journal.system
    jail = _load(tmp_path, "[sshd]\nenabled = true\nbackend = systemd[journalpath=/var/log/j, "
                           "journalflags=4]\n")
    assert jail.journal.path == "/var/log/j" and jail.journal.files == ()
    jail = _load(tmp_path, '[sshd]\nenabled = true\nbackend = systemd[journalfiles="/a.journal, '
                           '/b.journal"]\n')
    assert jail.journal.files == ("/a.journal", "/b.journal")
    jail = _load(tmp_path, "[sshd]\nenabled = true\n"
                           "backend = systemd[journalfiles=/a.journal /b.journal]\n")
    assert jail.journal.files == ("/a.journal", "/b.journal")
    jail = _load(tmp_path, "[sshd]\nenabled = true\nbackend = systemd[journalflags=0]\n"
                           "journalmatch = _SYSTEMD_UNIT=ssh.service _PRIORITY=6\n"
                           "  _COMM='my sshd'\n")
    assert not jail.journal.system
    assert jail.journal.match == ("_SYSTEMD_UNIT=ssh.service", "_PRIORITY=6", "+",
                                  "_COMM=my sshd")
    postfix = load_config(str(_conf(tmp_path, "[p]\nenabled = true\nfilter = postfix\n"
                                               "backend = systemd\n"))).jails["p"]
    assert "_SYSTEMD_UNIT=postfix@-.service" in postfix.journal.match
    jail = _load(tmp_path, "[sshd]\nenabled = true\nbackend = systemd\njournalmatch =\n")
    assert jail.journal.match == ()  # explicitly empty: the whole journal


@pytest.mark.parametrize(("line", "option", "needle"), [
    ("backend = systemd[journalpath=relative]", "backend", "absolute"),
    ("backend = systemd[journalfoo=1]", "backend", "unknown systemd backend option"),
    ("backend = systemd[journalflags=1]", "backend", "not supported"),
    ("backend = systemd[journalpath=/a, journalfiles=/b.journal]", "backend", "together"),
    ("backend = systemd[journalpath]", "backend", "name=value"),
    ("backend = journald", "backend", "unknown backend"),
    ("journalmatch = _SYSTEMD_UNIT=ssh.service +", "journalmatch", "between"),
    ("journalmatch = + _COMM=sshd", "journalmatch", "between"),
    ("journalmatch = _comm=sshd", "journalmatch", "FIELD=value"),
    ("journalmatch = /usr/sbin/sshd", "journalmatch", "FIELD=value"),
    ("journalmatch = --since=today", "journalmatch", "FIELD=value"),
    ("journalmatch = _COMM='sshd", "journalmatch", "quotation"),
])
def test_bad_journal_options_name_file_line(tmp_path: Path, line: str, option: str,
                                            needle: str) -> None:
    d = _conf(tmp_path, f"[sshd]\nenabled = true\nlogpath = /x\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(d))
    assert str(info.value).startswith(f"{d / 'jail.conf'}:4: [sshd] {option}: ")
    assert needle in str(info.value)


def test_auto_picks_the_journal_only_without_log_files(tmp_path: Path) -> None:
    journals = tmp_path / "var-log-journal"
    machine = journals / "0123456789abcdef0123456789abcdef"
    machine.mkdir(parents=True)
    log = tmp_path / "auth.log"
    jail = _load(tmp_path, f"[sshd]\nenabled = true\nlogpath = {log}\n")
    assert jail.backend == "auto"
    # no journal files yet: keep waiting for the log file
    assert choose_backend(jail, [str(journals)])[0] == "file"
    (machine / "system.journal").write_bytes(b"")
    kind, why = choose_backend(jail, [str(journals)])
    assert kind == "systemd" and str(log) in why and str(journals) in why
    log.write_text("")
    assert choose_backend(jail, [str(journals)])[0] == "file"
    log.unlink()
    # a filter with no journalmatch of its own does not switch to the whole journal
    other = load_config(str(_conf(tmp_path, f"[a]\nenabled = true\nfilter = vsftpd\n"
                                             f"logpath = {log}\n"))).jails["a"]
    assert choose_backend(other, [str(journals)])[0] == "file"
    polling = _load(tmp_path, f"[sshd]\nenabled = true\nlogpath = {log}\nbackend = polling\n")
    assert choose_backend(polling, [str(journals)])[0] == "file"


def test_logset_builds_resumes_and_restarts_journal_sources(journal_tools: None,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "l.journal"
    write_journal(path, [entry("old", pid=1)])
    conf = tmp_path / "conf"
    conf.mkdir()
    jail = _load(conf, f"[sshd]\nenabled = true\nbackend = systemd[journalfiles={path}]\n")
    col = Collector()
    logs = LogSet({}, False, on_journal=col.on_data)
    logs.configure([jail])
    try:
        key = journal_key("sshd")
        assert logs.backends["sshd"] == ("systemd", "backend = systemd")
        follower = logs.files[key].follower
        assert isinstance(follower, JournalSource) and logs.patterns == {}
        # same settings on reload: the same process keeps running
        logs.configure([jail])
        assert logs.files[key].follower is follower
        write_journal(path, [entry("new", pid=2)])
        assert col.take(follower, 1)[0].endswith(b"new\n")
        # another journalmatch: a new process, resuming where the old one stopped
        changed = _load(conf, f"[sshd]\nenabled = true\nbackend = systemd[journalfiles={path}]"
                              "\njournalmatch = _PID=3\n")
        logs.configure([changed])
        replaced = logs.files[key].follower
        assert replaced is not follower and not follower.running
        assert isinstance(replaced, JournalSource)
        write_journal(path, [entry("pid two", pid=2), entry("pid three", pid=3)])
        assert [x.split(b": ", 1)[1] for x in col.take(replaced, 1)] == [b"pid three\n"]
        logs.configure([])
        assert key not in logs.files and logs.positions[key].fingerprint
    finally:
        logs.close()


# ------------------------------------------------------------------ the daemon

def banned(daemon: DaemonHandle) -> set[str]:
    return {row["ip"] for row in json.loads(daemon.cli("banned", "--json").stdout)}


@pytest.mark.root
def test_daemon_bans_from_journal_and_resumes_after_restart(
        journal_tools: None, netns: Namespaces, make_daemon: Callable[..., DaemonHandle],
        tmp_path: Path) -> None:
    ns = netns.add("j")
    path = tmp_path / "journal" / "sshd.journal"
    path.parent.mkdir()
    write_journal(path, [failed("192.0.2.200", 1)])  # history: not replayed
    daemon = make_daemon(
        "[DEFAULT]\nmaxretry = 3\nfindtime = 10m\nbantime = 10m\n\n"
        f"[sshd]\nenabled = true\nport = 22\nbackend = systemd[journalfiles={path}]\n", ns=ns)
    daemon.start()
    status = json.loads(daemon.cli("status", "--json").stdout)["jails"]["sshd"]
    assert status["backend"] == "systemd" and status["files"] == ["journal:sshd"]
    assert "reads the journal" in daemon.cli("status").stdout
    write_journal(path, [failed("192.0.2.201", 10 + i) for i in range(3)])
    assert wait_for(lambda: "192.0.2.201" in banned(daemon), 10)
    nft = netns.run(ns, ["nft", "list", "set", "inet", "tailban", "sshd-v4"]).stdout
    assert "192.0.2.201" in nft and "192.0.2.200" not in banned(daemon)
    daemon.stop()
    # written while the daemon is down: read once after the restart, from the cursor
    write_journal(path, [failed("192.0.2.202", 20 + i) for i in range(3)])
    daemon.start()
    assert wait_for(lambda: "192.0.2.202" in banned(daemon), 10)
    status = json.loads(daemon.cli("status", "--json").stdout)["jails"]["sshd"]
    assert status["total_failures"] == 3
    daemon.stop()
    daemon.start()
    status = json.loads(daemon.cli("status", "--json").stdout)["jails"]["sshd"]
    assert status["total_failures"] == 0
    # the daemon's journalctl is gone with it
    daemon.stop()
    procs = subprocess.run(["pgrep", "-f", f"journalctl.*{path}"], capture_output=True,
                           text=True, check=False).stdout.split()
    assert procs == []


@pytest.mark.root
def test_daemon_reports_a_missing_journal_file(journal_tools: None, netns: Namespaces,
                                               make_daemon: Callable[..., DaemonHandle],
                                               tmp_path: Path) -> None:
    ns = netns.add("k")
    path = tmp_path / "later.journal"
    daemon = make_daemon(
        "[DEFAULT]\nmaxretry = 2\n\n"
        f"[sshd]\nenabled = true\nport = 22\nbackend = systemd[journalfiles={path}]\n", ns=ns)
    daemon.start()

    def error() -> str | None:
        jail = json.loads(daemon.cli("status", "--json").stdout)["jails"]["sshd"]
        return jail["file_errors"].get("journal:sshd")  # type: ignore[no-any-return]

    assert wait_for(lambda: error() is not None, 10)
    assert "No such file" in (error() or "")
    write_journal(path, [failed("192.0.2.210", 1 + i) for i in range(2)])
    # picked up on the daemon's safety timer (5 s), read from the file's start
    assert wait_for(lambda: "192.0.2.210" in banned(daemon), 20)
    assert wait_for(lambda: error() is None, 10)


def test_position_key_cannot_collide_with_a_logpath() -> None:
    assert journal_key("sshd") == "journal:sshd"
    assert not os.path.isabs(journal_key("sshd"))
    assert Position(journal_key("a"), 0, 0, 0, "c").path == "journal:a"


def test_a_filter_files_journalmatch_is_the_jails_default(tmp_path: Path) -> None:
    from tailban.config.load import load_config

    (tmp_path / "filter.d").mkdir()
    (tmp_path / "filter.d" / "myapp.conf").write_text(
        "[Definition]\nfailregex = ^login failed from <HOST>$\n"
        "journalmatch = _SYSTEMD_UNIT=myapp.service + _COMM=myapp\n")
    (tmp_path / "jail.conf").write_text(
        "[myapp]\nenabled = true\nbackend = systemd\n"
        "[other]\nenabled = true\nfilter = myapp\nbackend = systemd\n"
        "journalmatch = _SYSTEMD_UNIT=other.service\n")
    jails = load_config(str(tmp_path)).jails
    assert jails["myapp"].journal.match == ("_SYSTEMD_UNIT=myapp.service", "+", "_COMM=myapp")
    assert jails["other"].journal.match == ("_SYSTEMD_UNIT=other.service",)
