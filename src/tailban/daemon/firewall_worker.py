"""Hands batches to the firewall backend, one transaction at a time, never dropping one.

A small change made while no transaction is in flight is applied at once, on the caller's
(the event loop's) thread, when the backend works in-process (libnftables: no program that
could hang the loop): handing it to a worker thread costs milliseconds of waiting for the
GIL, more than the change itself. Larger ones go to a worker thread, so the loop keeps
answering during a storm; while a transaction is in flight new bans accumulate in the
pending batch and go in the next one. A failing transaction is merged back and retried
with exponential backoff; the error is logged once per failure burst and shown in
``status``.

An administrator's ``ban``/``unban`` is urgent: when it finds a storm's thousands of bans
pending, its own addresses go first, in a transaction of their own, so the command answers
in milliseconds rather than after the storm. Only addresses other than the storm's are
reordered (the pending batch already holds one last word per address), so the kernel ends
in the same state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from tailban.core.events import Ban, Unban
from tailban.firewall.base import FirewallBackend, FirewallBatch, FirewallError

log = logging.getLogger("tailban.firewall")

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 30.0
INLINE_MAX = 64  # changes applied on the loop's thread (well under a millisecond with nft)


class FirewallWorker:
    """Serialises firewall changes; callers can await until their change is in the kernel."""

    def __init__(self, backend: FirewallBackend, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.clock = clock
        self.pending = FirewallBatch()
        self.last_error: str | None = None
        self.failures = 0
        self.transactions = 0
        self.applied_changes = 0
        self._requested = 0
        self._applied = 0
        self._wake = asyncio.Event()
        self._done = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_flight = False  # a transaction runs on a worker thread
        # urgent ticket -> when it came (monotonic), its addresses not yet in the kernel
        self._urgent: dict[int, tuple[float, set[tuple[str, str]]]] = {}
        self._done_early: set[int] = set()  # urgent tickets applied out of turn

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="firewall")

    def urgent_since(self, since: float) -> bool:
        """An administrator's change submitted at ``since`` (monotonic) or later is not in
        the kernel yet, and the firewall works (a failing one is retried with backoff:
        nothing would be gained by waiting for it)."""
        return self.last_error is None and any(
            at >= since for at, _ in self._urgent.values())

    @property
    def busy(self) -> bool:
        """Changes submitted and not yet in the kernel (read from other threads too)."""
        return self._requested > self._applied

    def submit(self, bans: Iterable[Ban] = (), unbans: Iterable[Unban] = (), *,
               urgent: bool = False) -> int:
        """Queue changes; returns a ticket to pass to ``wait``. ``urgent``: an
        administrator waits for these (see the module's docstring)."""
        keys: set[tuple[str, str]] = set()
        for unban in unbans:
            self.pending.unban(unban)
            keys.add((unban.jail, unban.ip))
        for ban in bans:
            self.pending.ban(ban)
            keys.add((ban.jail, ban.ip))
        self._requested += 1
        if urgent and keys:
            self._urgent[self._requested] = (time.monotonic(), keys)
        if (not self._in_flight and self.last_error is None and not self._stopping
                and self._task is not None and getattr(self.backend, "in_process", False)):
            if 0 < len(self.pending) <= INLINE_MAX:
                self._apply_now()
            elif self._urgent:
                self._apply_urgent_now()
        self._wake.set()  # the task marks it applied, or retries it
        return self._requested

    def _apply_now(self) -> None:
        """Apply the pending batch on this thread; on failure the task retries it."""
        batch, self.pending = self.pending, FirewallBatch()
        try:
            self.backend.apply(batch, self.clock())
        except Exception:  # noqa: BLE001 - whatever it is, the task's attempt reports it
            batch.merge(self.pending)
            self.pending = batch  # the task's own attempt logs and backs off
            return
        self.transactions += 1
        self.applied_changes += len(batch)
        # Nothing was in flight and the whole pending batch went in: every change asked
        # for so far is in the kernel. Marked now, so an unban's wait returns at once
        # instead of after the storm's next transaction, which the task may start first.
        self._applied = self._requested
        self._urgent.clear()

    def _take_urgent(self) -> FirewallBatch:
        """The pending changes of urgent tickets' addresses, out of the pending batch."""
        first = FirewallBatch()
        pending = self.pending
        for _, keys in self._urgent.values():
            for key in keys:
                if key in pending.unbans:
                    first.unbans[key] = pending.unbans.pop(key)
                elif key in pending.bans:
                    first.bans[key] = pending.bans.pop(key)
        return first

    def _urgent_applied(self, batch: FirewallBatch) -> None:
        """Urgent tickets whose every address is now in the kernel are done."""
        for ticket, (_, left) in list(self._urgent.items()):
            left.difference_update(batch.bans)
            left.difference_update(batch.unbans)
            if not left:
                del self._urgent[ticket]
                self._done_early.add(ticket)

    def _apply_urgent_now(self) -> None:
        """An administrator's changes ahead of a storm's pending bans, on this thread."""
        first = self._take_urgent()
        if not first:
            return
        try:
            self.backend.apply(first, self.clock())
        except Exception:  # noqa: BLE001 - back in the queue: the task retries and reports
            first.merge(self.pending)
            self.pending = first
            return
        self.transactions += 1
        self.applied_changes += len(first)
        self._urgent_applied(first)

    async def wait(self, ticket: int, timeout: float) -> bool:
        """True once every change up to ``ticket`` is in the kernel (an urgent ticket:
        once its own changes are)."""
        if self._applied >= ticket or ticket in self._done_early:
            # applied on the loop's thread as it was submitted: no turn of the loop (during
            # a storm each turn may match a chunk of the log first: 50-90 ms for an unban)
            return True
        async with self._done:
            try:
                await asyncio.wait_for(self._done.wait_for(
                    lambda: self._applied >= ticket or ticket in self._done_early), timeout)
            except TimeoutError:
                return False
        return True

    async def drain(self, timeout: float) -> bool:
        return await self.wait(self._requested, timeout)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10.0)
            except TimeoutError:
                self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _BACKOFF_FIRST
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.pending:
                if self._stopping:
                    return
                await self._mark_applied(self._requested)
                continue
            urgent = bool(self._urgent) and len(self.pending) > INLINE_MAX
            batch = self._take_urgent() if urgent else FirewallBatch()
            if not batch:
                urgent = False
                batch, self.pending = self.pending, FirewallBatch()
            ticket = self._requested
            self._in_flight = True
            try:
                if urgent and getattr(self.backend, "in_process", False):
                    # a few addresses: here, rather than waiting for the GIL on a thread
                    self.backend.apply(batch, self.clock())
                else:
                    await loop.run_in_executor(None, self.backend.apply, batch, self.clock())
            except (FirewallError, OSError) as exc:
                self._in_flight = False
                batch.merge(self.pending)
                self.pending = batch
                self.failures += 1
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                if self.last_error is None:
                    log.error("firewall change of %d addresses failed, will retry: %s",
                              len(batch), message)
                self.last_error = message
                if self._stopping:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                self._wake.set()
                continue
            self._in_flight = False
            if self.last_error is not None:
                log.warning("firewall works again; %d pending changes applied", len(batch))
            self.last_error = None
            delay = _BACKOFF_FIRST
            self.transactions += 1
            self.applied_changes += len(batch)
            if urgent:
                self._urgent_applied(batch)
                await self._mark_applied(self._applied)  # wakes the urgent waiters
            else:
                await self._mark_applied(ticket)
            if self.pending:
                self._wake.set()
            elif self._stopping:
                return

    async def _mark_applied(self, ticket: int) -> None:
        async with self._done:
            self._applied = max(self._applied, ticket)
            for done in [t for t in self._urgent if t <= self._applied]:
                del self._urgent[done]
            self._done_early = {t for t in self._done_early if t > self._applied}
            self._done.notify_all()
