"""The ``tailban`` entry point's short path for unban/ban/ping (issue 6: unban <= 30 ms).

Against the real control server (asyncio, Unix socket) with handlers that record what
they were asked; the daemon-level unban (kernel included) is covered by the e2e tests,
which run the CLI through this entry point too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailban.control.server import CommandError, ControlServer
from tailban.quick import fast, socket_path

REPO = Path(__file__).resolve().parents[1]


class Server:
    def __init__(self, path: str) -> None:
        self.path = path
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def handlers(self) -> dict[str, Any]:
        async def unban(args: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(("unban", args))
            if args["ip"] == "bad":
                raise CommandError("not an address: 'bad'")
            return {"ip": args["ip"], "jails": ["sshd"] if args["jail"] is None else
                    [args["jail"]], "fleet": False}

        async def ban(args: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(("ban", args))
            return {"ip": args["ip"], "jail": args["jail"], "expires_at": None,
                    "applied": True, "error": None}

        async def ping(args: dict[str, Any]) -> str:
            self.calls.append(("ping", args))
            return "pong"

        return {"unban": unban, "ban": ban, "ping": ping}

    def __enter__(self) -> Server:
        self.thread.start()
        self.control = ControlServer(self.path, self.handlers())
        asyncio.run_coroutine_threadsafe(self.control.start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.control.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def conf(tmp_path: Path) -> Iterator[tuple[Path, Server]]:
    sock = str(tmp_path / "t.sock")
    (tmp_path / "tailban.conf").write_text(f"[Definition]\nsocket = {sock}\n")
    with Server(sock) as server:
        yield tmp_path, server


def test_unban_ban_ping_reach_the_daemon(conf: tuple[Path, Server],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    confdir, server = conf
    c = ["-c", str(confdir)]
    assert fast([*c, "unban", "203.0.113.5"]) == 0
    assert fast([*c, "unban", "203.0.113.6", "--jail", "web"]) == 0
    assert fast([*c, "ban", "sshd", "203.0.113.7"]) == 0
    assert fast([*c, "ping"]) == 0
    assert fast([*c, "unban", "bad"]) == 1
    assert server.calls == [
        ("unban", {"ip": "203.0.113.5", "jail": None, "fleet": False}),
        ("unban", {"ip": "203.0.113.6", "jail": "web", "fleet": False}),
        ("ban", {"jail": "sshd", "ip": "203.0.113.7", "bantime": None}),
        ("ping", {}), ("unban", {"ip": "bad", "jail": None, "fleet": False})]
    out, err = capsys.readouterr()
    assert out.splitlines() == ["unbanned 203.0.113.5 from sshd", "unbanned 203.0.113.6 from web",
                                "banned 203.0.113.7 in sshd until forever", "pong"]
    assert err == "tailban: not an address: 'bad'\n"


@pytest.mark.parametrize("argv", [["unban", "1.2.3.4", "--fleet"], ["status"], ["--help"],
                                  ["unban"], ["unban", "1.2.3.4", "--jail"], ["ban", "sshd"],
                                  ["banned", "--json"], ["unban", "-h"]])
def test_other_forms_go_to_the_full_cli(conf: tuple[Path, Server], argv: list[str]) -> None:
    confdir, server = conf
    assert fast(["-c", str(confdir), *argv]) is None
    assert server.calls == []


def test_no_daemon_is_exit_69(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tailban.conf").write_text(f"[Definition]\nsocket = {tmp_path}/none.sock\n")
    assert fast(["-c", str(tmp_path), "unban", "203.0.113.5"]) == 69
    assert "is the daemon running?" in capsys.readouterr().err


def test_socket_path_follows_the_reading_order(tmp_path: Path) -> None:
    assert socket_path(str(tmp_path)) == "/run/tailban/tailban.sock"
    (tmp_path / "tailban.conf").write_text("[Definition]\nsocket = /a.sock\npidfile = /x\n")
    assert socket_path(str(tmp_path)) == "/a.sock"
    (tmp_path / "tailban.local").write_text("[Definition]\nsocket: /b.sock\n")
    assert socket_path(str(tmp_path)) == "/b.sock"
    (tmp_path / "tailban.d").mkdir()
    (tmp_path / "tailban.d" / "z.conf").write_text("[Definition]\nsocket = /c.sock\n")
    assert socket_path(str(tmp_path)) == "/c.sock"
    (tmp_path / "tailban.d" / "a.local").write_text("[Other]\nsocket = /nope.sock\n")
    assert socket_path(str(tmp_path)) == "/c.sock"
    # what only the real reader can tell: left to it
    (tmp_path / "tailban.d" / "b.local").write_text("[Definition]\nsocket = %(run)s/t.sock\n")
    assert socket_path(str(tmp_path)) is None
    (tmp_path / "tailban.d" / "b.local").write_text("[Definition]\nsocket = /d.sock ; x\n")
    assert socket_path(str(tmp_path)) is None


def test_entry_point_imports_no_configuration_code(conf: tuple[Path, Server]) -> None:
    confdir, _ = conf
    code = ("import sys; from tailban.quick import fast; "
            f"rc = fast(['-c', {str(confdir)!r}, 'unban', '203.0.113.9']); "
            "heavy = [m for m in ('tailban.config.load', 'argparse', 'typing', 'socket', "
            "'json', 're', 'enum') "
            "if m in sys.modules]; print(rc, heavy)")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, cwd=REPO).stdout
    assert out.splitlines()[-1] == "0 []"


def test_the_command_script_imports_neither_re_nor_json(conf: tuple[Path, Server]) -> None:
    # bin/tailban is what pip installs as the command (script-files, not a generated wrapper)
    confdir, server = conf
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "bin" / "tailban"),
                           "-c", str(confdir), "unban", "203.0.113.7"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "unbanned 203.0.113.7 from sshd\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "tailban.quick" in imported
    assert not imported & {"re", "json", "enum", "argparse", "tailban.cli"}
    assert ("unban", {"ip": "203.0.113.7", "jail": None, "fleet": False}) in server.calls
