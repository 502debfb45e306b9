"""iptables backend through python-iptables (``iptc``): a chain per jail, hooked from INPUT.

Layout, for each jail ``J`` and each family (``iptc.Table`` for IPv4, ``iptc.Table6`` for
IPv6), in the ``filter`` table:

* ``INPUT``: ``-p PROTO -m multiport --dports PORTS -j tailban-J`` (one rule per protocol
  for ``protocol = all``, one per 15 ports; no port match with allports), inserted first.
* ``tailban-J``, layout ``ipset`` (the default, banaction ``iptables``): TWO rules
  ``-m set --match-set tailban-J-v4 src -j DROP|REJECT`` (addresses) and
  ``-m set --match-set tailban-J-n4 src -j DROP|REJECT`` (networks); the bans are elements
  of the ipsets ``tailban-J-v4`` / ``tailban-J-v6`` (``hash:ip timeout 0``) and
  ``tailban-J-n4`` / ``tailban-J-n6`` (``hash:net timeout 0``, holding the CIDR targets such
  as ``198.51.100.0/24``), see :mod:`.ipset`; changed by one ``ipset restore -exist`` per
  batch; the kernel expires them by itself.
* ``tailban-J``, layout ``rules`` (banaction ``iptables-rules``, for hosts without ipset):
  one ``-s ADDR -j DROP|REJECT`` rule per banned address or network (``-s 198.51.100.0/24``).
  Bans have no kernel timeout here; the daemon's unbans end them.

Every change to the rules is made with autocommit off and committed once per family, so a
batch (or start, reconcile, stop) is one libiptc commit per table: the kernel swaps the
whole table atomically.

**Legacy tables, not nf_tables.** python-iptables links libiptc (``libip4tc``/``libip6tc``),
which only speaks the legacy x_tables interface (``ip_tables``/``ip6_tables`` kernel modules).
On Debian 12 the ``iptables`` command is ``iptables-nft`` (``iptables -V`` says
``nf_tables``): it shows and edits a different ruleset. Checked on this project's Debian 12
machine (kernel 6.x, iptables 1.8.9, python-iptables 1.2.0): tailban's chains are visible
with ``iptables-legacy -S`` / ``ip6tables-legacy -S`` and NOT with ``iptables -S`` (which
only warns "iptables-legacy tables present"); ``iptables -F`` does not remove them,
``iptables-legacy -F`` does. The kernel runs both rulesets on every packet (the legacy
hooks and the nf_tables hooks side by side), so the legacy rules DO block: the tests prove
it with real TCP connections. Use ``iptables-legacy``/``ip6tables-legacy`` to inspect what
tailban did. ``REJECT --reject-with tcp-reset`` needs ``-p tcp`` in the same rule (the
kernel answers EINVAL otherwise), so it is only used for tcp jails.

Concurrency: python-iptables caches one handle per table for the whole process, so every
operation holds a module lock and re-reads the table first. ``netns`` (tests) runs the
libiptc calls in a thread that joined that network namespace and the ``ipset`` processes
under ``ip netns exec``; the daemon uses the host's namespace.
"""

from __future__ import annotations

import builtins
import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from tailban.core.addresses import ip_family, normalise_target
from tailban.core.events import Ban
from tailban.firewall.base import FirewallBatch, FirewallError, JailFirewall
from tailban.firewall.commands import CommandRunner, NamespaceThread, netns_runner
from tailban.firewall.ipset import (
    Element,
    IpsetSets,
    SetSpec,
    timeout_for,
)

T = TypeVar("T")
_LOCK = threading.RLock()
_FAMILIES = (4, 6)
_ALL_PROTOCOLS = ("tcp", "udp", "sctp", "dccp")
_MULTIPORT_MAX = 15  # a range counts twice


def short_name(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, keeping it unique with a hash suffix."""
    if len(text) <= limit:
        return text
    return f"{text[:limit - 7]}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def port_groups(ports: Sequence[str]) -> builtins.list[str]:
    """multiport ``--dports`` values of at most 15 ports each (``a-b`` is ``a:b``)."""
    groups: builtins.list[builtins.list[str]] = [[]]
    used = 0
    for port in ports:
        cost = 2 if "-" in port else 1
        if used + cost > _MULTIPORT_MAX:
            groups.append([])
            used = 0
        groups[-1].append(port.replace("-", ":"))
        used += cost
    return [",".join(group) for group in groups if group]


class IptablesBackend:
    """Bans in per-jail iptables chains, as ipset elements or as one rule per address."""

    def __init__(self, layout: str = "ipset", prefix: str = "tailban",
                 netns: str | None = None, runner: CommandRunner | None = None) -> None:
        if layout not in ("ipset", "rules"):
            raise ValueError("layout is ipset or rules")
        try:
            import iptc
        except (ImportError, OSError, NotImplementedError) as exc:
            raise FirewallError(f"python-iptables (iptc) is not usable: {exc}") from None
        self.iptc: Any = iptc
        self.layout = layout
        self.name = "iptables" if layout == "ipset" else "iptables-rules"
        self.prefix = prefix
        self.ipset = IpsetSets(runner or netns_runner(netns))
        self._thread = NamespaceThread(netns) if netns else None
        self._jails: dict[str, JailFirewall] = {}

    # -- names --------------------------------------------------------------------------

    def chain_name(self, jail: str) -> str:
        return short_name(f"{self.prefix}-{jail}", 28)

    def set_name(self, jail: str, family: int, networks: bool = False) -> str:
        """``P-J-v4`` (addresses) or ``P-J-n4`` (networks): at most 31 characters."""
        return f"{short_name(f'{self.prefix}-{jail}', 27)}-{'n' if networks else 'v'}{family}"

    def target_set(self, jail: str, target: str) -> str:
        """The set an address or a network (CIDR) of this jail belongs in."""
        return self.set_name(jail, ip_family(target), _is_network(target))

    def _our_sets(self) -> dict[str, tuple[str, SetSpec]]:
        return {self.set_name(jail, family, networks): (jail, (family, networks))
                for jail in self._jails for family in _FAMILIES for networks in (False, True)}

    def _is_ours(self, name: str) -> bool:
        return name.startswith(f"{self.prefix}-")

    # -- the contract -------------------------------------------------------------------

    def start(self, jails: Sequence[JailFirewall]) -> None:
        self._jails = {jail.name: jail for jail in jails}
        try:
            self._layout()
        except FirewallError:
            # A set or chain left in an incompatible shape (other parameters, another
            # layout): remove everything and build again; reconcile refills the bans.
            self._teardown()
            self._layout()

    def apply(self, batch: FirewallBatch, now: float) -> None:
        if self.layout == "ipset":
            adds: dict[str, list[Element]] = {}
            deletes: dict[str, list[str]] = {}
            for unban in batch.unbans.values():
                if unban.jail in self._jails:
                    name = self.target_set(unban.jail, unban.ip)
                    deletes.setdefault(name, []).append(unban.ip)
            for ban in batch.bans.values():
                timeout = timeout_for(ban.remaining(now))
                if ban.jail in self._jails and timeout is not False:
                    name = self.target_set(ban.jail, ban.ip)
                    adds.setdefault(name, []).append((ban.ip, _seconds(timeout)))
            self.ipset.change(adds, deletes)
            return
        changes: dict[tuple[str, int], tuple[set[str], set[str]]] = {}
        for unban in batch.unbans.values():
            if unban.jail in self._jails:
                changes.setdefault((unban.jail, ip_family(unban.ip)), (set(), set()))[1].add(
                    unban.ip)
        for ban in batch.bans.values():
            if ban.jail in self._jails and timeout_for(ban.remaining(now)) is not False:
                changes.setdefault((ban.jail, ip_family(ban.ip)), (set(), set()))[0].add(ban.ip)
        for family in _FAMILIES:
            mine = {jail: change for (jail, fam), change in changes.items() if fam == family}
            if mine:
                self._in_table(family, lambda table, rule, m=mine, f=family:  # type: ignore[misc]
                               self._change_rules(table, rule, f, m))

    def reconcile(self, bans: Sequence[Ban], now: float) -> None:
        wanted: dict[tuple[str, int], list[Element]] = {
            (jail, family): [] for jail in self._jails for family in _FAMILIES}
        for ban in bans:
            timeout = timeout_for(ban.remaining(now))
            if ban.jail in self._jails and timeout is not False:
                wanted[(ban.jail, ip_family(ban.ip))].append((ban.ip, _seconds(timeout)))
        if self.layout == "ipset":
            contents: dict[str, tuple[SetSpec, builtins.list[Element]]] = {
                name: (spec, []) for name, (_, spec) in self._our_sets().items()}
            for (jail, _), elements in wanted.items():
                for element in elements:
                    contents[self.target_set(jail, element[0])][1].append(element)
            self.ipset.replace(contents)
            return
        for family in _FAMILIES:
            addresses = {jail: {ip for ip, _ in elements}
                         for (jail, fam), elements in wanted.items() if fam == family}
            self._in_table(family, lambda table, rule, a=addresses, f=family:  # type: ignore[misc]
                           self._fill_chains(table, rule, f, a))

    def stop(self, flush: bool) -> None:
        if flush:
            self._teardown()

    def list(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {jail: set() for jail in self._jails}
        if self.layout == "ipset":
            sets = self._our_sets()
            for name, addresses in self.ipset.members(sets).items():
                result[sets[name][0]].update(addresses)
            return result
        for family in _FAMILIES:
            found = self._in_table(family, lambda table, rule: self._read_chains(table),
                                   commit=False)
            for jail, addresses in found.items():
                result[jail].update(addresses)
        return result

    def is_intact(self) -> bool:
        """True when every chain, INPUT hook (and ipset) of every jail is in place."""
        try:
            if self.layout == "ipset" and not set(self._our_sets()) <= self.ipset.names():
                return False
            return all(self._in_table(family, lambda table, rule: self._hooks_present(table),
                                      commit=False) for family in _FAMILIES)
        except FirewallError:
            return False

    def close(self) -> None:
        if self._thread is not None:
            self._thread.close()

    # -- libiptc work (always inside _in_table) -----------------------------------------

    def _in_table(self, family: int, work: Callable[[Any, Any], T], commit: bool = True) -> T:
        """Run ``work(table, RuleClass)`` on a fresh handle, then commit once."""
        iptc = self.iptc

        def body() -> T:
            table_cls, rule_cls = ((iptc.Table, iptc.Rule) if family == 4
                                   else (iptc.Table6, iptc.Rule6))
            try:
                table = table_cls(table_cls.FILTER, autocommit=False)
                table.refresh()
                result = work(table, rule_cls)
                if commit:
                    table.commit()
                return result
            except iptc.IPTCError as exc:
                raise FirewallError(f"iptables (IPv{family}): {exc}") from None
            except ValueError as exc:  # bad rule parameters
                raise FirewallError(f"iptables (IPv{family}): {exc}") from None

        with _LOCK:
            return self._thread.call(body) if self._thread is not None else body()

    def _layout(self) -> None:
        if self.layout == "ipset":
            self.ipset.ensure({name: spec for name, (_, spec) in self._our_sets().items()})
        for family in _FAMILIES:
            self._in_table(family, lambda table, rule, f=family:  # type: ignore[misc]
                           self._build(table, rule, f))
        if self.layout == "ipset":
            stale = {name for name in self.ipset.names()
                     if self._is_ours(name) and name not in self._our_sets()}
            self.ipset.destroy(stale)

    def _teardown(self) -> None:
        for family in _FAMILIES:
            self._in_table(family, lambda table, rule: self._remove_all(table))
        self.ipset_destroy_ours()

    def ipset_destroy_ours(self) -> None:
        try:
            names = self.ipset.names()
        except FirewallError:
            return  # no ipset tool: nothing of ours can exist
        self.ipset.destroy(name for name in names if self._is_ours(name))

    def _build(self, table: Any, rule_cls: Any, family: int) -> None:
        iptc = self.iptc
        kept = self._read_chains(table) if self.layout == "rules" else {}
        self._unhook(table)
        wanted = {self.chain_name(jail) for jail in self._jails}
        for chain in builtins.list(table.chains):
            if self._is_ours(chain.name) and chain.name not in wanted:
                chain.flush()
                table.delete_chain(chain.name)
        position = 0
        for jail in self._jails.values():
            name = self.chain_name(jail.name)
            if not table.is_chain(name):
                table.create_chain(name)
            chain = iptc.Chain(table, name)
            chain.flush()
            if self.layout == "ipset":
                for networks in (False, True):
                    rule = self._verdict(rule_cls, jail)
                    match = rule.create_match("set")
                    match.match_set = [self.set_name(jail.name, family, networks), "src"]
                    chain.append_rule(rule)
            else:
                for address in sorted(kept.get(jail.name, ())):
                    chain.append_rule(self._address_rule(rule_cls, jail, address))
            hook = iptc.Chain(table, "INPUT")
            for rule in self._hook_rules(rule_cls, jail, name):
                hook.insert_rule(rule, position)
                position += 1

    def _hook_rules(self, rule_cls: Any, jail: JailFirewall, chain: str) -> builtins.list[Any]:
        protocols: Iterable[str | None]
        if jail.protocol != "all":
            protocols = (jail.protocol,)
        else:
            protocols = (None,) if jail.allports else _ALL_PROTOCOLS
        rules = []
        for protocol in protocols:
            for ports in ([None] if jail.allports else port_groups(jail.ports)):
                rule = rule_cls()
                if protocol is not None:
                    rule.protocol = protocol
                if ports is not None:
                    rule.create_match("multiport").dports = ports
                rule.target = self.iptc.Target(rule, chain)
                rules.append(rule)
        return rules

    def _verdict(self, rule_cls: Any, jail: JailFirewall) -> Any:
        rule = rule_cls()
        if jail.blocktype == "reject":
            if jail.protocol == "tcp":
                rule.protocol = "tcp"
                rule.target = self.iptc.Target(rule, "REJECT")
                rule.target.reject_with = "tcp-reset"
            else:
                rule.target = self.iptc.Target(rule, "REJECT")
        else:
            rule.target = self.iptc.Target(rule, "DROP")
        return rule

    def _address_rule(self, rule_cls: Any, jail: JailFirewall, address: str) -> Any:
        rule = self._verdict(rule_cls, jail)
        rule.src = address
        return rule

    def _unhook(self, table: Any) -> None:
        hook = self.iptc.Chain(table, "INPUT")
        for rule in builtins.list(hook.rules):
            if self._is_ours(str(rule.target.name)):
                hook.delete_rule(rule)

    def _remove_all(self, table: Any) -> None:
        self._unhook(table)
        for chain in builtins.list(table.chains):
            if self._is_ours(chain.name):
                chain.flush()
                table.delete_chain(chain.name)

    def _chains_by_jail(self, table: Any) -> dict[str, Any]:
        return {jail: self.iptc.Chain(table, self.chain_name(jail)) for jail in self._jails
                if table.is_chain(self.chain_name(jail))}

    def _read_chains(self, table: Any) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for jail, chain in self._chains_by_jail(table).items():
            found[jail] = {address for address in map(_rule_source, chain.rules) if address}
        return found

    def _change_rules(self, table: Any, rule_cls: Any, family: int,
                      changes: dict[str, tuple[set[str], set[str]]]) -> None:
        chains = self._chains_by_jail(table)
        for jail, (adds, removes) in changes.items():
            if jail not in chains:
                raise FirewallError(f"chain {self.chain_name(jail)} (IPv{family}) is missing")
            chain = chains[jail]
            present: dict[str, Any] = {}
            for rule in chain.rules:
                address = _rule_source(rule)
                if address:
                    present[address] = rule
            for address in removes:
                if address in present:
                    chain.delete_rule(present.pop(address))
            for address in sorted(adds - present.keys()):
                chain.append_rule(self._address_rule(rule_cls, self._jails[jail], address))

    def _fill_chains(self, table: Any, rule_cls: Any, family: int,
                     addresses: dict[str, set[str]]) -> None:
        chains = self._chains_by_jail(table)
        for jail, wanted in addresses.items():
            if jail not in chains:
                raise FirewallError(f"chain {self.chain_name(jail)} (IPv{family}) is missing")
            chains[jail].flush()
            for address in sorted(wanted):
                chains[jail].append_rule(self._address_rule(rule_cls, self._jails[jail],
                                                            address))

    def _hooks_present(self, table: Any) -> bool:
        chains = self._chains_by_jail(table)
        if len(chains) != len(self._jails):
            return False
        hooked = {str(rule.target.name) for rule in self.iptc.Chain(table, "INPUT").rules}
        if not {self.chain_name(jail) for jail in self._jails} <= hooked:
            return False
        if self.layout == "ipset":
            return all(len(chain.rules) == 2 for chain in chains.values())
        return True


def _is_network(target: str) -> bool:
    return "/" in target


def _rule_source(rule: Any) -> str | None:
    """The rule's source address or network, canonical as tailban's targets; None for any.

    iptc shows ``ADDR/NETMASK`` for IPv4 and ``ADDR/PREFIXLEN`` for IPv6.
    """
    text = str(rule.src)
    if text.startswith("!"):
        return None
    target = normalise_target(text)
    return None if target in ("0.0.0.0/0", "::/0") else target


def _seconds(timeout: int | None | bool) -> int | None:
    return None if timeout is None or isinstance(timeout, bool) else timeout
