"""A private PostgreSQL server for the fleet tests: initdb in a temporary folder.

Listens only on a Unix socket in that folder (no TCP port to collide with anything), so
daemons in other network namespaces reach it through the shared filesystem. As root the
server runs as the ``postgres`` user (PostgreSQL refuses root); it is stopped by the
fixture, by its own pid if ``pg_ctl stop`` fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from conftest import require


def pg_bindir() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


class PgServer:
    """``base`` must be reachable by the postgres user (not under pytest's 0700 tmp)."""

    def __init__(self, base: Path) -> None:
        bindir = pg_bindir()
        require(bindir is not None, "PostgreSQL server binaries (initdb) are not installed "
                "(scripts/test.sh installs the postgresql package)")
        assert bindir is not None
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.sockdir = base / "sock"
        self.port = 5432
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._owner = pwd.getpwnam(self.user) if os.geteuid() == 0 else None

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv] if self._owner else argv

    def _run(self, argv: list[str], timeout: float = 60) -> None:
        result = subprocess.run(self._as_owner(argv), capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}")

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(exist_ok=True)
        if self._owner:
            for folder in (self.base, self.sockdir):
                os.chown(folder, self._owner.pw_uid, self._owner.pw_gid)
            os.chmod(self.sockdir, 0o777)
        self._run([f"{self.bindir}/initdb", "-D", str(self.data), "-A", "trust", "-U",
                   "postgres", "--no-sync", "-E", "UTF8"])

    def start(self) -> None:
        opts = (f"-c listen_addresses='' -c unix_socket_directories={self.sockdir} "
                f"-p {self.port} -c fsync=off -c max_connections=200")
        self._run([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-t", "30",
                   "-l", str(self.base / "server.log"), "start"])

    def stop(self, mode: str = "fast") -> None:
        try:
            self._run([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                       "stop"], timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@/{database}?host={self.sockdir}&port={self.port}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [f"{self.bindir}/psql", "-h", str(self.sockdir), "-p", str(self.port), "-U",
             "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout
