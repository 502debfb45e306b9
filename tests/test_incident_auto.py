"""incident.auto reads the evidence off the loop, and an address is reported once even
when its bans come faster than the report is made."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from tailban.config.model import HistorySettings
from tailban.core.events import Ban, Failure
from tailban.daemon.reporting import Reporting
from tailban.notify.settings import MailSettings
from tailban.stores.sqlite import SqliteStore

if TYPE_CHECKING:
    from tailban.daemon.server import Daemon

IP = "198.51.100.23"


class Mailer:
    def __init__(self) -> None:
        self.settings = MailSettings(destination=("admin@example.org",),
                                     sender="tailban@example.org")
        self.sent: list[tuple[Any, str, tuple[str, ...]]] = []

    def send_message(self, message: Any, what: str, destination: tuple[str, ...]) -> None:
        self.sent.append((message, what, destination))


def test_an_address_is_reported_once_and_the_loop_does_not_wait(tmp_path: Path) -> None:
    now = time.time()
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(str(path))
    store.record(bans=[Ban("sshd", IP, now - 60, now + 600, 3, "line", "log")],
                 failures=[("sshd", Failure(IP, IP, now - 70 + i, "root", "failed_password",
                                            1, f"evidence {i}")) for i in range(3)])
    mailer = Mailer()
    history = HistorySettings(incident_auto=1, reporter_name="Hostmaster",
                              reporter_email="hostmaster@example.org")
    daemon = SimpleNamespace(
        config=SimpleNamespace(daemon=SimpleNamespace(history=history, dbfile=str(path))),
        enrichment=SimpleNamespace(mailer=mailer), store=store, clock=lambda: now)

    async def main() -> tuple[int, int]:
        reporting = Reporting(cast("Daemon", daemon), asyncio.get_running_loop())
        reporting.maybe_incident(IP, "abuse@example.net")
        reporting.maybe_incident(IP, "abuse@example.net")  # a second ban, at once
        queued_at_return = len(mailer.sent)  # the evidence is still being read
        for _ in range(200):
            if mailer.sent:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        reporting.maybe_incident(IP, "abuse@example.net")  # within min_interval
        await asyncio.sleep(0.05)
        return queued_at_return, len(mailer.sent)

    queued_at_return, sent = asyncio.run(main())
    rows = store.connection.execute("SELECT ip, recipient FROM incidents").fetchall()
    store.close()
    assert queued_at_return == 0 and sent == 1
    assert rows == [(IP, "abuse@example.net")]
    message, _, destination = mailer.sent[0]
    assert destination == ("abuse@example.net",) and "evidence 2" in str(message)
