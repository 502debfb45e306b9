"""One JSON object per line each way: ``{"cmd": ..., "args": {...}}`` -> ``{"ok": ...}``.

Requests name a command from a fixed table; arguments are typed and checked by the
handler. No string parsing of commands, no eval, no shell.
"""

from __future__ import annotations

import json
from typing import Any

MAX_MESSAGE = 1 << 20


class ProtocolError(Exception):
    """A malformed request or response."""


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_MESSAGE:
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
