"""The banaction registry and CompositeBackend over two real backends in a namespace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import Namespaces
from tailban.core.events import Ban, Unban
from tailban.firewall.base import FirewallBackend, FirewallBatch, FirewallError, JailFirewall
from tailban.firewall.registry import BANACTIONS, KINDS, CompositeBackend, banaction, make_backend
from test_firewall_route import Site, running_site

NOW = 1_000_000.0
SSHD = JailFirewall("sshd", ("22",), "tcp", False, "drop")
WEB = JailFirewall("web", (), "all", True, "drop")


@pytest.fixture
def site(netns: Namespaces) -> Iterator[Site]:
    with running_site(netns) as s:
        yield s


def ban(ip: str, jail: str, seconds: float | None = 600) -> Ban:
    return Ban(jail, ip, NOW, None if seconds is None else NOW + seconds, 3, "line")


def test_banactions() -> None:
    assert banaction("nftables") == ("nftables", False)
    assert banaction(" iptables ") == ("iptables", False)
    assert banaction("iptables-multiport") == ("iptables", False)
    assert banaction("iptables-allports") == ("iptables", True)
    assert banaction("iptables-ipset-proto6-allports") == ("iptables", True)
    assert banaction("iptables-rules") == ("iptables-rules", False)
    assert banaction("route") == ("route", True)
    assert banaction("pf[actiontype=<allports>]") == ("pf", True)
    assert {kind for kind, _ in BANACTIONS.values()} == set(KINDS)
    with pytest.raises(ValueError, match="unknown banaction"):
        banaction("shorewall")
    with pytest.raises(ValueError):
        make_backend("shorewall")


def test_composite_routes_each_jail_to_its_backend(site: Site) -> None:
    made: list[str] = []

    def factory(kind: str) -> FirewallBackend:
        made.append(kind)
        return make_backend(kind, table="tbtest", netns=site.server)

    fw = CompositeBackend([(SSHD, "nftables"), (WEB, "route")], factory)
    assert fw.name == "nftables+route"
    fw.start([SSHD, WEB])
    assert sorted(made) == ["nftables", "route"]
    fw.reconcile([ban(site.client1_v4, "sshd"), ban(site.client2_v6, "web")], NOW)
    assert fw.list() == {"sshd": {site.client1_v4}, "web": {site.client2_v6}}
    nft = site.netns.run(site.server, ["nft", "list", "table", "inet", "tbtest"]).stdout
    assert site.client1_v4 in nft and site.client2_v6 not in nft
    # sshd (nftables, port 22 only) and web (route, every port) block independently.
    assert not site.connects(site.client1, site.server_v4_1, 22)
    assert site.connects(site.client1, site.server_v4_1, 8080)
    assert not site.connects(site.client2, site.server_v6_2, 8080)
    assert site.connects(site.client2, site.server_v4_2, 22)

    batch = FirewallBatch()
    batch.unban(Unban("sshd", site.client1_v4, NOW))
    batch.unban(Unban("web", site.client2_v6, NOW))
    batch.ban(ban(site.client1_v6, "sshd"))
    batch.ban(ban(site.client2_v4, "web"))
    fw.apply(batch, NOW)
    assert fw.list() == {"sshd": {site.client1_v6}, "web": {site.client2_v4}}
    assert fw.is_intact()
    assert site.connects(site.client1, site.server_v4_1, 22)
    assert not site.connects(site.client1, site.server_v6_1, 22)

    # A reload that moves web to nftables: route's stale routes go, nftables gets it.
    fw.configure([(SSHD, "nftables"), (WEB, "nftables")])
    fw.start([SSHD, WEB])
    fw.reconcile([ban(site.client2_v4, "web")], NOW)
    assert fw.name == "nftables"
    assert fw.list() == {"sshd": set(), "web": {site.client2_v4}}
    routes = site.netns.run(site.server, ["ip", "route", "show", "type", "blackhole"])
    assert routes.stdout == ""
    fw.stop(flush=True)
    assert site.netns.run(site.server, ["nft", "list", "table", "inet", "tbtest"],
                          check=False).returncode != 0
    assert site.connects(site.client2, site.server_v4_2, 22)


def test_one_failing_backend_does_not_stop_the_others() -> None:
    class Fake:
        def __init__(self, name: str, fail: bool) -> None:
            self.name, self.fail, self.seen = name, fail, []

        def start(self, jails: object) -> None: ...

        def apply(self, batch: FirewallBatch, now: float) -> None:
            self.seen.append(sorted(batch.bans))
            if self.fail:
                raise FirewallError("boom")

        def reconcile(self, bans: object, now: float) -> None: ...

        def stop(self, flush: bool) -> None: ...

        def list(self) -> dict[str, set[str]]:
            return {}

    fakes = {"nftables": Fake("nftables", True), "route": Fake("route", False)}
    fw = CompositeBackend([(SSHD, "nftables"), (WEB, "route")], lambda k: fakes[k])
    fw.start([SSHD, WEB])
    batch = FirewallBatch()
    batch.ban(ban("192.0.2.1", "sshd"))
    batch.ban(ban("192.0.2.2", "web"))
    with pytest.raises(FirewallError, match="nftables: boom"):
        fw.apply(batch, NOW)
    assert fakes["route"].seen == [[("web", "192.0.2.2")]]
    assert fakes["nftables"].seen == [[("sshd", "192.0.2.1")]]


def test_make_backend_builds_every_kind() -> None:
    names = {"nftables": "nftables", "route": "route", "ipfw": "ipfw", "pf": "pf"}
    try:
        import iptc  # noqa: F401
        names.update({"iptables": "iptables", "iptables-rules": "iptables-rules"})
    except ImportError:
        pass
    for kind, name in names.items():
        assert make_backend(kind).name == name
