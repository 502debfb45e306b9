"""The daemon side of the control socket (asyncio, root-only Unix socket)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tailban.control.protocol import (
    MAX_MESSAGE,
    ProtocolError,
    Rows,
    decode,
    encode,
    encode_batch,
    error,
    ok,
)

log = logging.getLogger("tailban.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
READ_TIMEOUT = 10.0  # seconds a client has to send its request line
ACCEPT_RETRY = 1.0  # seconds before accepting again after it failed (out of descriptors)


class CommandError(Exception):
    """A handler's way to answer with a clear error message."""


class ControlServer:
    """Answers requests by looking the command up in a fixed table of handlers.

    It knows when a client is waiting: connected and not yet accepted, or accepted and its
    request not yet read. asyncio's own server takes three turns of the loop from the
    accept to the handler, and during a storm each turn also processes a chunk of the log
    (about 30 ms): commands waited 0.1-0.3 s. So the socket is accepted here, on the turn
    it is readable, and the daemon holds its next chunk while a client waits (only for
    clients of the last moments: one that connects and says nothing is dropped after
    READ_TIMEOUT).
    """

    def __init__(self, path: str, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self._listener: socket.socket | None = None
        self._poll: select.poll | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading: dict[int, float] = {}  # request -> when it was accepted (monotonic)
        self._next = 0
        self._paused = False  # accepting failed (out of descriptors): tried again later

    @property
    def starting(self) -> int:
        """Requests accepted whose handler has not started yet."""
        return len(self._reading)

    def reading_since(self, since: float) -> bool:
        """A client connected and not yet accepted, or a request accepted at ``since``
        (monotonic) or later still being read."""
        if any(at >= since for at in self._reading.values()):
            return True
        # (not while accepting fails: the socket stays readable until it works again)
        return bool(self._poll is not None and not self._paused and self._poll.poll(0))

    async def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o750, exist_ok=True)
        if os.path.exists(self.path):
            if _is_alive(self.path):
                raise RuntimeError(f"another tailban is answering on {self.path}")
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.path)
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._poll = select.poll()
        self._poll.register(listener.fileno(), select.POLLIN)
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        self._poll = None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _accept(self) -> None:
        """Every connection waiting, accepted now; each served by a task of its own."""
        listener = self._listener
        if listener is None:
            return
        loop = asyncio.get_running_loop()
        for _ in range(128):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, ...: said, tried again in a second
                log.warning("control socket: accept failed, trying again in %g s: %s",
                            ACCEPT_RETRY, exc)
                self._paused = True
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_RETRY, self._resume, listener)
                return
            conn.setblocking(False)
            self._next += 1
            self._reading[self._next] = time.monotonic()
            task = loop.create_task(self._connected(conn, self._next))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self, listener: socket.socket) -> None:
        if self._listener is listener:
            self._paused = False
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    async def _connected(self, conn: socket.socket, request: int) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_MESSAGE)
        except OSError as exc:
            self._reading.pop(request, None)
            conn.close()
            log.debug("control connection dropped: %s", exc)
            return
        await self._serve(reader, writer, request)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     request: int = 0) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            except TimeoutError:
                log.debug("control client sent nothing in %g s: dropped", READ_TIMEOUT)
                return
            except ValueError:  # longer than MAX_MESSAGE: said, not read on
                writer.write(encode(error(f"request longer than {MAX_MESSAGE} bytes")))
                await writer.drain()
                return
            if not line:
                return
            self._reading.pop(request, None)
            answer = await self._answer(line)
            result = answer.get("result")
            if isinstance(result, Rows):
                await self._stream(writer, result)
            else:
                writer.write(encode(answer))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.debug("control connection dropped: %s", exc)
        finally:
            self._reading.pop(request, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _stream(writer: asyncio.StreamWriter, rows: Rows) -> None:
        """``{"ok":true,"result":[...]}`` written batch by batch, the loop free in between.

        A failure half-way cannot be answered any more: the connection is closed, and
        the client reports an answer that is not JSON."""
        writer.write(b'{"ok":true,"result":[')
        first = True
        try:
            for batch in rows.batches:
                if not batch:
                    continue
                writer.write(encode_batch(batch) if first else b"," + encode_batch(batch))
                first = False
                await writer.drain()
                await asyncio.sleep(0)  # the log and other commands go on between batches
        except ConnectionError:
            raise  # the client hung up: _serve notes it, nothing to report
        except Exception:
            log.exception("control answer failed half-way")
            return
        writer.write(b"]}\n")
        await writer.drain()

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
