"""ipfw and pf backends: the exact argv (and stdin) they run for a scripted sequence."""

from __future__ import annotations

from collections.abc import Sequence

from tailban.core.events import Ban, Unban
from tailban.firewall.base import FirewallBatch, JailFirewall
from tailban.firewall.bsd import IpfwBackend, PfBackend

NOW = 1_000_000.0
SSHD = JailFirewall("sshd", ("22",), "tcp", False, "drop")
MAIL = JailFirewall("mail", ("25", "465", "587"), "tcp", False, "reject")


class Recorder:
    """A CommandRunner that records every call and answers from a script."""

    def __init__(self, answers: dict[tuple[str, ...], str] | None = None) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.answers = answers or {}

    def run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        self.calls.append((list(argv), stdin))
        return self.answers.get(tuple(argv), "")

    def argvs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]


def ban(ip: str, jail: str = "sshd", seconds: float | None = 600) -> Ban:
    return Ban(jail, ip, NOW, None if seconds is None else NOW + seconds, 3, "line")


def scripted(fw: IpfwBackend | PfBackend) -> None:
    fw.start([SSHD, MAIL])
    batch = FirewallBatch()
    batch.ban(ban("192.0.2.1"))
    batch.ban(ban("2001:db8::1"))
    batch.ban(ban("198.51.100.7", jail="mail"))
    batch.ban(ban("192.0.2.99", seconds=0))  # already over: never sent
    fw.apply(batch, NOW)
    batch = FirewallBatch()
    batch.unban(Unban("sshd", "192.0.2.1", NOW))
    fw.apply(batch, NOW)
    fw.reconcile([ban("2001:db8::1"), ban("192.0.2.5")], NOW)
    fw.stop(flush=True)


def test_ipfw_argv_sequence() -> None:
    runner = Recorder()
    scripted(IpfwBackend(runner))
    q = ["ipfw", "-q"]
    assert runner.argvs() == [
        [*q, "delete", "set", "29"],
        [*q, "table", "tailban-sshd", "create", "type", "addr", "missing"],
        [*q, "add", "10000", "set", "29", "deny", "tcp", "from", "table(tailban-sshd)",
         "to", "me", "dst-port", "22"],
        [*q, "table", "tailban-mail", "create", "type", "addr", "missing"],
        [*q, "add", "10001", "set", "29", "reset", "tcp", "from", "table(tailban-mail)",
         "to", "me", "dst-port", "25,465,587"],
        [*q, "table", "tailban-sshd", "add", "192.0.2.1", "2001:db8::1"],
        [*q, "table", "tailban-mail", "add", "198.51.100.7"],
        [*q, "table", "tailban-sshd", "delete", "192.0.2.1"],
        [*q, "table", "tailban-sshd", "flush"],
        [*q, "table", "tailban-sshd", "add", "192.0.2.5", "2001:db8::1"],
        [*q, "table", "tailban-mail", "flush"],
        [*q, "delete", "set", "29"],
        [*q, "table", "tailban-mail", "destroy"],
        [*q, "table", "tailban-sshd", "destroy"],
    ]
    assert all(stdin is None for _, stdin in runner.calls)


def test_pf_argv_sequence() -> None:
    runner = Recorder()
    scripted(PfBackend(runner))
    a = ["pfctl", "-a", "tailban"]
    assert runner.argvs() == [
        [*a, "-f", "-"],
        [*a, "-t", "tailban-sshd", "-T", "add", "192.0.2.1", "2001:db8::1"],
        [*a, "-t", "tailban-mail", "-T", "add", "198.51.100.7"],
        [*a, "-t", "tailban-sshd", "-T", "delete", "192.0.2.1"],
        [*a, "-t", "tailban-sshd", "-T", "replace", "192.0.2.5", "2001:db8::1"],
        [*a, "-t", "tailban-mail", "-T", "replace"],
        [*a, "-F", "rules"],
        [*a, "-F", "Tables"],
    ]
    assert runner.calls[0][1] == (
        "table <tailban-sshd> persist\n"
        "block drop in quick proto tcp from <tailban-sshd> to any port { 22 }\n"
        "table <tailban-mail> persist\n"
        "block return in quick proto tcp from <tailban-mail> to any port { 25 465 587 }\n")


def test_lists_and_large_batches() -> None:
    show = ("pfctl", "-a", "tailban", "-t", "tailban-sshd", "-T", "show")
    runner = Recorder({show: "   192.0.2.1\n   2001:db8::1\n"})
    pf = PfBackend(runner)
    pf.start([SSHD])
    assert pf.list() == {"sshd": {"192.0.2.1", "2001:db8::1"}}
    batch = FirewallBatch()
    for i in range(1200):
        batch.ban(ban(f"10.0.{i // 256}.{i % 256}"))
    runner.calls.clear()
    pf.apply(batch, NOW)
    assert [len(argv) - 7 for argv in runner.argvs()] == [500, 500, 200]

    listing = ("ipfw", "table", "tailban-sshd", "list")
    ipfw = IpfwBackend(Recorder({listing: "--- table(tailban-sshd), set(0) ---\n"
                                          "192.0.2.1/32 0\n2001:db8::1/128 0\n"}))
    ipfw.start([SSHD])
    assert ipfw.list() == {"sshd": {"192.0.2.1", "2001:db8::1"}}
