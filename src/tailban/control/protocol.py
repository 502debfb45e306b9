"""One JSON object per line each way: ``{"cmd": ..., "args": {...}}`` -> ``{"ok": ...}``.

Requests name a command from a fixed table; arguments are typed and checked by the
handler. No string parsing of commands, no eval, no shell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 1 << 20  # a request: what a client may make the daemon read
# An answer: the daemon is trusted, and ``banned`` over 100,000 bans is about 40 MB.
MAX_ANSWER = 1 << 30


class ProtocolError(Exception):
    """A malformed request or response."""


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


@dataclass(frozen=True)
class Rows:
    """A list result sent as it is made, batch by batch: ``banned`` over 100,000 bans
    is about 40 MB of JSON, which the daemon should neither build at once nor spend a
    turn of its loop on. ``batches`` yields lists of JSON-ready rows."""

    batches: Iterable[list[Any]]


def encode_batch(rows: list[Any]) -> bytes:
    """Rows as the inside of a JSON array (no brackets)."""
    return encode(rows)[1:-2]


def decode(line: bytes, limit: int = MAX_MESSAGE) -> dict[str, Any]:
    if len(line) > limit:
        raise ProtocolError("message too large")
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a message is a JSON object")
    return obj


def request(cmd: str, **args: Any) -> dict[str, Any]:
    return {"cmd": cmd, "args": args}


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}
