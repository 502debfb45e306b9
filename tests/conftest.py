"""Shared fixtures: real network namespaces, real daemons, the shared corpus.

Tests that need root, namespaces or nftables skip with a stated reason on a developer
machine, and FAIL in CI (CI=true) where the project installs everything they need.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
IN_CI = os.environ.get("CI") == "true"
_counter = itertools.count()


def require(condition: bool, reason: str) -> None:
    """Skip outside CI, fail inside it: CI has everything these tests need."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def root_tools_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs the {tool} command (scripts/test.sh installs it)"
    return None


@pytest.fixture
def needs_root() -> None:
    problem = root_tools_missing()
    require(problem is None, problem or "")


@pytest.fixture
def shared_dir() -> Path:
    require(SHARED.is_dir(), f"the shared corpus folder {SHARED} is absent")
    return SHARED


def run(argv: list[str], *, check: bool = True, timeout: float = 30,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout,
                          input=input_text)


@dataclass
class Namespaces:
    """Creates namespaces and veth links; removes them and ends their processes on exit."""

    prefix: str
    names: list[str] = field(default_factory=list)

    def add(self, label: str) -> str:
        name = f"{self.prefix}{label}"
        run(["ip", "netns", "add", name])
        self.names.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def run(self, ns: str, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return run(self.exec_argv(ns, argv), **kw)  # type: ignore[arg-type]

    def link(self, a: str, b: str, a_addrs: list[str], b_addrs: list[str]) -> None:
        """A veth pair between two namespaces with the given addresses (CIDR)."""
        ia, ib = f"v{next(_counter)}a", f"v{next(_counter)}b"
        run(["ip", "link", "add", ia, "netns", a, "type", "veth", "peer", "name", ib,
             "netns", b])
        for ns, dev, addrs in ((a, ia, a_addrs), (b, ib, b_addrs)):
            for addr in addrs:
                extra = ["nodad"] if ":" in addr else []
                run(["ip", "-n", ns, "addr", "add", addr, "dev", dev, *extra])
            run(["ip", "-n", ns, "link", "set", dev, "up"])

    def cleanup(self) -> None:
        for name in reversed(self.names):
            pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "del", name], check=False)
        self.names.clear()


@pytest.fixture
def netns(needs_root: None) -> Iterator[Namespaces]:
    spaces = Namespaces(prefix=f"tbt{os.getpid() % 10000}x{next(_counter)}")
    try:
        yield spaces
    finally:
        spaces.cleanup()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll a condition in a test (never in the daemon); True when it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class DaemonHandle:
    """A real ``tailban run`` process (optionally inside a namespace)."""

    confdir: Path
    socket: str
    ns: str | None
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def cli_argv(self, *args: str) -> list[str]:
        argv = [sys.executable, "-m", "tailban", "-c", str(self.confdir), *args]
        return ["ip", "netns", "exec", self.ns, *argv] if self.ns else argv

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.cli_argv(*args), check=check)

    def start(self, *extra: str, timeout: float = 15.0) -> None:
        logf = self.log.open("ab")
        self.process = subprocess.Popen(self.cli_argv("run", *extra), stdout=logf,
                                        stderr=subprocess.STDOUT)
        logf.close()
        ok = wait_for(lambda: self.process is not None and self.process.poll() is None
                      and self.cli("ping", check=False).returncode == 0, timeout, 0.05)
        if not ok:
            raise AssertionError(f"daemon did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self, *args: str) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.cli("stop", *args, check=False)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None


def write_config(confdir: Path, state: Path, jails: str, *, table: str = "tailban",
                 extra_daemon: str = "") -> str:
    """A private configuration: socket, pidfile and database under ``state``."""
    confdir.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    sock = str(state / "tailban.sock")
    (confdir / "tailban.conf").write_text(
        "[Definition]\n"
        f"socket = {sock}\npidfile = {state / 'tailban.pid'}\n"
        f"dbfile = {state / 'tailban.sqlite3'}\nloglevel = DEBUG\ntable = {table}\n"
        + extra_daemon)
    (confdir / "jail.conf").write_text(jails)
    return sock


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonHandle]]:
    handles: list[DaemonHandle] = []

    def factory(jails: str, ns: str | None = None, name: str = "d",
                extra_daemon: str = "") -> DaemonHandle:
        confdir = tmp_path / f"{name}-conf"
        state = tmp_path / f"{name}-state"
        sock = write_config(confdir, state, jails, extra_daemon=extra_daemon)
        handle = DaemonHandle(confdir, sock, ns, tmp_path / f"{name}.log")
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        try:
            handle.stop()
        finally:
            handle.kill()


def syslog_line(message: str, when: float | None = None, host: str = "testhost") -> str:
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime(when or time.time()))
    return f"{stamp} {host} {message}\n"


@pytest.fixture
def pg() -> Iterator[object]:
    """A private PostgreSQL server on a Unix socket, stopped and removed afterwards.

    Its folder is outside pytest's tmp_path: pytest keeps that 0700 root-only, and the
    server runs as the postgres user.
    """
    import tempfile

    from pg_server import PgServer

    server = PgServer(Path(tempfile.mkdtemp(prefix="tailban-pg-", dir="/var/tmp")))
    os.chmod(server.base, 0o755)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop("immediate")
        server.remove()
