"""End-to-end support: a server namespace S with two clients A and B, real listeners,
a real sshd logging through a real rsyslogd, TCP probes and nftables inspection.

Topology (every address lives only inside the namespaces this module creates)::

    A  10.200.1.2 fd00:200:1::2  ---veth---  10.200.1.1 fd00:200:1::1  S
    B  10.200.2.2 fd00:200:2::2  ---veth---  10.200.2.1 fd00:200:2::1  S

tailban runs in S, so its nftables table is S's and disappears with S.

sshd and rsyslogd run in S under a private mount namespace whose /dev is a fresh tmpfs
(holding only the device nodes they need, bind-mounted from the real /dev) and whose /run
is a fresh tmpfs (sshd's privilege separation directory). glibc's syslog() always writes
to /dev/log: in that mount namespace /dev/log is rsyslogd's own socket. The host's /dev,
its /dev/log (present or not) and any host syslog daemon are never touched.

Test modules use the fixtures by importing them (``from e2e_support import world_fixture``);
their names (``world``) differ from the imported functions' names on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import DaemonHandle, Namespaces, require, run, wait_for

# Addresses: S's side of each link, then the client's.
S_A4, A4, S_A6, A6 = "10.200.1.1", "10.200.1.2", "fd00:200:1::1", "fd00:200:1::2"
S_B4, B4, S_B6, B6 = "10.200.2.1", "10.200.2.2", "fd00:200:2::1", "fd00:200:2::2"

TABLE = "tailban"
WAIT = 5.0          # bound for anything that should happen "at once"
PROBE_TIMEOUT = 0.5  # a SYN over a veth is answered in well under a millisecond

SSH_CLIENT_OPTIONS = (
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
    "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=5",
)

# One TCP connection attempt; exit 0 when the server answered (accepted or refused),
# 1 when the SYN went unanswered (dropped) or the network is unreachable.
_PROBE = textwrap.dedent("""
    import socket, sys
    host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        pass
    except OSError:
        sys.exit(1)
""")

# Repeated attempts, one line each: "ok" or "blocked" (see Prober).
_PROBER = textwrap.dedent("""
    import signal, socket, sys, time
    host, port, interval, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \\
        float(sys.argv[4])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result = "ok"
        except ConnectionRefusedError:
            result = "ok"
        except OSError:
            result = "blocked"
        print(result, flush=True)
        time.sleep(interval)
""")

# Dual-stack listeners on the given TCP ports; accepted connections are closed at once.
_LISTENER = textwrap.dedent("""
    import selectors, socket, sys
    sel = selectors.DefaultSelector()
    for port in map(int, sys.argv[1:]):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(512)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            try:
                conn, _ = key.fileobj.accept()
                conn.close()
            except OSError:
                pass
""")


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str | None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else None


@dataclass
class Prober:
    """A process in a client namespace connecting every ``interval`` s; lines collected."""

    proc: subprocess.Popen[str]
    results: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.results.append(line.strip())

    @property
    def attempts(self) -> int:
        return len(self.results)

    @property
    def successes(self) -> int:
        return self.results.count("ok")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class World:
    """Namespaces S, A, B and the processes a test started in them."""

    netns: Namespaces
    tmp: Path
    s: str
    a: str
    b: str
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    # -- processes ----------------------------------------------------------------------

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    stream.close()
        self.procs.clear()

    def listen(self, *ports: int) -> None:
        """Dual-stack TCP listeners on ``ports`` in S (all addresses)."""
        proc = self.spawn(self.netns.exec_argv(self.s, [sys.executable, "-u", "-c", _LISTENER,
                                                        *map(str, ports)]),
                          stdout=subprocess.PIPE, text=True)
        if _read_line(proc, WAIT) != "ready":
            raise AssertionError(f"listener on {ports} did not start (rc {proc.poll()})")

    def prober(self, ns: str, host: str, port: int, interval: float = 0.02,
               timeout: float = 0.1) -> Prober:
        argv = self.netns.exec_argv(ns, [sys.executable, "-u", "-c", _PROBER, host, str(port),
                                         str(interval), str(timeout)])
        prober = Prober(self.spawn(argv, stdout=subprocess.PIPE, text=True))
        prober.start()
        return prober

    # -- checks -------------------------------------------------------------------------

    def reachable(self, ns: str, host: str, port: int,
                  timeout: float = PROBE_TIMEOUT) -> bool:
        """One fresh TCP connection attempt from namespace ``ns``."""
        argv = [sys.executable, "-c", _PROBE, host, str(port), str(timeout)]
        return self.netns.run(ns, argv, check=False).returncode == 0

    def nft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.netns.run(self.s, ["nft", *args], check=check)

    def table_exists(self, table: str = TABLE) -> bool:
        return self.nft("list", "table", "inet", table, check=False).returncode == 0

    def elements(self, set_name: str, table: str = TABLE) -> dict[str, dict[str, Any]]:
        """The set's elements in S: address -> {"timeout": s, "expires": s} (or {})."""
        out = self.nft("-j", "list", "set", "inet", table, set_name).stdout
        found: dict[str, dict[str, Any]] = {}
        for item in json.loads(out)["nftables"]:
            for elem in item.get("set", {}).get("elem", []):
                if isinstance(elem, dict):
                    inner = elem["elem"]
                    found[str(inner["val"])] = {k: v for k, v in inner.items() if k != "val"}
                else:
                    found[str(elem)] = {}
        return found

    def in_set(self, set_name: str, ip: str) -> bool:
        try:
            return ip in self.elements(set_name)
        except subprocess.CalledProcessError:
            return False

    def wait_banned(self, set_name: str, ip: str, timeout: float = WAIT) -> None:
        if not wait_for(lambda: self.in_set(set_name, ip), timeout, 0.05):
            raise AssertionError(f"{ip} not in {set_name} after {timeout}s:\n"
                                 + self.nft("list", "ruleset", check=False).stdout)


@pytest.fixture(name="world")
def world_fixture(netns: Namespaces, tmp_path: Path) -> Iterator[World]:
    s, a, b = netns.add("S"), netns.add("A"), netns.add("B")
    netns.link(s, a, [f"{S_A4}/24", f"{S_A6}/64"], [f"{A4}/24", f"{A6}/64"])
    netns.link(s, b, [f"{S_B4}/24", f"{S_B6}/64"], [f"{B4}/24", f"{B6}/64"])
    world = World(netns, tmp_path, s, a, b)
    try:
        yield world
    finally:
        world.close()


# -- daemon helpers -------------------------------------------------------------------


def banned(daemon: DaemonHandle) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(daemon.cli("banned", "--json").stdout)
    return rows


def banned_ips(daemon: DaemonHandle, jail: str | None = None) -> set[str]:
    return {r["ip"] for r in banned(daemon) if jail is None or r["jail"] == jail}


def jail_status(daemon: DaemonHandle, jail: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(daemon.cli("status", "--json").stdout)
    jail_info: dict[str, Any] = status["jails"][jail]
    return jail_info


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


# -- sshd + rsyslogd --------------------------------------------------------------------

# Runs in S under `unshare -m --propagation private`: builds a private /dev and /run,
# then becomes rsyslogd. $1 is the work directory, $2 the rsyslog configuration.
_PRIVATE_DEV = r"""
set -eu
work=$1
dev=$work/dev
mkdir -p "$dev"
mount -t tmpfs -o mode=0755,size=1m tailban-test-dev "$dev"
for n in null zero full random urandom tty; do
    if [ -e "/dev/$n" ]; then
        touch "$dev/$n"
        mount --bind "/dev/$n" "$dev/$n"
    fi
done
mkdir "$dev/pts"
if [ -e /dev/pts/ptmx ]; then
    mount --rbind /dev/pts "$dev/pts"
    ln -s pts/ptmx "$dev/ptmx"
fi
ln -s /proc/self/fd "$dev/fd"
mount --move "$dev" /dev
mount -t tmpfs -o mode=0755,size=1m tailban-test-run /run
mkdir -m 0755 /run/sshd
exec /usr/sbin/rsyslogd -n -f "$2" -i "$work/rsyslogd.pid"
"""


@dataclass
class SshServer:
    """Real sshd in S logging through a real rsyslogd to ``auth_log``."""

    auth_log: Path
    syslog: subprocess.Popen[bytes]
    sshd: subprocess.Popen[bytes]

    def failures(self) -> int:
        text = self.auth_log.read_text(errors="replace") if self.auth_log.exists() else ""
        return sum("Failed password" in line for line in text.splitlines())


def ssh_tools_missing() -> str | None:
    for tool in ("/usr/sbin/sshd", "/usr/sbin/rsyslogd"):
        if not os.access(tool, os.X_OK):
            return f"needs {tool} (scripts/test.sh installs openssh-server and rsyslog)"
    for tool in ("ssh", "ssh-keygen", "sshpass", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs the {tool} command (scripts/test.sh installs it)"
    return None


def _sshd_config(work: Path, addresses: list[str]) -> str:
    listen = "".join(f"ListenAddress {a if ':' not in a else f'[{a}]'}:22\n" for a in addresses)
    return (listen + f"HostKey {work / 'host_ed25519'}\n"
            f"PidFile {work / 'sshd.pid'}\n"
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication no\nAuthorizedKeysFile none\n"
            "UsePAM no\nPermitRootLogin yes\n"
            "SyslogFacility AUTH\nLogLevel INFO\n"
            "LoginGraceTime 10\nMaxStartups 100\nUseDNS no\n")


def start_sshd(world: World) -> SshServer:
    problem = ssh_tools_missing()
    require(problem is None, problem or "")
    work = world.tmp / "sshd"
    work.mkdir()
    auth_log = work / "auth.log"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tailban-test",
         "-f", str(work / "host_ed25519")])
    addresses = [S_A4, S_B4, S_A6, S_B6]
    (work / "rsyslog.conf").write_text(
        f'global(workDirectory="{work}")\n'
        'module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")\n'
        f'auth,authpriv.* action(type="omfile" file="{auth_log}" '
        'template="RSYSLOG_TraditionalFileFormat")\n')
    syslog_out = (work / "rsyslogd.out").open("wb")
    syslog = world.spawn(
        world.netns.exec_argv(world.s, ["unshare", "--mount", "--propagation", "private",
                                        "sh", "-c", _PRIVATE_DEV, "sh", str(work),
                                        str(work / "rsyslog.conf")]),
        stdout=syslog_out, stderr=subprocess.STDOUT)
    syslog_out.close()
    dev_log = Path(f"/proc/{syslog.pid}/root/dev/log")

    def socket_ready() -> bool:
        with contextlib.suppress(OSError):
            return stat.S_ISSOCK(dev_log.stat().st_mode)
        return False

    if not wait_for(socket_ready, WAIT, 0.02):
        raise AssertionError("rsyslogd did not create its /dev/log: "
                             + (work / "rsyslogd.out").read_text(errors="replace"))
    # sshd runs in rsyslogd's network and (private) mount namespace: /dev/log and /run/sshd.
    enter = ["nsenter", "-t", str(syslog.pid), "-m", "-n", "/usr/sbin/sshd"]
    config = _sshd_config(work, addresses)
    # OpenSSH >= 9.8 delays and refuses repeat offenders itself: tailban must do it here.
    probe_config = work / "probe_config"
    probe_config.write_text(config + "PerSourcePenalties no\n")
    if run([*enter, "-t", "-f", str(probe_config)], check=False).returncode == 0:
        config += "PerSourcePenalties no\n"
    (work / "sshd_config").write_text(config)
    checked = run([*enter, "-t", "-f", str(work / "sshd_config")], check=False)
    assert checked.returncode == 0, f"sshd -t: {checked.stderr}"
    sshd_out = (work / "sshd.out").open("wb")
    sshd = world.spawn([*enter, "-D", "-f", str(work / "sshd_config")],
                       stdout=sshd_out, stderr=subprocess.STDOUT)
    sshd_out.close()
    server = SshServer(auth_log, syslog, sshd)

    def listening() -> bool:
        if not auth_log.exists():
            return False
        text = auth_log.read_text(errors="replace")
        return all(f"Server listening on {a} port 22" in text for a in addresses)

    if not wait_for(listening, WAIT, 0.02):
        raise AssertionError(
            "sshd did not log 'Server listening' through rsyslogd:\n"
            f"sshd: {(work / 'sshd.out').read_text(errors='replace')}\n"
            f"rsyslogd: {(work / 'rsyslogd.out').read_text(errors='replace')}\n"
            f"auth.log: {auth_log.read_text(errors='replace') if auth_log.exists() else '-'}")
    return server


def ssh_fail(world: World, server: SshServer, ns: str, host: str) -> None:
    """One password login as root with a wrong password from namespace ``ns``; returns once
    sshd's ``Failed password`` line is in the log file."""
    before = server.failures()
    done = world.netns.run(ns, ["sshpass", "-p", "wrong-password", "ssh", *SSH_CLIENT_OPTIONS,
                                "-l", "root", host, "true"], check=False, timeout=20)
    assert done.returncode != 0, "a wrong password was accepted"
    if not wait_for(lambda: server.failures() > before, WAIT, 0.02):
        raise AssertionError(f"no 'Failed password' logged for {host} (ssh: {done.stderr})\n"
                             + server.auth_log.read_text(errors="replace"))
