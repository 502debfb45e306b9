"""The mail thread: ban mails, digests and start/stop mails, never on the ban path.

A slow or dead mail server delays only other mails. A failed send is retried with backoff
(5 attempts over about ten minutes) and then dropped with an error in the log and in
``status``, so a permanently broken relay cannot grow memory without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.message import EmailMessage
from typing import Any

from tailban.notify.digest import MailDigest
from tailban.notify.mail import (
    BanMailFacts,
    MailError,
    MailSender,
    MailSettings,
    ban_message,
    digest_message,
)

log = logging.getLogger("tailban.mail")

RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0)
MAX_QUEUED = 20_000  # facts waiting; beyond this a storm is summarised by the digest only


@dataclass(slots=True)
class _Outgoing:
    message: EmailMessage
    what: str
    attempt: int = 0
    not_before: float = 0.0
    destination: tuple[str, ...] = ()  # empty: [mail] destination


class MailWorker:
    def __init__(self, settings: MailSettings, *, sender: MailSender | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.sender = sender or MailSender(settings)
        self.clock = clock
        self.digest = MailDigest(settings.digest)
        self._facts: deque[BanMailFacts] = deque()
        self._messages: deque[_Outgoing] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mail", daemon=True)
        self._thread.start()

    def submit(self, facts: list[BanMailFacts]) -> None:
        with self._cond:
            room = MAX_QUEUED - len(self._facts)
            self._facts.extend(facts[:max(0, room)])
            self.dropped += max(0, len(facts) - max(0, room))
            self._cond.notify()

    def send_message(self, message: EmailMessage, what: str,
                     destination: tuple[str, ...] = ()) -> None:
        """Queue a finished message; ``destination`` overrides [mail] destination (an
        incident goes to the abuse desk, not to the administrators)."""
        with self._cond:
            self._messages.append(_Outgoing(message, what, destination=destination))
            self._cond.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is collected (digest included) within ``timeout``, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "queued": len(self._facts) + len(self._messages) + self.digest.pending,
                "last_error": self.last_error}

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._facts or self._ready_message() or self._stopping):
                    self._cond.wait(timeout=self._next_wake())
                    if self._digest_due():
                        break
                facts = list(self._facts)
                self._facts.clear()
                stopping = self._stopping
            now = self.clock()
            for fact in facts:
                for batch in self.digest.add(fact, now):
                    self._queue_batch(batch.facts, batch.start, batch.end)
            for batch in (self.digest.flush(now) if stopping else self.digest.due(now)):
                self._queue_batch(batch.facts, batch.start, batch.end)
            self._send_ready(stopping)
            if stopping:
                return

    def _queue_batch(self, facts: tuple[BanMailFacts, ...], start: float, end: float) -> None:
        if len(facts) == 1 and self.settings.digest == 0:
            message = ban_message(self.settings, facts[0])
            what = f"ban mail for {facts[0].ip}"
        else:
            message = digest_message(self.settings, facts, start, end)
            what = f"digest of {len(facts)} bans"
        self._messages.append(_Outgoing(message, what))

    def _ready_message(self) -> bool:
        return bool(self._messages) and self._messages[0].not_before <= self.clock()

    def _digest_due(self) -> bool:
        due = self.digest.next_due()
        return due is not None and due <= self.clock()

    def _next_wake(self) -> float | None:
        times = [t for t in (self.digest.next_due(),
                             self._messages[0].not_before if self._messages else None)
                 if t is not None]
        return max(0.01, min(times) - self.clock()) if times else None

    def _send_ready(self, stopping: bool) -> None:
        while self._messages:
            item = self._messages[0]
            if item.not_before > self.clock() and not stopping:
                return
            self._messages.popleft()
            try:
                sender = self.sender if not item.destination else MailSender(
                    replace(self.settings, destination=item.destination))
                sender.send(item.message)
                self.sent += 1
                self.last_error = None
            except MailError as exc:
                self.failed += 1
                self.last_error = str(exc)
                if item.attempt < len(RETRY_DELAYS) and not stopping:
                    item.not_before = self.clock() + RETRY_DELAYS[item.attempt]
                    item.attempt += 1
                    self._messages.append(item)
                    log.warning("mail: %s not sent (attempt %d, retrying in %.0f s): %s",
                                item.what, item.attempt, RETRY_DELAYS[item.attempt - 1], exc)
                    return
                log.error("mail: %s dropped after %d attempts: %s", item.what,
                          item.attempt + 1, exc)
