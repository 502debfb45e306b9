"""Where the firewall worker applies a batch: at once on the loop's thread, or on a worker.

The backend here only records which thread applied which addresses: what is under test is
the worker's choice and its retry, not a firewall (the backends have their own tests
against real nftables/iptables in network namespaces).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from tailban.core.events import Ban
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
