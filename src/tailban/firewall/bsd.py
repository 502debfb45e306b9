"""ipfw (FreeBSD) and pf (FreeBSD, OpenBSD) backends: bans as table entries.

Both run the system tools through a :class:`~tailban.firewall.commands.CommandRunner`
with argv lists (never a shell) and put many addresses on one command line (up to
``CHUNK`` per call), so a batch costs one process per jail and action, never one per ban.
Neither table kind has per-entry timeouts: the daemon's unbans end the bans.

ipfw: one named table per jail (``tailban-<jail>``, type addr, IPv4 and IPv6 together) and
one rule per jail, numbered from ``rule_base``, all in rule set ``rule_set`` so start and
stop can replace them with ``ipfw delete set N``::

    ipfw add 10000 set 29 deny tcp from table(tailban-sshd) to me dst-port 22

(``reset``/``unreach port`` instead of ``deny`` for blocktype reject). Requires FreeBSD 11+
(named tables, several keys per ``table add``/``delete``).

pf: one anchor ``tailban`` holding one persistent table and one ``block`` rule per jail,
loaded with ``pfctl -a tailban -f -``; entries change with ``pfctl -a tailban -t T -T
add|delete ADDR...`` and reconcile uses ``-T replace`` (atomic per table). The main pf.conf
must contain ``anchor "tailban"`` for the rules to be evaluated (tailban does not edit it).

These two backends are tested by the exact argv they produce (tests/test_firewall_bsd.py),
not against a BSD kernel: this project's machines run Linux.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from tailban.core.addresses import normalise_target
from tailban.core.events import Ban
from tailban.firewall.base import FirewallBatch, JailFirewall
from tailban.firewall.commands import CommandRunner, SubprocessRunner

CHUNK = 500


def _live(bans: Sequence[Ban], jails: dict[str, JailFirewall], now: float) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {jail: set() for jail in jails}
    for ban in bans:
        remaining = ban.remaining(now)
        if ban.jail in jails and (remaining is None or remaining > 0):
            result[ban.jail].add(ban.ip)
    return result


def _split(batch: FirewallBatch, jails: dict[str, JailFirewall], now: float
           ) -> tuple[dict[str, builtins.list[str]], dict[str, builtins.list[str]]]:
    adds: dict[str, builtins.list[str]] = {}
    deletes: dict[str, builtins.list[str]] = {}
    for unban in batch.unbans.values():
        if unban.jail in jails:
            deletes.setdefault(unban.jail, []).append(unban.ip)
    for ban in batch.bans.values():
        remaining = ban.remaining(now)
        if ban.jail in jails and (remaining is None or remaining > 0):
            adds.setdefault(ban.jail, []).append(ban.ip)
    return adds, deletes


def _chunks(addresses: Sequence[str]) -> builtins.list[builtins.list[str]]:
    return [builtins.list(addresses[i:i + CHUNK]) for i in range(0, len(addresses), CHUNK)]


def _addresses(text: str) -> set[str]:
    found = set()
    for line in text.splitlines():
        words = line.split()
        if words:
            address = normalise_target(words[0])
            if address is not None:
                found.add(address)
    return found


class IpfwBackend:
    """Bans in ipfw named tables, one deny rule per jail."""

    name = "ipfw"

    def __init__(self, runner: CommandRunner | None = None, prefix: str = "tailban",
                 rule_base: int = 10000, rule_set: int = 29, binary: str = "ipfw") -> None:
        self.runner = runner or SubprocessRunner()
        self.prefix = prefix
        self.rule_base = rule_base
        self.rule_set = rule_set
        self.binary = binary
        self._jails: dict[str, JailFirewall] = {}
        self._tables: set[str] = set()

    def table(self, jail: str) -> str:
        return f"{self.prefix}-{jail}"

    def _ipfw(self, *args: str) -> str:
        return self.runner.run([self.binary, "-q", *args])

    def start(self, jails: Sequence[JailFirewall]) -> None:
        self._jails = {jail.name: jail for jail in jails}
        self._ipfw("delete", "set", str(self.rule_set))
        for number, jail in enumerate(self._jails.values()):
            table = self.table(jail.name)
            self._ipfw("table", table, "create", "type", "addr", "missing")
            self._tables.add(table)
            self._ipfw("add", str(self.rule_base + number), "set", str(self.rule_set),
                       *self._rule(jail))

    def _rule(self, jail: JailFirewall) -> builtins.list[str]:
        proto = "ip" if jail.protocol == "all" else jail.protocol
        if jail.blocktype != "reject":
            action = ["deny"]
        else:
            action = ["reset"] if proto == "tcp" else ["unreach", "port"]
        rule = [*action, proto, "from", f"table({self.table(jail.name)})", "to", "me"]
        if not jail.allports and proto != "ip":
            rule += ["dst-port", ",".join(jail.ports)]
        return rule

    def apply(self, batch: FirewallBatch, now: float) -> None:
        adds, deletes = _split(batch, self._jails, now)
        for jail, addresses in deletes.items():
            for chunk in _chunks(addresses):
                self._ipfw("table", self.table(jail), "delete", *chunk)
        for jail, addresses in adds.items():
            for chunk in _chunks(addresses):
                self._ipfw("table", self.table(jail), "add", *chunk)

    def reconcile(self, bans: Sequence[Ban], now: float) -> None:
        for jail, addresses in _live(bans, self._jails, now).items():
            self._ipfw("table", self.table(jail), "flush")
            for chunk in _chunks(sorted(addresses)):
                self._ipfw("table", self.table(jail), "add", *chunk)

    def stop(self, flush: bool) -> None:
        if flush:
            self._ipfw("delete", "set", str(self.rule_set))
            for table in sorted(self._tables | {self.table(j) for j in self._jails}):
                self._ipfw("table", table, "destroy")
            self._tables.clear()

    def list(self) -> dict[str, set[str]]:
        return {jail: _addresses(self.runner.run([self.binary, "table", self.table(jail),
                                                  "list"]))
                for jail in self._jails}


class PfBackend:
    """Bans in pf tables inside the ``tailban`` anchor."""

    name = "pf"

    def __init__(self, runner: CommandRunner | None = None, anchor: str = "tailban",
                 binary: str = "pfctl") -> None:
        self.runner = runner or SubprocessRunner()
        self.anchor = anchor
        self.binary = binary
        self._jails: dict[str, JailFirewall] = {}

    def table(self, jail: str) -> str:
        return f"{self.anchor}-{jail}"

    def _pfctl(self, *args: str, stdin: str | None = None) -> str:
        return self.runner.run([self.binary, "-a", self.anchor, *args], stdin)

    def _tablecmd(self, jail: str, *args: str) -> str:
        return self._pfctl("-t", self.table(jail), "-T", *args)

    def ruleset(self) -> str:
        lines = []
        for jail in self._jails.values():
            table = self.table(jail.name)
            action = "block return" if jail.blocktype == "reject" else "block drop"
            proto = "" if jail.protocol == "all" else f" proto {jail.protocol}"
            ports = ("" if jail.allports or jail.protocol == "all"
                     else " port { " + " ".join(p.replace("-", ":") for p in jail.ports) + " }")
            lines.append(f"table <{table}> persist")
            lines.append(f"{action} in quick{proto} from <{table}> to any{ports}")
        return "\n".join(lines) + "\n"

    def start(self, jails: Sequence[JailFirewall]) -> None:
        self._jails = {jail.name: jail for jail in jails}
        # Reloading the anchor keeps the entries of tables that stay (persist).
        self._pfctl("-f", "-", stdin=self.ruleset())

    def apply(self, batch: FirewallBatch, now: float) -> None:
        adds, deletes = _split(batch, self._jails, now)
        for jail, addresses in deletes.items():
            for chunk in _chunks(addresses):
                self._tablecmd(jail, "delete", *chunk)
        for jail, addresses in adds.items():
            for chunk in _chunks(addresses):
                self._tablecmd(jail, "add", *chunk)

    def reconcile(self, bans: Sequence[Ban], now: float) -> None:
        for jail, addresses in _live(bans, self._jails, now).items():
            ordered = sorted(addresses)
            if len(ordered) <= CHUNK:
                self._tablecmd(jail, "replace", *ordered)  # atomic
            else:
                self._tablecmd(jail, "flush")
                for chunk in _chunks(ordered):
                    self._tablecmd(jail, "add", *chunk)

    def stop(self, flush: bool) -> None:
        if flush:
            self._pfctl("-F", "rules")
            self._pfctl("-F", "Tables")

    def list(self) -> dict[str, set[str]]:
        return {jail: _addresses(self._tablecmd(jail, "show")) for jail in self._jails}
