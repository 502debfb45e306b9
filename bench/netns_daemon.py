"""``tailban run`` in a network namespace of its own, for the benchmark scripts.

The namespace has its own nftables, so the daemon's firewall is never the host's; it and
the daemon are removed when the ``with`` block ends, also on an error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass
class NetnsDaemon:
    ns: str
    cli: list[str]  # the installed command (or python -m tailban) with -c CONF
    proc: subprocess.Popen[bytes]
    started: float  # time.monotonic() just before the start

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``tailban ARGS`` (or, with ``nft`` first, that program) inside the namespace."""
        argv = list(args) if args and args[0] == "nft" else [*self.cli, *args]
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], capture_output=True,
                              text=True)


@contextmanager
def daemon_in_netns(conf: Path, prefix: str, output: Path | None = None
                    ) -> Iterator[NetnsDaemon]:
    """Start ``tailban -c CONF run`` in a new namespace; stop both at the end."""
    ns = f"{prefix}{os.getpid() % 10000}"
    script = Path(sys.prefix) / "bin" / "tailban"
    cli = ([str(script)] if script.exists() else [sys.executable, "-m", "tailban"]) + [
        "-c", str(conf)]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    out: IO[bytes] | int = output.open("wb") if output is not None else subprocess.DEVNULL
    proc = None
    try:
        started = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cli, "run"], stdout=out,
                                stderr=out)
        yield NetnsDaemon(ns, cli, proc, started)
    finally:
        if proc is not None:
            subprocess.run(["ip", "netns", "exec", ns, *cli, "stop"], capture_output=True)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if not isinstance(out, int):
            out.close()
