"""nftables backend: one ``inet`` table, one timeout set per jail and family, one rule each.

Sets carry ``flags timeout`` so the kernel expires a ban even when the daemon is gone, and
no ``interval`` flag (it makes each insertion cost O(set size)). Every batch is one script,
so it is one atomic transaction whatever its size.
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from tailban.core.addresses import ip_family
from tailban.core.events import Ban
from tailban.firewall.base import FirewallBatch, FirewallError, JailFirewall
from tailban.firewall.nft_runner import NftRunner, default_runner

_CHAIN = "input"
_MAX_TIMEOUT = 365 * 86400
_PROTOCOLS_ALL = "{ tcp, udp, sctp, dccp }"


def set_name(jail: str, family: int, networks: bool = False) -> str:
    """``sshd-v4`` for addresses; ``sshd-n4`` (an interval set) for network bans."""
    return f"{jail}-{'n' if networks else 'v'}{family}"


def target_set(jail: str, target: str) -> str:
    return set_name(jail, ip_family(target), "/" in target)


class NftablesBackend:
    """Bans as elements of per-jail nftables sets."""

    name = "nftables"

    def __init__(self, table: str = "tailban", runner: NftRunner | None = None) -> None:
        self.table = table
        self.runner = runner or default_runner()
        # a change is a netlink exchange in this process, never a program that may hang
        self.in_process = self.runner.kind == "libnftables"
        self._jails: dict[str, JailFirewall] = {}

    # -- the contract -------------------------------------------------------------------

    def start(self, jails: Sequence[JailFirewall]) -> None:
        self._jails = {jail.name: jail for jail in jails}
        existing = self._existing_sets()
        script = self._layout_script(jails, existing)
        try:
            self.runner.run(script)
        except FirewallError:
            if existing is None:
                raise
            # A set made with other flags (older layout) cannot be changed in place:
            # rebuild the table; the caller reconciles the bans right after start.
            self.runner.run(f"delete table inet {self.table}\n")
            self.runner.run(self._layout_script(jails, None))

    def apply(self, batch: FirewallBatch, now: float) -> None:
        lines: list[str] = []
        adds: dict[str, list[str]] = {}
        for ban in batch.bans.values():
            element = _element(ban, now)
            if element is not None and ban.jail in self._jails:
                adds.setdefault(target_set(ban.jail, ban.ip), []).append(element)
        removes: dict[str, list[str]] = {}
        for unban in batch.unbans.values():
            if unban.jail in self._jails:
                removes.setdefault(target_set(unban.jail, unban.ip), []).append(unban.ip)
        for name, addresses in removes.items():
            joined = ", ".join(addresses)
            # add-then-delete: deleting an absent element would abort the whole transaction.
            lines.append(f"add element inet {self.table} {name} {{ {joined} }}")
            lines.append(f"delete element inet {self.table} {name} {{ {joined} }}")
        lines.extend(_add_lines(self.table, adds))
        if lines:
            self.runner.run("\n".join(lines) + "\n")

    def reconcile(self, bans: Sequence[Ban], now: float) -> None:
        adds: dict[str, list[str]] = {}
        for ban in bans:
            element = _element(ban, now)
            if element is not None and ban.jail in self._jails:
                adds.setdefault(target_set(ban.jail, ban.ip), []).append(element)
        lines = [f"flush set inet {self.table} {set_name(jail, family, nets)}"
                 for jail in self._jails for family in (4, 6) for nets in (False, True)]
        lines.extend(_add_lines(self.table, adds))
        self.runner.run("\n".join(lines) + "\n")

    def stop(self, flush: bool) -> None:
        if flush and self._existing_sets() is not None:
            self.runner.run(f"delete table inet {self.table}\n")

    def list(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {name: set() for name in self._jails}
        for set_info in self._list_sets():
            name = str(set_info.get("name", ""))
            jail, kind = name[:-3], name[-3:]
            if kind not in ("-v4", "-v6", "-n4", "-n6") or not jail:
                continue
            bucket = result.setdefault(jail, set())
            for elem in set_info.get("elem", []):
                value = elem.get("elem", {}).get("val") if isinstance(elem, dict) and \
                    "elem" in elem else elem
                if isinstance(value, dict) and "prefix" in value:
                    value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
                if isinstance(value, str):
                    bucket.add(value)
        return result

    # -- helpers ------------------------------------------------------------------------

    def is_intact(self) -> bool:
        """True when the table, chain and every jail's sets exist (nobody flushed them)."""
        sets = self._existing_sets()
        if sets is None:
            return False
        wanted = {set_name(jail, family, nets) for jail in self._jails for family in (4, 6)
                  for nets in (False, True)}
        if not wanted <= sets:
            return False
        try:
            chain = self.runner.run(f"list chain inet {self.table} {_CHAIN}\n")
        except FirewallError:
            return False
        return all(f"@{set_name(jail, 4)}" in chain for jail in self._jails)

    def _layout_script(self, jails: Iterable[JailFirewall], existing: set[str] | None) -> str:
        t = self.table
        lines = [
            f"add table inet {t}",
            f"add chain inet {t} {_CHAIN} {{ type filter hook input priority filter - 1; "
            "policy accept; }",
            f"flush chain inet {t} {_CHAIN}",
        ]
        wanted: set[str] = set()
        for jail in jails:
            for family, kind, addr in ((4, "ipv4_addr", "ip"), (6, "ipv6_addr", "ip6")):
                for nets, flags in ((False, "timeout"), (True, "interval, timeout")):
                    name = set_name(jail.name, family, nets)
                    wanted.add(name)
                    lines.append(f"add set inet {t} {name} {{ type {kind}; flags {flags}; }}")
                    lines.append(f"add rule inet {t} {_CHAIN} {_match(jail)}{addr} saddr "
                                 f"@{name} {_verdict(jail)} comment \"tailban jail {jail.name}\"")
        for stale in sorted((existing or set()) - wanted):
            lines.append(f"delete set inet {t} {stale}")
        return "\n".join(lines) + "\n"

    def _list_sets(self) -> builtins.list[dict[str, Any]]:
        """The table's sets as nft's JSON objects; None when the table does not exist."""
        return self._table_sets() or []

    def _existing_sets(self) -> set[str] | None:
        sets = self._table_sets()
        return None if sets is None else {str(item["name"]) for item in sets}

    def _table_sets(self) -> builtins.list[dict[str, Any]] | None:
        try:
            out = self.runner.run(f"list table inet {self.table}\n", json_output=True)
        except FirewallError:
            return None
        try:
            items = json.loads(out).get("nftables", [])
        except ValueError:
            return []
        return [item["set"] for item in items if isinstance(item, dict) and "set" in item]


def _element(ban: Ban, now: float) -> str | None:
    remaining = ban.remaining(now)
    if remaining is None:
        return ban.ip
    if remaining <= 0:
        return None  # already over
    # Whole seconds, at least one: nft 1.0.6 rejects large millisecond values ("value too
    # large" for a week in ms). Beyond a year the kernel refuses the timeout: such a ban
    # goes in without one and the daemon lifts it when it ends.
    seconds = max(1, math.ceil(remaining))
    if seconds > _MAX_TIMEOUT:
        return ban.ip
    return f"{ban.ip} timeout {seconds}s"


def _add_lines(table: str, adds: dict[str, list[str]], per_line: int = 2000) -> list[str]:
    lines = []
    for name, elements in adds.items():
        for start in range(0, len(elements), per_line):
            joined = ", ".join(elements[start:start + per_line])
            lines.append(f"add element inet {table} {name} {{ {joined} }}")
    return lines


def _match(jail: JailFirewall) -> str:
    if jail.allports:
        return "" if jail.protocol == "all" else f"meta l4proto {jail.protocol} "
    ports = ", ".join(jail.ports)
    proto = _PROTOCOLS_ALL if jail.protocol == "all" else jail.protocol
    return f"meta l4proto {proto} th dport {{ {ports} }} "


def _verdict(jail: JailFirewall) -> str:
    if jail.blocktype == "reject":
        return "reject with tcp reset" if jail.protocol == "tcp" else "reject"
    return "drop"
