"""Run nftables scripts in-process through libnftables, or through ``nft -f -``.

libnftables avoids a process spawn per transaction (about 2 ms each); the ``nft`` binary is
the fallback where the library is missing. Either way one call is one atomic transaction.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import threading
from typing import Protocol

from tailban.firewall.base import FirewallError

_OUTPUT_JSON = 1 << 4


class NftRunner(Protocol):
    kind: str

    def run(self, script: str, json_output: bool = False) -> str: ...


class LibNftablesRunner:
    """ctypes binding to libnftables.so.1; one context per output format, one lock."""

    kind = "libnftables"

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        lib = ctypes.CDLL(name, use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        self._lib = lib
        self._lock = threading.Lock()
        self._plain = self._context(0)
        self._json = self._context(_OUTPUT_JSON)

    def _context(self, flags: int) -> int:
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        self._lib.nft_ctx_output_set_flags(ctx, flags)
        return int(ctx)

    def run(self, script: str, json_output: bool = False) -> str:
        ctx = self._json if json_output else self._plain
        with self._lock:
            rc = self._lib.nft_run_cmd_from_buffer(ctx, script.encode())
            out = self._lib.nft_ctx_get_output_buffer(ctx) or b""
            err = self._lib.nft_ctx_get_error_buffer(ctx) or b""
        if rc != 0:
            raise FirewallError(err.decode(errors="replace").strip() or f"libnftables rc={rc}")
        return out.decode(errors="replace")


class NftCommandRunner:
    """``nft -f -``: one process per transaction, never one per ban."""

    kind = "nft-command"

    def __init__(self, binary: str | None = None, prefix: tuple[str, ...] = ()) -> None:
        self.binary = binary or shutil.which("nft") or "/usr/sbin/nft"
        self.prefix = prefix  # e.g. ("ip", "netns", "exec", NS): run inside a namespace

    def run(self, script: str, json_output: bool = False) -> str:
        if json_output:
            # `nft -j -f -` prints nothing for list commands: pass the one command as argv.
            argv = [*self.prefix, self.binary, "-j", *script.split()]
            stdin = None
        else:
            argv = [*self.prefix, self.binary, "-f", "-"]
            stdin = script
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"{self.binary}: {exc}") from None
        if done.returncode != 0:
            raise FirewallError(done.stderr.strip() or f"nft exited {done.returncode}")
        return done.stdout


def default_runner() -> NftRunner:
    """libnftables when loadable (``TAILBAN_NFT=command`` forces the binary)."""
    if os.environ.get("TAILBAN_NFT", "") != "command":
        try:
            return LibNftablesRunner()
        except (OSError, AttributeError):
            pass
    return NftCommandRunner()
