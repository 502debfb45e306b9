"""The daemon as a process: bad input is reported clearly and nothing is lost."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import DaemonHandle, Namespaces, syslog_line, wait_for


def jail_ini(logpath: Path, extra: str = "") -> str:
    return (f"[DEFAULT]\nmaxretry = 3\nfindtime = 10m\nbantime = 10m\n\n"
            f"[sshd]\nenabled = true\nport = 22\nlogpath = {logpath}\n{extra}")


def failures(ip: str, n: int, pid: int = 100) -> str:
    return "".join(syslog_line(f"sshd[{pid + i}]: Failed password for root from {ip} "
                               f"port {40000 + i} ssh2") for i in range(n))


def banned(daemon: DaemonHandle) -> set[str]:
    out = daemon.cli("banned", "--json").stdout
    return {row["ip"] for row in json.loads(out)}


def test_ban_unreadable_log_and_recovery(netns: Namespaces,
                                         make_daemon: Callable[..., DaemonHandle],
                                         tmp_path: Path) -> None:
    ns = netns.add("d")
    log = tmp_path / "auth.log"
    other = tmp_path / "missing-yet.log"
    daemon = make_daemon(jail_ini(log, f"\n[sshd-extra]\nenabled = true\nfilter = sshd\n"
                                       f"port = 22\nlogpath = {other}\n"), ns=ns)
    log.write_text("")
    daemon.start()
    # A file that does not exist yet is waited for, not an error that stops the jail.
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["jails"]["sshd-extra"]["files"] == [str(other)]
    with log.open("a") as f:
        f.write(failures("203.0.113.9", 3))
    assert wait_for(lambda: "203.0.113.9" in banned(daemon), 5)
    # The ban's log line is read from the store (the ledger keeps none in memory).
    row, = json.loads(daemon.cli("banned", "--json").stdout)
    assert "Failed password for root from 203.0.113.9 port 40002" in row["line"]
    shown = json.loads(daemon.cli("show", "203.0.113.9", "--json").stdout)
    assert shown["banned"][0]["line"] == row["line"]
    other.write_text(failures("203.0.113.10", 3))
    assert wait_for(lambda: "203.0.113.10" in banned(daemon), 8)
    # An unreadable log (root reads any file mode, so: a directory in its place) is
    # reported in status and the daemon log, and followed again once it is a file.
    bad = tmp_path / "bad.log"
    bad.mkdir()
    local = daemon.confdir / "jail.local"
    local.write_text(f"[sshd-extra]\nlogpath = {bad}\n")
    assert daemon.cli("reload").returncode == 0

    def file_error() -> str | None:
        status = json.loads(daemon.cli("status", "--json").stdout)
        return status["jails"]["sshd-extra"]["file_errors"].get(str(bad))

    assert wait_for(lambda: file_error() is not None, 8)
    assert str(bad) in daemon.log.read_text()
    bad.rmdir()
    bad.write_text(failures("203.0.113.11", 3))
    assert wait_for(lambda: "203.0.113.11" in banned(daemon), 10)
    assert file_error() is None


def test_reload_keeps_running_config_when_broken(netns: Namespaces,
                                                 make_daemon: Callable[..., DaemonHandle],
                                                 tmp_path: Path) -> None:
    ns = netns.add("r")
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(jail_ini(log), ns=ns)
    daemon.start()
    local = daemon.confdir / "jail.local"
    for broken, needle in (("[sshd]\nbantime = forever-ish\n", "bantime"),
                           ("[sshd]\nfilter = nosuchfilter\n", "unknown filter"),
                           ("[sshd]\nmaxretry = three\n", "maxretry"),
                           ("[sshd]\nlogpath =\n", "logpath"),
                           ("garbage without section\n", "jail.local:1")):
        local.write_text(broken)
        result = daemon.cli("reload", check=False)
        assert result.returncode == 1, broken
        assert "not reloaded" in result.stderr and needle in result.stderr, result.stderr
        assert str(local) in result.stderr
    # Still running with the old settings: 3 failures ban.
    with log.open("a") as f:
        f.write(failures("198.51.100.7", 3))
    assert wait_for(lambda: "198.51.100.7" in banned(daemon), 5)
    # A good reload applies: maxretry 1, and the existing ban survives it.
    local.write_text("[sshd]\nmaxretry = 1\n")
    assert daemon.cli("reload").returncode == 0
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["jails"]["sshd"]["maxretry"] == 1
    with log.open("a") as f:
        f.write(failures("198.51.100.8", 1))
    assert wait_for(lambda: {"198.51.100.7", "198.51.100.8"} <= banned(daemon), 5)
    # SIGHUP reloads too; a broken file on SIGHUP is logged and ignored.
    local.write_text("[sshd]\nmaxretry = nope\n")
    os.kill(daemon.process.pid, 1)  # type: ignore[union-attr]
    assert wait_for(lambda: "reload refused" in daemon.log.read_text(), 5)
    assert daemon.cli("ping").returncode == 0


def test_bad_config_at_start_exits_78_with_location(make_daemon: Callable[..., DaemonHandle],
                                                    tmp_path: Path) -> None:
    daemon = make_daemon("[sshd]\nenabled = true\nlogpath = /x\nbantime = 5 fortnights\n")
    result = daemon.cli("run", check=False)
    assert result.returncode == 78
    assert f"{daemon.confdir / 'jail.conf'}:4: [sshd] bantime:" in result.stderr


def test_cli_errors(netns: Namespaces, make_daemon: Callable[..., DaemonHandle],
                    tmp_path: Path) -> None:
    ns = netns.add("c")
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(jail_ini(log), ns=ns)
    assert daemon.cli("ping", check=False).returncode == 69  # not running
    daemon.start()
    bad = daemon.cli("ban", "sshd", "not-an-ip", check=False)
    assert bad.returncode == 1 and "not an IP address or network" in bad.stderr
    bad = daemon.cli("ban", "nojail", "192.0.2.1", check=False)
    assert bad.returncode == 1 and "no enabled jail" in bad.stderr
    bad = daemon.cli("unban", "192.0.2.99", check=False)
    assert bad.returncode == 1 and "not banned" in bad.stderr
    assert daemon.cli("ban", "sshd", "192.0.2.1", "--bantime", "-1").returncode == 0
    rows = json.loads(daemon.cli("banned", "--json").stdout)
    assert rows[0]["ip"] == "192.0.2.1" and rows[0]["expires_at"] is None
    sock = Path(daemon.socket)
    assert oct(sock.stat().st_mode & 0o777) == "0o600"


def test_start_daemonises_with_pidfile(netns: Namespaces,
                                       make_daemon: Callable[..., DaemonHandle],
                                       tmp_path: Path) -> None:
    ns = netns.add("s")
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(jail_ini(log), ns=ns)
    result = daemon.cli("start")
    assert "started" in result.stdout
    pidfile = Path(daemon.socket).with_name("tailban.pid")
    pid = int(pidfile.read_text().split()[0])
    try:
        assert Path(f"/proc/{pid}").exists()
        assert os.getsid(pid) != os.getsid(0)  # detached into its own session
        with log.open("a") as f:
            f.write(failures("192.0.2.44", 3))
        assert wait_for(lambda: "192.0.2.44" in banned(daemon), 5)
        assert daemon.cli("start").returncode == 0  # already running: says so, no second one
        daemon.cli("stop")
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10)
        assert not pidfile.exists()
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)


def test_lines_written_while_down_are_read_once(netns: Namespaces,
                                                make_daemon: Callable[..., DaemonHandle],
                                                tmp_path: Path) -> None:
    ns = netns.add("p")
    log = tmp_path / "auth.log"
    # Old history is not replayed: a brand-new file starts at its end.
    log.write_text(failures("192.0.2.60", 3))
    daemon = make_daemon(jail_ini(log), ns=ns)
    daemon.start()
    daemon.stop()
    with log.open("a") as f:
        f.write(failures("192.0.2.61", 3))
    daemon.start()
    assert wait_for(lambda: "192.0.2.61" in banned(daemon), 5)
    assert "192.0.2.60" not in banned(daemon)
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["jails"]["sshd"]["total_failures"] == 3  # read once, not twice
    daemon.stop()
    daemon.start()
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["jails"]["sshd"]["total_failures"] == 0
    assert "192.0.2.61" in banned(daemon)  # the ban survived two restarts


def test_sd_notify_ready_and_stopping(netns: Namespaces,
                                      make_daemon: Callable[..., DaemonHandle],
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Type=notify: READY=1 once the firewall and the followers are set up."""
    ns = netns.add("n")
    log = tmp_path / "auth.log"
    log.write_text("")
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(15)
    monkeypatch.setenv("NOTIFY_SOCKET", notify_path)
    daemon = make_daemon(jail_ini(log), ns=ns)
    try:
        daemon.start()
        first = listener.recv(4096).decode()
        assert first.startswith("READY=1")
        assert daemon.cli("ping").returncode == 0
        daemon.stop()
        assert listener.recv(4096).decode() == "STOPPING=1"
    finally:
        listener.close()


def test_banaction_per_jail_reaches_its_backend(netns: Namespaces,
                                                make_daemon: Callable[..., DaemonHandle],
                                                tmp_path: Path) -> None:
    """One daemon, two jails, two firewalls: nftables for sshd, blackhole routes for mail."""
    ns = netns.add("b")
    log = tmp_path / "auth.log"
    mail = tmp_path / "mail.log"
    log.write_text("")
    mail.write_text("")
    daemon = make_daemon(jail_ini(log) + (
        f"\n[postfix-sasl]\nenabled = true\nfilter = postfix[mode=auth]\nport = 25\n"
        f"logpath = {mail}\nbanaction = route\n"), ns=ns)
    daemon.start()
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["firewall"]["backend"] == "nftables+route"
    with log.open("a") as f:
        f.write(failures("192.0.2.70", 3))
    with mail.open("a") as f:
        f.write("".join(syslog_line(
            f"postfix/smtpd[{900 + i}]: warning: unknown[192.0.2.71]: SASL LOGIN "
            "authentication failed: UGFzc3dvcmQ6") for i in range(3)))
    assert wait_for(lambda: {"192.0.2.70", "192.0.2.71"} <= banned(daemon), 5)
    routes = netns.run(ns, ["ip", "route", "show", "type", "blackhole"]).stdout
    assert "192.0.2.71" in routes and "192.0.2.70" not in routes
    nft = netns.run(ns, ["nft", "list", "set", "inet", "tailban", "sshd-v4"]).stdout
    assert "192.0.2.70" in nft and "192.0.2.71" not in nft
    daemon.cli("unban", "192.0.2.71")
    assert "192.0.2.71" not in netns.run(ns, ["ip", "route", "show", "type", "blackhole"]).stdout


def test_repeat_offender_banned_longer_across_restart(netns: Namespaces,
                                                      make_daemon: Callable[..., DaemonHandle],
                                                      tmp_path: Path) -> None:
    ns = netns.add("i")
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(jail_ini(log, "maxretry = 1\nbantime.increment = true\n"), ns=ns)
    daemon.start()

    def ban_length() -> float:
        rows = json.loads(daemon.cli("banned", "--json").stdout)
        row = next(r for r in rows if r["ip"] == "192.0.2.90")
        return float(row["expires_at"] - row["banned_at"])

    lengths = []
    for round_ in range(3):
        if round_ == 2:
            daemon.stop()
            daemon.start()
        with log.open("a") as f:
            f.write(failures("192.0.2.90", 1, pid=500 + round_))
        assert wait_for(lambda: "192.0.2.90" in banned(daemon), 5)
        lengths.append(ban_length())
        daemon.cli("unban", "192.0.2.90")
    assert lengths == [600, 1200, 2400]


def test_recidive_bans_repeat_offenders_on_all_ports(netns: Namespaces,
                                                     make_daemon: Callable[..., DaemonHandle],
                                                     tmp_path: Path) -> None:
    ns = netns.add("rc")
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(jail_ini(log, "maxretry = 1\n") + (
        "\n[recidive]\nenabled = true\nfilter = recidive\nbanaction = nftables-allports\n"
        "maxretry = 2\nfindtime = 1d\nbantime = 1w\n"), ns=ns)
    daemon.start()

    def jails_of(ip: str) -> set[str]:
        rows = json.loads(daemon.cli("banned", "--json").stdout)
        return {r["jail"] for r in rows if r["ip"] == ip}

    with log.open("a") as f:
        f.write(failures("192.0.2.99", 1, pid=700))
    assert wait_for(lambda: jails_of("192.0.2.99") == {"sshd"}, 5)
    daemon.cli("unban", "192.0.2.99")
    with log.open("a") as f:
        f.write(failures("192.0.2.99", 1, pid=701))
    assert wait_for(lambda: jails_of("192.0.2.99") == {"sshd", "recidive"}, 5)
    rows = json.loads(daemon.cli("banned", "--json").stdout)
    recidive = next(r for r in rows if r["jail"] == "recidive")
    assert recidive["expires_at"] - recidive["banned_at"] == 604800
    ruleset = netns.run(ns, ["nft", "list", "table", "inet", "tailban"]).stdout
    assert "ip saddr @recidive-v4 drop" in ruleset  # every port, not only 22
    assert wait_for(lambda: "192.0.2.99" in netns.run(
        ns, ["nft", "list", "set", "inet", "tailban", "recidive-v4"]).stdout, 5)


def test_firewall_removed_behind_our_back_is_restored(netns: Namespaces,
                                                      make_daemon: Callable[..., DaemonHandle],
                                                      tmp_path: Path) -> None:
    ns = netns.add("fl")
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(jail_ini(log), ns=ns, extra_daemon="checkinterval = 1\n")
    daemon.start()
    daemon.cli("ban", "sshd", "192.0.2.123")
    netns.run(ns, ["nft", "flush", "ruleset"])

    def restored() -> bool:
        out = netns.run(ns, ["nft", "list", "set", "inet", "tailban", "sshd-v4"], check=False)
        return out.returncode == 0 and "192.0.2.123" in out.stdout

    assert wait_for(restored, 10, 0.1)
    assert "changed behind tailban's back" in daemon.log.read_text()


def test_banlist_networks_and_banprefix(netns: Namespaces,
                                        make_daemon: Callable[..., DaemonHandle],
                                        tmp_path: Path) -> None:
    ns = netns.add("bl")
    log = tmp_path / "auth.log"
    log.write_text("")
    banlist = tmp_path / "banlist.txt"
    banlist.write_text("# always blocked\n203.0.113.0/24   # a whole network\n"
                       "192.0.2.200\n2001:db8:bad::/48\n")
    daemon = make_daemon(jail_ini(log, f"banlist = {banlist}\nbanprefix6 = 64\n"), ns=ns)
    daemon.start()

    def kernel(name: str) -> str:
        return netns.run(ns, ["nft", "list", "set", "inet", "tailban", name]).stdout

    assert {"203.0.113.0/24", "192.0.2.200", "2001:db8:bad::/48"} <= banned(daemon)
    assert "203.0.113.0/24" in kernel("sshd-n4") and "2001:db8:bad::/48" in kernel("sshd-n6")
    assert "192.0.2.200" in kernel("sshd-v4")
    rows = json.loads(daemon.cli("banned", "--json").stdout)
    assert all(r["expires_at"] is None and r["source"] == "banlist" for r in rows)

    # banprefix6 = 64: three addresses of one /64 are one attacker.
    with log.open("a") as f:
        for i, host in enumerate(("2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6::3")):
            f.write(failures(host, 1, pid=800 + i))
    assert wait_for(lambda: "2001:db8:5:6::/64" in banned(daemon), 5)
    assert wait_for(lambda: "2001:db8:5:6::/64" in kernel("sshd-n6"), 5)

    # Editing the list and reloading adds and lifts exactly the changed entries.
    banlist.write_text("192.0.2.200\n198.51.100.0/25\n")
    assert daemon.cli("reload").returncode == 0
    assert wait_for(lambda: "198.51.100.0/25" in kernel("sshd-n4"), 5)
    assert "203.0.113.0/24" not in kernel("sshd-n4")
    assert "203.0.113.0/24" not in banned(daemon)
    # A bad entry refuses the reload, naming the file and line.
    banlist.write_text("192.0.2.200\nnot-an-address\n")
    result = daemon.cli("reload", check=False)
    assert result.returncode == 1 and f"{banlist}:2" in result.stderr
    # CLI bans and unbans take networks too.
    assert daemon.cli("ban", "sshd", "10.66.0.0/16").returncode == 0
    assert "10.66.0.0/16" in kernel("sshd-n4")
    assert daemon.cli("unban", "10.66.0.0/16").returncode == 0
    assert "10.66.0.0/16" not in kernel("sshd-n4")
