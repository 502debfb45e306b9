"""The CLI side of the control socket: connect, send one request, read one answer."""

from __future__ import annotations

import socket
from typing import Any

from tailban.control.protocol import MAX_ANSWER, ProtocolError, decode, encode, request


class DaemonUnavailable(Exception):
    """No daemon answers on the socket."""


class CommandFailed(Exception):
    """The daemon answered with an error."""


def call(socket_path: str, cmd: str, timeout: float = 30.0, **args: Any) -> Any:
    """Send ``cmd`` and return its result, or raise DaemonUnavailable / CommandFailed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(socket_path)
        except OSError as exc:
            raise DaemonUnavailable(f"cannot reach tailban at {socket_path}: {exc.strerror}") \
                from None
        sock.sendall(encode(request(cmd, **args)))
        buf = bytearray()
        while not buf.endswith(b"\n"):
            part = sock.recv(65536)
            if not part:
                break
            buf += part
            if len(buf) > MAX_ANSWER:
                raise ProtocolError("answer too large")
    except TimeoutError:
        raise CommandFailed(f"no answer within {timeout:g}s") from None
    finally:
        sock.close()
    if not buf:
        raise DaemonUnavailable("the daemon closed the connection without answering")
    answer = decode(bytes(buf), MAX_ANSWER)
    if not answer.get("ok"):
        raise CommandFailed(str(answer.get("error", "unknown error")))
    return answer.get("result")
