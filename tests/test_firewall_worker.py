"""Where the firewall worker applies a batch: at once on the loop's thread, or on a worker.

The backend here only records which thread applied which addresses: what is under test is
the worker's choice and its retry, not a firewall (the backends have their own tests
against real nftables/iptables in network namespaces).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from tailban.core.events import Ban, Unban
from tailban.daemon.firewall_worker import INLINE_MAX, FirewallWorker
from tailban.firewall.base import FirewallBatch, FirewallError


class Recorder:
    name = "recorder"

    def __init__(self, in_process: bool, fail_first: int = 0) -> None:
        self.in_process = in_process
        self.fail_first = fail_first
        self.applied: list[tuple[str, list[str]]] = []  # (thread name, addresses)

    def apply(self, batch: FirewallBatch, now: float) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise FirewallError("kernel says no")
        self.applied.append((threading.current_thread().name,
                             sorted(ip for _, ip in batch.bans)))


def _bans(n: int, start: int = 1) -> Sequence[Ban]:
    return [Ban("sshd", f"192.0.2.{i}" if i < 255 else f"198.51.{i // 250}.{i % 250}",
                1.0, None) for i in range(start, start + n)]


def _run(backend: Recorder, batches: list[int]) -> tuple[FirewallWorker, list[bool]]:
    inline: list[bool] = []

    async def main() -> FirewallWorker:
        worker = FirewallWorker(backend, clock=lambda: 1.0)  # type: ignore[arg-type]
        worker.start()
        start = 1
        for size in batches:
            before = len(backend.applied)
            ticket = worker.submit(_bans(size, start))
            inline.append(len(backend.applied) > before)  # applied inside submit
            start += size
            assert await worker.wait(ticket, 5.0)
        await worker.stop()
        return worker

    return asyncio.run(main()), inline


def test_small_batches_go_in_at_once_on_the_loops_thread() -> None:
    backend = Recorder(in_process=True)
    worker, inline = _run(backend, [1, 3, INLINE_MAX])
    assert inline == [True, True, True]
    assert {thread for thread, _ in backend.applied} == {threading.main_thread().name}
    assert worker.applied_changes == 1 + 3 + INLINE_MAX


def test_a_storm_batch_goes_to_a_worker_thread() -> None:
    backend = Recorder(in_process=True)
    _, inline = _run(backend, [INLINE_MAX + 1])
    assert inline == [False]
    [(thread, ips)] = backend.applied
    assert thread != threading.main_thread().name and len(ips) == INLINE_MAX + 1


def test_a_backend_running_programs_never_blocks_the_loop() -> None:
    backend = Recorder(in_process=False)
    _, inline = _run(backend, [1])
    assert inline == [False]
    assert backend.applied[0][0] != threading.main_thread().name


def test_a_failed_change_at_once_is_retried_and_reported() -> None:
    backend = Recorder(in_process=True, fail_first=2)
    worker, inline = _run(backend, [2])
    assert inline == [False]  # the attempt inside submit failed: nothing applied there
    assert backend.applied == [(backend.applied[0][0], ["192.0.2.1", "192.0.2.2"])]
    assert worker.failures == 1  # the task's own attempt failed once, then landed
    assert worker.last_error is None


class GatedRecorder(Recorder):
    """Records bans and unbans in order; the n-th apply on a worker thread waits for
    ``gates[n]`` (an apply on the loop's thread never waits)."""

    def __init__(self, gates: int = 1) -> None:
        super().__init__(in_process=True)
        self.gates = [threading.Event() for _ in range(gates)]
        self.gate = self.gates[0]
        self._threaded = 0
        self.log: list[tuple[list[str], list[str]]] = []  # (banned, unbanned) per apply

    def apply(self, batch: FirewallBatch, now: float) -> None:
        if threading.current_thread() is not threading.main_thread():
            gate = self.gates[min(self._threaded, len(self.gates) - 1)]
            self._threaded += 1
            assert gate.wait(5)
        self.log.append((sorted(ip for _, ip in batch.bans), sorted(ip for _, ip in batch.unbans)))


def _unban(ip: str) -> Unban:
    return Unban("sshd", ip, 2.0, "manual")


def test_an_administrators_unban_goes_ahead_of_a_storms_pending_bans() -> None:
    backend = GatedRecorder(gates=2)
    storm, more = _bans(INLINE_MAX + 36), _bans(200, start=300)

    async def main() -> tuple[int, FirewallWorker]:
        worker = FirewallWorker(backend, clock=lambda: 1.0)  # type: ignore[arg-type]
        worker.start()
        worker.submit(storm)  # too big to apply at once: the worker thread takes it
        await asyncio.sleep(0.05)  # ... and waits at the gate: a transaction in flight
        worker.submit(more)
        # the storm also banned this address; the administrator lifts it
        worker.submit([Ban("sshd", "203.0.113.9", 1.0, None)])
        ticket = worker.submit(unbans=[_unban("192.0.2.1"), _unban("203.0.113.9")],
                               urgent=True)
        backend.gates[0].set()  # the storm's first transaction ends; its rest waits
        assert await worker.wait(ticket, 5.0)
        applied_when_answered = len(backend.log)
        backend.gates[1].set()
        assert await worker.drain(5.0)
        await worker.stop()
        return applied_when_answered, worker

    answered_after, worker = asyncio.run(main())
    first, urgent, rest = backend.log
    assert first == ([b.ip for b in sorted(storm, key=lambda b: b.ip)], [])
    # alone, right after the transaction in flight, and answered before the storm's rest
    assert urgent == ([], ["192.0.2.1", "203.0.113.9"])
    assert answered_after == 2
    # the last word on each address holds: 203.0.113.9 stays unbanned
    assert rest == (sorted(b.ip for b in more), [])
    assert worker.applied_changes == len(storm) + 2 + len(more)


def test_an_urgent_change_with_nothing_in_flight_is_applied_at_once() -> None:
    backend = GatedRecorder()

    async def main() -> bool:
        worker = FirewallWorker(backend, clock=lambda: 1.0)  # type: ignore[arg-type]
        worker.start()
        worker.submit(_bans(INLINE_MAX + 1))  # pending, for the task to take
        ticket = worker.submit(unbans=[_unban("198.51.100.77")], urgent=True)
        # the worker thread's transaction waits at the gate: only an apply on this
        # thread can have answered, and without a turn of the loop (during a storm a
        # turn may first match a chunk of the log)
        turned: list[bool] = []
        asyncio.get_running_loop().call_soon(turned.append, True)
        answered = await worker.wait(ticket, 1.0) and not turned
        backend.gate.set()
        await worker.stop()
        return answered

    assert asyncio.run(main())
    assert backend.log[0] == ([], ["198.51.100.77"])
    assert len(backend.log[1][0]) == INLINE_MAX + 1


def test_an_urgent_change_stops_holding_the_log_while_the_firewall_fails() -> None:
    backend = Recorder(in_process=True, fail_first=2)

    async def main() -> tuple[bool, bool, bool]:
        worker = FirewallWorker(backend, clock=lambda: 1.0)  # type: ignore[arg-type]
        worker.start()
        ticket = worker.submit(unbans=[_unban("192.0.2.5")], urgent=True)  # inline: fails
        waiting_at_first = worker.urgent_since(0.0)
        for _ in range(100):  # the task's own attempt fails too: an error is reported
            if worker.last_error is not None:
                break
            await asyncio.sleep(0.01)
        while_failing = worker.urgent_since(0.0)
        assert await worker.wait(ticket, 5.0)  # the retry lands
        after = worker.urgent_since(0.0)
        await worker.stop()
        return waiting_at_first, while_failing, after

    assert asyncio.run(main()) == (True, False, False)
