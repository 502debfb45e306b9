"""Give freed memory back to the system after a storm; keep OpenSSL out of asyncio.

A storm allocates tens of MiB of short-lived objects (lines, failures, history rows)
between the bans that stay; CPython frees them, but glibc keeps the pages mapped, so the
daemon's RSS would stay at the storm's peak. ``malloc_trim`` returns what is free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
    _trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc (musl, BSD): nothing to do
    log.debug("malloc_trim is not available")


def release_free_memory() -> bool:
    """True when the C library could be asked to return free pages."""
    if _trim is None:
        return False
    _trim(0)
    return True


def import_asyncio_without_ssl() -> None:
    """Import asyncio without the ssl module it loads for TLS transports.

    ``ssl`` maps OpenSSL and builds its tables: about 1.5 MiB of an idle daemon's RSS (4.5
    MiB where nothing else loads libcrypto). The daemon opens no TLS connection through
    asyncio (its sockets are local; mail goes through smtplib, which imports ssl itself
    when it is used, after this), so asyncio is imported with ``import ssl`` failing, as on
    a Python built without OpenSSL. Does nothing once asyncio or ssl is imported. For the
    daemon's process only (``tailban run``/``start``), before anything imports asyncio.
    """
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # "import ssl" raises ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]
