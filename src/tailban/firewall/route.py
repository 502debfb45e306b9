"""Route backend: a ``blackhole`` route per banned address (fail2ban's ``route`` action).

A blackhole route does not stop the packets that come in; it makes the replies go nowhere,
so a banned TCP client never gets its SYN-ACK and its connection times out. It works on
hosts with no packet filter at all, blocks every port (it is always "allports"), and costs
one routing-table entry per address. Every batch is ONE ``ip -batch -`` process, IPv4 and
IPv6 mixed (``ip`` takes the family from each address).

Our routes carry ``proto 242`` (a protocol number no routing daemon uses), so ``list``,
``reconcile`` and ``stop(flush=True)`` touch only tailban's routes. Routes have no timeout:
the daemon's unbans end them. An address banned by several route jails keeps its route
until the last of them unbans it. Routes do not record a jail: after a restart the jail of
a route is known again once the daemon reconciles (which it does right after start).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from tailban.core.addresses import normalise_target
from tailban.core.events import Ban
from tailban.firewall.base import FirewallBatch, JailFirewall
from tailban.firewall.commands import CommandRunner, SubprocessRunner, tool

RT_PROTO = 242


class RouteBackend:
    """Bans as blackhole routes, through ``ip -batch -``."""

    name = "route"

    def __init__(self, runner: CommandRunner | None = None, proto: int = RT_PROTO,
                 route_type: str = "blackhole") -> None:
        self.runner = runner or SubprocessRunner()
        self.proto = proto
        self.route_type = route_type  # blackhole | unreachable | prohibit
        self.ip = tool("ip")
        self._jails: dict[str, JailFirewall] = {}
        self._owners: dict[str, set[str]] = {}  # address -> jails that ban it

    # -- the contract -------------------------------------------------------------------

    def start(self, jails: Sequence[JailFirewall]) -> None:
        self._jails = {jail.name: jail for jail in jails}
        for address in list(self._owners):
            self._owners[address] &= self._jails.keys()
            if not self._owners[address]:
                del self._owners[address]

    def apply(self, batch: FirewallBatch, now: float) -> None:
        lines: list[str] = []
        owners = {address: set(jails) for address, jails in self._owners.items()}
        for unban in batch.unbans.values():
            holders = owners.get(unban.ip)
            if holders is not None:
                holders.discard(unban.jail)
            if unban.jail in self._jails and not holders:
                owners.pop(unban.ip, None)
                # replace-then-delete: deleting an absent route would fail the batch.
                lines.append(self._line("replace", unban.ip))
                lines.append(self._line("del", unban.ip))
        for ban in batch.bans.values():
            if ban.jail not in self._jails or _over(ban, now):
                continue
            owners.setdefault(ban.ip, set()).add(ban.jail)
            lines.append(self._line("replace", ban.ip))
        if lines:
            self._batch(lines)
        self._owners = {address: jails for address, jails in owners.items() if jails}

    def reconcile(self, bans: Sequence[Ban], now: float) -> None:
        owners: dict[str, set[str]] = {}
        for ban in bans:
            if ban.jail in self._jails and not _over(ban, now):
                owners.setdefault(ban.ip, set()).add(ban.jail)
        present = self._kernel()
        lines = [self._line("del", address) for address in sorted(present - owners.keys())]
        lines.extend(self._line("replace", address) for address in owners)
        if lines:
            self._batch(lines)
        self._owners = owners

    def stop(self, flush: bool) -> None:
        if flush:
            lines = [self._line("del", address) for address in sorted(self._kernel())]
            if lines:
                self._batch(lines)
            self._owners.clear()

    def list(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {name: set() for name in self._jails}
        for address in self._kernel():
            for jail in self._owners.get(address, ()):
                result.setdefault(jail, set()).add(address)
        return result

    def is_intact(self) -> bool:
        """True when every route the daemon expects is still in the kernel."""
        return self._owners.keys() <= self._kernel()

    # -- helpers ------------------------------------------------------------------------

    def _line(self, verb: str, address: str) -> str:
        return f"route {verb} {self.route_type} {address} proto {self.proto}"

    def _batch(self, lines: builtins.list[str]) -> None:
        self.runner.run([self.ip, "-batch", "-"], "\n".join(lines) + "\n")

    def _kernel(self) -> set[str]:
        found: set[str] = set()
        for family in ("-4", "-6"):
            out = self.runner.run([self.ip, family, "route", "show", "table", "main",
                                   "type", self.route_type, "proto", str(self.proto)])
            for line in out.splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] == self.route_type:
                    address = normalise_target(words[1])
                    if address is not None:
                        found.add(address)
        return found


def _over(ban: Ban, now: float) -> bool:
    remaining = ban.remaining(now)
    return remaining is not None and remaining <= 0
