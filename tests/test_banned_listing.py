"""``banned`` is made and sent in batches (100,000 bans are ~40 MB of JSON): every ban
arrives once, in order, with its log line and facts, whatever the batch size."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from tailban.bans.ledger import BanLedger
from tailban.control.client import call
from tailban.control.server import ControlServer
from tailban.core.events import Ban
from tailban.daemon import commands as commands_module
from tailban.daemon.commands import ControlCommands
from tailban.enrich.facts import Enrichment
from tailban.stores.sqlite import SqliteStore

if TYPE_CHECKING:
    from tailban.daemon.server import Daemon

NOW = 1_790_000_000.0


def test_banned_arrives_whole_across_batches(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands_module, "BANNED_BATCH", 3)
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    bans = [Ban(jail, f"198.51.100.{i}", NOW - 100 + i, NOW + 600, 3,
                f"line of {jail} {i}", "log")
            for jail in ("sshd", "postfix") for i in range(1, 8)]
    store.record(bans=bans)
    facts = Enrichment("198.51.100.2", NOW, country_iso="JP")
    store.save_enrichment("198.51.100.2", NOW, facts.to_json(), country="JP")
    ledger = BanLedger(reversed(bans))
    daemon = SimpleNamespace(ledger=ledger, store=store, clock=lambda: NOW,
                             jails={"sshd": None, "postfix": None})
    handlers = ControlCommands(cast("Daemon", daemon)).handlers()

    async def main() -> tuple[Any, Any]:
        server = ControlServer(str(tmp_path / "t.sock"), handlers)
        await server.start()
        try:
            every = await asyncio.to_thread(call, server.path, "banned")
            only = await asyncio.to_thread(call, server.path, "banned", jail="sshd")
            return every, only
        finally:
            await server.stop()

    every, only = asyncio.run(main())
    store.close()
    expected = sorted(bans, key=lambda b: (b.jail, b.banned_at))
    assert [(r["jail"], r["ip"], r["line"]) for r in every] == [
        (b.jail, b.ip, b.line) for b in expected]
    assert [r["ip"] for r in only] == [b.ip for b in expected if b.jail == "sshd"]
    assert {r["ip"]: r["country"] for r in only}["198.51.100.2"] == "JP"
    assert all(r["remaining"] == pytest.approx(600) for r in every)
