"""The daemon side of the control socket (asyncio, root-only Unix socket)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from tailban.control.protocol import MAX_MESSAGE, ProtocolError, decode, encode, error, ok

log = logging.getLogger("tailban.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class CommandError(Exception):
    """A handler's way to answer with a clear error message."""


class ControlServer:
    """Answers requests by looking the command up in a fixed table of handlers.

    ``starting`` counts requests accepted whose handler has not started yet: reading one
    takes a few turns of the loop, and the daemon lets them go before its next chunk of a
    storm's log (each turn would otherwise wait for one), so commands answer in
    milliseconds during a storm.
    """

    def __init__(self, path: str, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self.starting = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o750, exist_ok=True)
        if os.path.exists(self.path):
            if _is_alive(self.path):
                raise RuntimeError(f"another tailban is answering on {self.path}")
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._accepted, path=self.path,
                                                           limit=MAX_MESSAGE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Counted from the accept on (a coroutine would start a turn later)."""
        self.starting += 1
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted = True
        try:
            line = await reader.readline()
            if not line:
                return
            self.starting -= 1
            counted = False
            answer = await self._answer(line)
            writer.write(encode(answer))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.debug("control connection dropped: %s", exc)
        finally:
            if counted:
                self.starting -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = decode(line)
        except ProtocolError as exc:
            return error(str(exc))
        cmd = message.get("cmd")
        args = message.get("args") or {}
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None or not isinstance(args, dict):
            return error(f"unknown command {cmd!r} (known: {', '.join(sorted(self.handlers))})")
        try:
            return ok(await handler(args))
        except CommandError as exc:
            return error(str(exc))
        except Exception as exc:  # a bug must not kill the daemon: report it
            log.exception("control command %s failed", cmd)
            return error(f"internal error: {exc}")


def _is_alive(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True
