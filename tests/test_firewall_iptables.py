"""iptables backend (python-iptables, legacy tables) with ipset or per-address rules.

Each test runs in its own namespaces with real TCP connections; the host's tables are
never touched. iptc's chains live in the legacy tables: they are inspected with
``iptables-legacy``/``ip6tables-legacy`` (Debian's ``iptables`` is the nf_tables variant).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from conftest import Namespaces, require, wait_for
from tailban.core.events import Ban, Unban
from tailban.firewall.base import FirewallBatch, JailFirewall
from tailban.firewall.iptables import IptablesBackend, port_groups, short_name
from test_firewall_route import Site, running_site

NOW = 1_000_000.0
SSHD = JailFirewall("sshd", ("22", "2222"), "tcp", False, "drop")
REJECTING = JailFirewall("sshd", ("22", "2222"), "tcp", False, "reject")


@pytest.fixture
def site(netns: Namespaces) -> Iterator[Site]:
    try:
        import iptc  # noqa: F401
    except ImportError:
        require(False, "python-iptables is not installed")
    for tool in ("ipset", "iptables-legacy", "ip6tables-legacy"):
        require(shutil.which(tool) is not None, f"needs {tool} (scripts/test.sh installs it)")
    with running_site(netns) as s:
        yield s


def ban(ip: str, jail: str = "sshd", seconds: float | None = 600, now: float = NOW) -> Ban:
    return Ban(jail, ip, now, None if seconds is None else now + seconds, 3, "line")


def legacy(site: Site, family: int = 4) -> str:
    tool = "iptables-legacy" if family == 4 else "ip6tables-legacy"
    return site.netns.run(site.server, [tool, "-S"]).stdout


def ipsets(site: Site) -> str:
    return site.netns.run(site.server, ["ipset", "list", "-n"]).stdout


def check_blocking(site: Site, fw: IptablesBackend) -> None:
    """Shared scenario: ban client1 (v4 + v6), check ports and the other client, unban."""
    batch = FirewallBatch()
    batch.ban(ban(site.client1_v4))
    batch.ban(ban(site.client1_v6))
    fw.apply(batch, NOW)
    assert fw.list() == {"sshd": {site.client1_v4, site.client1_v6}}
    assert not site.connects(site.client1, site.server_v4_1, 22)
    assert not site.connects(site.client1, site.server_v4_1, 2222)
    assert not site.connects(site.client1, site.server_v6_1, 22)
    assert site.connects(site.client1, site.server_v4_1, 8080)  # not a jail port
    assert site.connects(site.client1, site.server_v6_1, 8080)
    assert site.connects(site.client2, site.server_v4_2, 22)
    assert site.connects(site.client2, site.server_v6_2, 22)

    batch = FirewallBatch()
    batch.unban(Unban("sshd", site.client1_v4, NOW))
    batch.unban(Unban("sshd", "203.0.113.9", NOW))  # absent: harmless
    fw.apply(batch, NOW)
    assert fw.list() == {"sshd": {site.client1_v6}}
    assert site.connects(site.client1, site.server_v4_1, 22)
    assert not site.connects(site.client1, site.server_v6_1, 22)


NET4 = "192.0.2.0/24"  # holds client1's 192.0.2.2, not client2's 198.51.100.2
NET6 = "2001:db8:1::/64"  # holds client1's 2001:db8:1::2, not client2's 2001:db8:2::2


def check_network_blocking(site: Site, fw: IptablesBackend) -> None:
    """Ban client1's /24 and /64 (plus client2's address): client1 is blocked, unban restores."""
    batch = FirewallBatch()
    batch.ban(ban(NET4))
    batch.ban(ban(NET6))
    fw.apply(batch, NOW)
    assert fw.list() == {"sshd": {NET4, NET6}}
    assert not site.connects(site.client1, site.server_v4_1, 22)
    assert not site.connects(site.client1, site.server_v6_1, 2222)
    assert site.connects(site.client1, site.server_v4_1, 8080)  # not a jail port
    assert site.connects(site.client2, site.server_v4_2, 22)  # outside both networks
    assert site.connects(site.client2, site.server_v6_2, 22)

    batch = FirewallBatch()
    batch.unban(Unban("sshd", NET4, NOW))
    batch.unban(Unban("sshd", NET6, NOW))
    batch.unban(Unban("sshd", "203.0.113.0/24", NOW))  # absent: harmless
    fw.apply(batch, NOW)
    assert fw.list() == {"sshd": set()}
    assert site.connects(site.client1, site.server_v4_1, 22)
    assert site.connects(site.client1, site.server_v6_1, 2222)


def test_ipset_layout_networks(site: Site) -> None:
    fw = IptablesBackend("ipset", netns=site.server)
    try:
        fw.start([REJECTING])
        fw.reconcile([], NOW)
        assert "-p tcp -m set --match-set tailban-sshd-n4 src -j REJECT" in legacy(site)
        assert "-p tcp -m set --match-set tailban-sshd-n6 src -j REJECT" in legacy(site, 6)
        assert {"tailban-sshd-v4", "tailban-sshd-n4", "tailban-sshd-v6",
                "tailban-sshd-n6"} <= set(ipsets(site).split())
        assert fw.is_intact()
        check_network_blocking(site, fw)

        # Reconcile routes networks and addresses to their sets.
        fw.reconcile([ban(NET6), ban(site.client2_v4)], NOW)
        assert fw.list() == {"sshd": {NET6, site.client2_v4}}
        assert site.netns.run(site.server, ["ipset", "test", "tailban-sshd-n6",
                                            site.client1_v6]).returncode == 0
        assert not site.connects(site.client1, site.server_v6_1, 22)
        assert site.connects(site.client1, site.server_v4_1, 22)

        # The network rule is checked too.
        site.netns.run(site.server, ["iptables-legacy", "-D", "tailban-sshd", "-p", "tcp",
                                     "-m", "set", "--match-set", "tailban-sshd-n4", "src",
                                     "-j", "REJECT", "--reject-with", "tcp-reset"])
        assert not fw.is_intact()

        # A long jail name: shortened set names (30 characters, and the 31-character
        # temporary sets of reconcile) stay within ipset's limit.
        long = JailFirewall("j" * 40, ("22",), "tcp", False, "reject")
        fw.start([REJECTING, long])
        fw.reconcile([ban(NET6), ban(NET4, jail=long.name), ban("192.0.2.9", jail=long.name)],
                     NOW)
        assert fw.is_intact()
        assert fw.list() == {"sshd": {NET6}, long.name: {NET4, "192.0.2.9"}}
        net_set = fw.set_name(long.name, 4, networks=True)
        assert len(net_set) == 30 and net_set in ipsets(site).split()
        assert not site.connects(site.client1, site.server_v4_1, 22)
        fw.stop(flush=True)
        assert "tailban" not in legacy(site) + legacy(site, 6) + ipsets(site)
        assert site.connects(site.client1, site.server_v6_1, 22)
    finally:
        fw.close()


def test_ipset_layout_blocks_expires_reconciles_and_flushes(site: Site) -> None:
    fw = IptablesBackend("ipset", netns=site.server)
    try:
        fw.start([SSHD])
        fw.reconcile([], NOW)
        rules = legacy(site)
        assert "-A INPUT -p tcp -m multiport --dports 22,2222 -j tailban-sshd" in rules
        assert "-A tailban-sshd -m set --match-set tailban-sshd-v4 src -j DROP" in rules
        assert "--match-set tailban-sshd-v6 src -j DROP" in legacy(site, 6)
        # The nf_tables `iptables` does not show (nor flush) the legacy tables.
        assert "tailban" not in site.netns.run(site.server, ["iptables", "-S"]).stdout
        assert fw.is_intact()
        check_blocking(site, fw)

        # Kernel expiry: a 2 s ban ends by itself, with no unban from tailban.
        now = time.time()
        batch = FirewallBatch()
        batch.ban(ban(site.client2_v4, seconds=2, now=now))
        fw.apply(batch, now)
        assert not site.connects(site.client2, site.server_v4_2, 22, timeout=0.3)
        assert wait_for(lambda: site.client2_v4 not in fw.list()["sshd"], 6, 0.2)
        assert site.connects(site.client2, site.server_v4_2, 22)

        # Someone flushes the legacy tables and destroys the sets: detected, restored.
        site.netns.run(site.server, ["iptables-legacy", "-F"])
        site.netns.run(site.server, ["ip6tables-legacy", "-F"])
        site.netns.run(site.server, ["ipset", "destroy", "tailban-sshd-v4"])
        assert not fw.is_intact()
        assert site.connects(site.client1, site.server_v6_1, 22)
        fw.start([SSHD])
        fw.reconcile([ban(site.client1_v4), ban(site.client1_v6)], NOW)
        assert fw.is_intact()
        assert not site.connects(site.client1, site.server_v4_1, 22)
        assert not site.connects(site.client1, site.server_v6_1, 22)

        fw.stop(flush=True)
        assert "tailban" not in legacy(site) + legacy(site, 6) + ipsets(site)
        assert site.connects(site.client1, site.server_v4_1, 22)
    finally:
        fw.close()


def test_rules_layout_blocks_reconciles_and_flushes(site: Site) -> None:
    fw = IptablesBackend("rules", netns=site.server)
    try:
        fw.start([REJECTING])
        check_blocking(site, fw)
        assert "-A tailban-sshd -s" not in legacy(site)  # the IPv4 ban was lifted
        assert f"-A tailban-sshd -s {site.client1_v6}/128 -p tcp -j REJECT" in legacy(site, 6)
        assert ipsets(site) == ""
        # A restart keeps the address rules until the reconcile that follows.
        again = IptablesBackend("rules", netns=site.server)
        try:
            again.start([REJECTING])
            assert again.list() == {"sshd": {site.client1_v6}}
        finally:
            again.close()
        site.netns.run(site.server, ["ip6tables-legacy", "-F", "tailban-sshd"])
        assert fw.list() == {"sshd": set()}
        fw.reconcile([ban(site.client2_v4), ban(site.client2_v6), ban("192.0.2.99", seconds=0)],
                     NOW)
        assert fw.list() == {"sshd": {site.client2_v4, site.client2_v6}}
        assert not site.connects(site.client2, site.server_v6_2, 2222)
        assert site.connects(site.client1, site.server_v6_1, 22)
        fw.reconcile([], NOW)
        check_network_blocking(site, fw)
        fw.reconcile([ban(NET4), ban(NET6)], NOW)
        assert f"-A tailban-sshd -s {NET4} -p tcp -j REJECT" in legacy(site)
        assert f"-A tailban-sshd -s {NET6} -p tcp -j REJECT" in legacy(site, 6)
        assert fw.list() == {"sshd": {NET4, NET6}}
        fw.stop(flush=True)
        assert "tailban" not in legacy(site) + legacy(site, 6)
        assert site.connects(site.client2, site.server_v6_2, 2222)
    finally:
        fw.close()


def test_names_and_port_groups() -> None:
    assert short_name("tailban-sshd", 28) == "tailban-sshd"
    long = short_name("tailban-" + "x" * 40, 28)
    assert len(long) == 28 and long != short_name("tailban-" + "x" * 41, 28)
    ports = [str(p) for p in range(1, 20)]
    assert port_groups(ports) == [",".join(ports[:15]), ",".join(ports[15:])]
    assert port_groups(["1000-2000", "22"]) == ["1000:2000,22"]
