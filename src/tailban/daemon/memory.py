"""Give freed memory back to the system after a storm.

A storm allocates tens of MiB of short-lived objects (lines, failures, history rows)
between the bans that stay; CPython frees them, but glibc keeps the pages mapped, so the
daemon's RSS would stay at the storm's peak. ``malloc_trim`` returns what is free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

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
