"""Which backend a ``banaction`` names, and one backend object over several kinds.

``BANACTIONS`` maps a banaction (tailban's names and fail2ban's action names and aliases)
to ``(kind, allports)``. The kinds are the keys of ``KINDS``:

* ``nftables``: :class:`~tailban.firewall.nftables.NftablesBackend` (sets with timeouts).
* ``iptables``: iptables chain per jail + one ipset per jail and family (kernel expiry);
  the default for every ``iptables*`` banaction, including fail2ban's ``iptables-multiport``
  and ``iptables-allports``, which in fail2ban add one rule per address.
* ``iptables-rules``: iptables chain per jail with one rule per address (no ipset needed).
* ``route``: a blackhole route per address (always all ports).
* ``ipfw`` and ``pf``: FreeBSD/OpenBSD tables (see :mod:`tailban.firewall.bsd`).

:class:`CompositeBackend` keeps the daemon's single-backend view when jails use different
kinds: it routes each jail's bans to that jail's backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from tailban.core.events import Ban
from tailban.firewall.base import FirewallBackend, FirewallBatch, FirewallError, JailFirewall

KINDS = ("nftables", "iptables", "iptables-rules", "route", "ipfw", "pf")

BANACTIONS: dict[str, tuple[str, bool]] = {
    "nftables": ("nftables", False),
    "nftables-multiport": ("nftables", False),
    "nftables[type=multiport]": ("nftables", False),
    "nftables-allports": ("nftables", True),
    "nftables[type=allports]": ("nftables", True),
    "iptables": ("iptables", False),
    "iptables-multiport": ("iptables", False),
    "iptables[type=multiport]": ("iptables", False),
    "iptables-allports": ("iptables", True),
    "iptables[type=allports]": ("iptables", True),
    "iptables-new": ("iptables", False),
    "iptables-ipset": ("iptables", False),
    "iptables-ipset-proto4": ("iptables", False),
    "iptables-ipset[type=multiport]": ("iptables", False),
    "iptables-ipset[type=allports]": ("iptables", True),
    "iptables-ipset-proto6": ("iptables", False),
    "iptables-ipset-proto6-allports": ("iptables", True),
    "iptables-rules": ("iptables-rules", False),
    "iptables-rules-allports": ("iptables-rules", True),
    "route": ("route", True),
    "ipfw": ("ipfw", False),
    "pf": ("pf", False),
    "pf[actiontype=<multiport>]": ("pf", False),
    "pf[actiontype=<allports>]": ("pf", True),
}


def banaction(text: str) -> tuple[str, bool]:
    """``(kind, allports)`` for a banaction as written in a jail file, or ValueError."""
    key = text.strip().lower().replace(" ", "")
    if key not in BANACTIONS:
        names = ", ".join(sorted(k for k in BANACTIONS if "[" not in k))
        raise ValueError(f"unknown banaction (available: {names})")
    return BANACTIONS[key]


def make_backend(kind: str, table: str = "tailban", netns: str | None = None) -> FirewallBackend:
    """A fresh backend of ``kind``; ``netns`` runs it inside a named network namespace."""
    from tailban.firewall.commands import netns_runner

    if kind == "nftables":
        from tailban.firewall.nft_runner import NftCommandRunner, default_runner
        from tailban.firewall.nftables import NftablesBackend

        runner = (default_runner() if netns is None
                  else NftCommandRunner(prefix=("ip", "netns", "exec", netns)))
        return NftablesBackend(table, runner)
    if kind in ("iptables", "iptables-rules"):
        from tailban.firewall.iptables import IptablesBackend

        return IptablesBackend(layout="rules" if kind == "iptables-rules" else "ipset",
                               prefix=table, netns=netns)
    if kind == "route":
        from tailban.firewall.route import RouteBackend

        return RouteBackend(netns_runner(netns))
    if kind == "ipfw":
        from tailban.firewall.bsd import IpfwBackend

        return IpfwBackend(netns_runner(netns), prefix=table)
    if kind == "pf":
        from tailban.firewall.bsd import PfBackend

        return PfBackend(netns_runner(netns), anchor=table)
    raise ValueError(f"unknown firewall kind {kind!r} (known: {', '.join(KINDS)})")


class CompositeBackend:
    """The backend contract over several backends, one per kind, created on demand.

    ``kinds`` says which kind each jail uses; a jail not named there uses ``default``.
    ``apply`` splits a batch by kind and gives every backend its part; a backend that fails
    does not stop the others, and the whole batch is reported failed so the caller retries
    it: every backend's ``apply`` is idempotent, so the parts that landed land again.
    """

    def __init__(self, kinds: Iterable[tuple[JailFirewall, str]],
                 factory: Callable[[str], FirewallBackend] = make_backend,
                 default: str = "nftables") -> None:
        self.factory = factory
        self.default = default
        self.backends: dict[str, FirewallBackend] = {}
        self._kind_of: dict[str, str] = {}
        self.name = default
        self.configure(kinds)

    @property
    def in_process(self) -> bool:
        """Every backend in use changes the kernel without running a program (the
        firewall worker may then apply small changes on the event loop's thread)."""
        return bool(self.backends) and all(getattr(b, "in_process", False)
                                           for b in self.backends.values())

    def _rename(self) -> None:
        """``name`` lists the kinds in use, e.g. ``nftables+route`` (shown by status)."""
        self.name = "+".join(sorted(set(self._kind_of.values())) or [self.default])

    def configure(self, kinds: Iterable[tuple[JailFirewall, str]]) -> None:
        """Set which kind each jail uses (call before ``start`` after a reload)."""
        self._kind_of = {}
        for jail, kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown firewall kind {kind!r}")
            self._kind_of[jail.name] = kind
        self._rename()

    def kind_of(self, jail: str) -> str:
        return self._kind_of.get(jail, self.default)

    def backend(self, kind: str) -> FirewallBackend:
        if kind not in self.backends:
            self.backends[kind] = self.factory(kind)
        return self.backends[kind]

    # -- the contract -------------------------------------------------------------------

    def start(self, jails: Sequence[JailFirewall]) -> None:
        groups: dict[str, list[JailFirewall]] = {kind: [] for kind in self.backends}
        for jail in jails:
            self._kind_of.setdefault(jail.name, self.default)
            groups.setdefault(self.kind_of(jail.name), []).append(jail)
        self._kind_of = {jail.name: self.kind_of(jail.name) for jail in jails}
        self._rename()
        # A backend with no jails left gets start([]) so it removes its stale objects.
        self._each(lambda kind: self.backend(kind).start(groups[kind]), groups)

    def apply(self, batch: FirewallBatch, now: float) -> None:
        parts: dict[str, FirewallBatch] = {}
        for key, ban in batch.bans.items():
            parts.setdefault(self.kind_of(ban.jail), FirewallBatch()).bans[key] = ban
        for key, unban in batch.unbans.items():
            parts.setdefault(self.kind_of(unban.jail), FirewallBatch()).unbans[key] = unban
        self._each(lambda kind: self.backend(kind).apply(parts[kind], now), parts)

    def reconcile(self, bans: Sequence[Ban], now: float) -> None:
        parts: dict[str, list[Ban]] = {kind: [] for kind in self.backends}
        for ban in bans:
            parts.setdefault(self.kind_of(ban.jail), []).append(ban)
        self._each(lambda kind: self.backend(kind).reconcile(parts[kind], now), parts)

    def stop(self, flush: bool) -> None:
        self._each(lambda kind: self.backends[kind].stop(flush), list(self.backends))

    def list(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {}
        for kind, backend in self.backends.items():
            for jail, addresses in backend.list().items():
                if self.kind_of(jail) == kind:
                    result.setdefault(jail, set()).update(addresses)
        return result

    def is_intact(self) -> bool:
        """False when any backend that can tell reports its objects changed."""
        for backend in self.backends.values():
            check = getattr(backend, "is_intact", None)
            if check is not None and not check():
                return False
        return True

    def _each(self, action: Callable[[str], None], kinds: Iterable[str]) -> None:
        errors: list[str] = []
        for kind in kinds:
            try:
                action(kind)
            except FirewallError as exc:
                errors.append(f"{kind}: {exc}")
        if errors:
            raise FirewallError("; ".join(errors))
