"""The control server counts requests on their way to a handler (the daemon lets them go
ahead of a storm's next chunk), and the count always comes back to zero."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tailban.control import server as server_module
from tailban.control.server import ControlServer


def test_requests_being_read_are_counted_until_their_handler_starts(tmp_path: Path) -> None:
    seen: list[int] = []

    async def main() -> None:
        server: ControlServer

        async def ping(args: dict[str, Any]) -> str:
            seen.append(server.starting)
            return "pong"

        server = ControlServer(str(tmp_path / "t.sock"), {"ping": ping})
        await server.start()
        try:
            # a client that connects and says nothing yet is counted from the accept on
            reader, writer = await asyncio.open_unix_connection(server.path)
            for _ in range(20):
                if server.starting:
                    break
                await asyncio.sleep(0.01)
            assert server.starting == 1
            writer.write(json.dumps({"cmd": "ping"}).encode() + b"\n")
            await writer.drain()
            answer = json.loads(await reader.readline())
            assert answer["result"] == "pong" and seen == [0]
            writer.close()
            # one that hangs up without a word is forgotten too
            _, silent = await asyncio.open_unix_connection(server.path)
            await asyncio.sleep(0.05)
            assert server.starting == 1
            silent.close()
            for _ in range(50):
                if not server.starting:
                    break
                await asyncio.sleep(0.01)
            assert server.starting == 0
        finally:
            await server.stop()

    asyncio.run(main())


def test_a_silent_client_holds_nothing_for_long(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "READ_TIMEOUT", 0.2)

    async def main() -> None:
        async def ping(args: dict[str, Any]) -> str:
            return "pong"

        server = ControlServer(str(tmp_path / "t.sock"), {"ping": ping})
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(server.path)
            await asyncio.sleep(0.05)
            now = time.monotonic()
            # the daemon asks whether a request of its last moments is being read
            assert server.reading_since(now - 1.0) and not server.reading_since(now + 1.0)
            assert await reader.read() == b""  # dropped after READ_TIMEOUT, unanswered
            assert server.starting == 0 and not server.reading_since(0.0)
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())


def test_an_answer_larger_than_a_request_may_be_reaches_the_client(tmp_path: Path) -> None:
    """``banned`` over 100,000 bans answers with tens of MB; a request stays capped."""
    from tailban.control.client import CommandFailed, call
    from tailban.control.protocol import MAX_MESSAGE

    rows = [{"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "line": "x" * 60}
            for i in range(40_000)]

    async def main() -> None:
        async def banned(args: dict[str, Any]) -> list[dict[str, str]]:
            return rows

        server = ControlServer(str(tmp_path / "t.sock"), {"banned": banned})
        await server.start()
        try:
            got = await asyncio.to_thread(call, server.path, "banned")
            assert len(json.dumps(got)) > 3 * MAX_MESSAGE and got == rows
            with pytest.raises(CommandFailed, match="request longer than"):
                await asyncio.to_thread(call, server.path, "banned", pad="y" * MAX_MESSAGE)
        finally:
            await server.stop()

    asyncio.run(main())


def test_a_waiting_client_is_seen_before_the_loop_turns(tmp_path: Path) -> None:
    """During a storm each turn of the loop also matches a chunk of the log (~30 ms), so
    the daemon must see a client before the turns asyncio's own server needed."""
    import socket

    async def main() -> None:
        async def ping(args: dict[str, Any]) -> str:
            return "pong"

        server = ControlServer(str(tmp_path / "t.sock"), {"ping": ping})
        await server.start()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            now = time.monotonic()
            assert not server.reading_since(now - 1.0)
            client.connect(server.path)  # the loop has not turned since
            assert server.reading_since(now - 1.0) and server.starting == 0
            for _ in range(2):  # the turn it is seen in, then its own: accepted
                await asyncio.sleep(0)
            assert server.starting == 1 and server.reading_since(now - 1.0)
            client.sendall(b'{"cmd":"ping"}\n')
            answer = await asyncio.to_thread(client.recv, 1000)
            assert json.loads(answer)["result"] == "pong"
            assert server.starting == 0 and not server.reading_since(now - 1.0)
        finally:
            client.close()
            await server.stop()

    asyncio.run(main())


def test_accepting_that_fails_neither_spins_nor_holds_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of descriptors, the socket stays readable: accepting waits ACCEPT_RETRY, and
    meanwhile a client waiting there does not hold the log back."""
    import errno
    import socket

    monkeypatch.setattr(server_module, "ACCEPT_RETRY", 0.1)

    class FailingOnce:
        def __init__(self, real: socket.socket) -> None:
            self.real = real
            self.calls = 0

        def fileno(self) -> int:
            return self.real.fileno()

        def accept(self) -> tuple[socket.socket, Any]:
            self.calls += 1
            if self.calls == 1:
                raise OSError(errno.EMFILE, "Too many open files")
            return self.real.accept()

        def close(self) -> None:
            self.real.close()

    async def main() -> tuple[bool, int, str]:
        async def ping(args: dict[str, Any]) -> str:
            return "pong"

        server = ControlServer(str(tmp_path / "t.sock"), {"ping": ping})
        await server.start()
        failing = FailingOnce(server._listener)  # type: ignore[arg-type]
        server._listener = failing  # type: ignore[assignment]
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(server.path)
            client.sendall(b'{"cmd":"ping"}\n')
            await asyncio.sleep(0.03)  # the accept failed; no retry yet
            held = server.reading_since(0.0)
            calls = failing.calls
            answer = await asyncio.wait_for(asyncio.to_thread(client.recv, 1000), 5.0)
            return held, calls, json.loads(answer)["result"]
        finally:
            client.close()
            await server.stop()

    held, calls, result = asyncio.run(main())
    assert not held and calls == 1 and result == "pong"
