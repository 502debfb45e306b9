"""The ``tailban`` command's entry point: ``unban``, ``ban`` and ``ping`` on a short path.

An administrator unbanning a locked-out colleague waits for the whole command; loading the
configuration code and argparse costs ~150 ms, ten times the round trip itself. Those three
commands in their plain forms need only the socket path, so this module reads it from
tailban.conf with a few lines of text matching, talks to the socket with the C socket
module and prints what the full CLI prints. Anything else, anything unusual (an
interpolated socket path, ``--fleet``, ``--help``, a syntax error) goes to
:func:`tailban.cli.main`, which owns the real parsing and error messages.
"""

from __future__ import annotations

import _socket
import os
import sys

from tailban.defaults import DEFAULT_CONFDIR, DEFAULT_SOCKET

TYPE_CHECKING = False  # typing itself takes 10 ms to import
if TYPE_CHECKING:
    from typing import Any

EX_UNAVAILABLE = 69
_ANSWER_LIMIT = 64 << 20


def main() -> int:
    argv = sys.argv[1:]
    code = fast(argv)
    if code is not None:
        return code
    from tailban.cli import main as full

    return full(argv)


def fast(argv: list[str]) -> int | None:
    """The exit code of a plain unban/ban/ping, or None to let the full CLI do it."""
    conf = os.environ.get("TAILBAN_CONF", DEFAULT_CONFDIR)
    sock: str | None = None
    rest = list(argv)
    while len(rest) >= 2 and rest[0] in ("-c", "--conf", "-s", "--socket"):
        if rest[0] in ("-c", "--conf"):
            conf = rest[1]
        else:
            sock = rest[1]
        rest = rest[2:]
    if not rest or any(arg.startswith("-") and arg != "--jail" for arg in rest):
        return None
    command, args = rest[0], rest[1:]
    request: dict[str, object]
    if command == "ping" and not args:
        request = {}
    elif command == "unban" and len(args) == 1:
        request = {"ip": args[0], "jail": None, "fleet": False}
    elif command == "unban" and len(args) == 3 and args[1] == "--jail":
        request = {"ip": args[0], "jail": args[2], "fleet": False}
    elif command == "ban" and len(args) == 2:
        request = {"jail": args[0], "ip": args[1], "bantime": None}
    else:
        return None
    if sock is None:
        sock = socket_path(conf)
        if sock is None:
            return None
    from tailban.control import lite_json

    try:
        data = _exchange(sock, lite_json.dumps({"cmd": command, "args": request}).encode()
                         + b"\n")
    except ConnectionError as exc:
        print(f"tailban: {exc} (is the daemon running?)", file=sys.stderr)
        return EX_UNAVAILABLE
    except (OSError, ValueError):
        return None  # odd trouble (nothing was done): the full CLI explains it
    try:
        answer = lite_json.loads(data.decode("utf-8", "surrogateescape"))
    except ValueError:
        import json  # the daemon has acted: read its answer with the real parser

        try:
            answer = json.loads(data)
        except ValueError:
            print(f"tailban: unreadable answer from the daemon: {data[:200]!r}",
                  file=sys.stderr)
            return 1
    if not isinstance(answer, dict):
        return None
    if not answer.get("ok"):
        print(f"tailban: {answer.get('error', 'unknown error')}", file=sys.stderr)
        return 1
    result: Any = answer.get("result")
    if command == "ping":
        print(result)
    elif command == "unban":
        jails = ", ".join(result["jails"]) or "no local jail"
        print(f"unbanned {result['ip']} from {jails}")
    else:
        return _print_ban(result)
    return 0


def _print_ban(result: dict[str, object]) -> int:
    import time

    expires = result["expires_at"]
    until = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))
             if isinstance(expires, int | float) else "forever")
    print(f"banned {result['ip']} in {result['jail']} until {until}")
    if not result["applied"]:
        print(f"warning: not yet in the firewall (retrying): {result['error']}")
    return 0


def _exchange(path: str, data: bytes, timeout: float = 30.0) -> bytes:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise ConnectionError(f"cannot reach tailban at {path}: {exc.strerror}") from None
        sock.sendall(data)
        parts: list[bytes] = []
        size = 0
        while True:
            part = sock.recv(65536)
            if not part:
                break
            parts.append(part)
            size += len(part)
            if part.endswith(b"\n") or size > _ANSWER_LIMIT:
                break
    finally:
        sock.close()
    if not parts:
        raise ConnectionError("the daemon closed the connection without answering")
    return b"".join(parts)


def socket_path(confdir: str) -> str | None:
    """``socket`` of ``[Definition]`` in tailban.conf, .local and tailban.d/, in fail2ban's
    reading order; None when a value needs the real reader (interpolation, unreadable)."""
    found: dict[str, str] = {}
    files = [os.path.join(confdir, "tailban.conf"), os.path.join(confdir, "tailban.local")]
    drop_in = os.path.join(confdir, "tailban.d")
    if os.path.isdir(drop_in):
        names = sorted(os.listdir(drop_in))
        files += [os.path.join(drop_in, n) for n in names if n.endswith(".conf")]
        files += [os.path.join(drop_in, n) for n in names if n.endswith(".local")]
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError):
            return None
        section = ""
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                section = stripped[1:-1].strip()
                continue
            if section not in ("Definition", "DEFAULT") or line[:1].isspace():
                continue
            key, sep, value = stripped.partition("=")
            if not sep:
                key, sep, value = stripped.partition(":")
            if sep and key.strip().lower() == "socket":
                found[section] = value.strip()
    path = found.get("Definition", found.get("DEFAULT", DEFAULT_SOCKET))
    if any(mark in path for mark in ("%(", "#", ";")) or not path.startswith("/"):
        return None
    return path
