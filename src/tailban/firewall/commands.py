"""Running firewall tools: argv lists (never a shell), and work inside a network namespace.

``CommandRunner`` is what the process-based backends (ipset, ip route, ipfw, pf) call: one
argv plus optional stdin per call, so a batch is one process whatever its size. Tests pass
a recording runner instead. ``NamespaceThread`` runs in-process library calls (python-iptables)
in a thread that has joined a named network namespace: ``setns(2)`` changes only the calling
thread, so the test suite never touches the host's tables.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from tailban.firewall.base import FirewallError

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000


class CommandRunner(Protocol):
    def run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        """Run argv (with stdin text); the output, or FirewallError on failure."""


class SubprocessRunner:
    """Runs argv directly (no shell); ``prefix`` e.g. ("ip", "netns", "exec", NS)."""

    def __init__(self, prefix: Sequence[str] = (), timeout: float = 60.0) -> None:
        self.prefix = tuple(prefix)
        self.timeout = timeout

    def run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        full = [*self.prefix, *argv]
        try:
            done = subprocess.run(full, input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"{argv[0]}: {exc}") from None
        if done.returncode != 0:
            raise FirewallError(f"{' '.join(argv[:3])}: "
                                f"{done.stderr.strip() or f'exit status {done.returncode}'}")
        return done.stdout


def netns_runner(netns: str | None) -> SubprocessRunner:
    """A runner for the host (None) or for the named namespace."""
    if netns is None:
        return SubprocessRunner()
    return SubprocessRunner(("ip", "netns", "exec", netns))


def tool(name: str) -> str:
    """The tool's path when found on PATH (or /usr/sbin, /sbin), else its bare name."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return name


class NamespaceThread:
    """Calls functions in one dedicated thread that joined ``/run/netns/<name>``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"netns-{name}", initializer=self._enter)
        self._entered = threading.Event()
        self._error: str | None = None

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                self._error = os.strerror(ctypes.get_errno())
        finally:
            os.close(fd)
        self._entered.set()

    def call(self, fn: Callable[[], T]) -> T:
        def guarded() -> T:
            if self._error is not None:
                raise FirewallError(f"setns({self.name}): {self._error}")
            return fn()
        return self._pool.submit(guarded).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
