"""Route (blackhole) backend against a real kernel, with real packets, in namespaces.

Also holds the packet helpers the other firewall tests import: a TCP listener in a
server namespace and a connect probe from a client namespace.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import Namespaces, wait_for
from tailban.core.events import Ban, Unban
from tailban.firewall.base import FirewallBatch, JailFirewall
from tailban.firewall.commands import netns_runner
from tailban.firewall.route import RouteBackend

NOW = 1_000_000.0
ROUTED = JailFirewall("sshd", (), "all", True, "drop")

_LISTENER = """
import socket, selectors, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(64); sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept(); conn.close()
"""

_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError:
    sys.exit(1)
"""


@dataclass
class Site:
    """A server namespace and two clients, each on its own veth link, IPv4 and IPv6."""

    netns: Namespaces
    server: str
    client1: str
    client2: str
    server_v4_1: str = "192.0.2.1"
    client1_v4: str = "192.0.2.2"
    server_v6_1: str = "2001:db8:1::1"
    client1_v6: str = "2001:db8:1::2"
    server_v4_2: str = "198.51.100.1"
    client2_v4: str = "198.51.100.2"
    server_v6_2: str = "2001:db8:2::1"
    client2_v6: str = "2001:db8:2::2"

    def connects(self, client: str, address: str, port: int, timeout: float = 0.6) -> bool:
        argv = self.netns.exec_argv(client, [sys.executable, "-c", _CONNECT, address,
                                             str(port), str(timeout)])
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0


@contextlib.contextmanager
def running_site(netns: Namespaces) -> Iterator[Site]:
    server, c1, c2 = netns.add("srv"), netns.add("c1"), netns.add("c2")
    netns.link(server, c1, ["192.0.2.1/24", "2001:db8:1::1/64"],
               ["192.0.2.2/24", "2001:db8:1::2/64"])
    netns.link(server, c2, ["198.51.100.1/24", "2001:db8:2::1/64"],
               ["198.51.100.2/24", "2001:db8:2::2/64"])
    ports = ["22", "2222", "8080"]
    listener = subprocess.Popen(netns.exec_argv(server, [sys.executable, "-c", _LISTENER,
                                                         *ports]))
    s = Site(netns, server, c1, c2)
    try:
        assert wait_for(lambda: s.connects(c1, s.server_v4_1, 22), 10, 0.1)
        assert wait_for(lambda: s.connects(c1, s.server_v6_1, 22), 10, 0.1)
        yield s
    finally:
        listener.kill()
        listener.wait(5)


@pytest.fixture
def site(netns: Namespaces) -> Iterator[Site]:
    with running_site(netns) as s:
        yield s


def ban(ip: str, jail: str = "sshd", seconds: float | None = 600) -> Ban:
    return Ban(jail, ip, NOW, None if seconds is None else NOW + seconds, 3, "line")


def routes(netns: Namespaces, ns: str) -> str:
    return (netns.run(ns, ["ip", "-4", "route", "show", "type", "blackhole"]).stdout
            + netns.run(ns, ["ip", "-6", "route", "show", "type", "blackhole"]).stdout)


def test_blackhole_blocks_real_packets_and_unban_restores(site: Site) -> None:
    fw = RouteBackend(netns_runner(site.server))
    fw.start([ROUTED])
    fw.reconcile([], NOW)
    batch = FirewallBatch()
    batch.ban(ban(site.client1_v4))
    batch.ban(ban(site.client1_v6))
    fw.apply(batch, NOW)
    assert fw.list() == {"sshd": {site.client1_v4, site.client1_v6}}
    assert fw.is_intact()
    # The SYN arrives, the SYN-ACK meets the blackhole: the client times out, every port.
    for port in (22, 8080):
        assert not site.connects(site.client1, site.server_v4_1, port)
    assert not site.connects(site.client1, site.server_v6_1, 22)
    assert site.connects(site.client2, site.server_v4_2, 22)
    assert site.connects(site.client2, site.server_v6_2, 22)

    batch = FirewallBatch()
    batch.unban(Unban("sshd", site.client1_v4, NOW))
    batch.unban(Unban("sshd", "203.0.113.9", NOW))  # absent: must not fail the batch
    fw.apply(batch, NOW)
    assert site.connects(site.client1, site.server_v4_1, 22)
    assert not site.connects(site.client1, site.server_v6_1, 22)
    fw.stop(flush=True)
    assert routes(site.netns, site.server) == ""
    assert site.connects(site.client1, site.server_v6_1, 22)


def test_reconcile_shared_addresses_and_foreign_routes(netns: Namespaces) -> None:
    ns = netns.add("rt")
    netns.run(ns, ["ip", "route", "add", "blackhole", "203.0.113.200"])  # not ours
    fw = RouteBackend(netns_runner(ns))
    web = JailFirewall("web", (), "all", True, "drop")
    fw.start([ROUTED, web])
    fw.reconcile([ban("192.0.2.7"), ban("192.0.2.7", jail="web"), ban("2001:db8::7"),
                  ban("192.0.2.8", seconds=0)], NOW)
    assert fw.list() == {"sshd": {"192.0.2.7", "2001:db8::7"}, "web": {"192.0.2.7"}}
    # Two jails ban the same address: the route stays until both unbanned it.
    batch = FirewallBatch()
    batch.unban(Unban("sshd", "192.0.2.7", NOW))
    fw.apply(batch, NOW)
    assert "192.0.2.7" in routes(netns, ns)
    netns.run(ns, ["ip", "-6", "route", "flush", "type", "blackhole"])
    assert not fw.is_intact()
    fw.reconcile([ban("2001:db8::7"), ban("192.0.2.9", jail="web")], NOW)
    assert fw.list() == {"sshd": {"2001:db8::7"}, "web": {"192.0.2.9"}}
    assert "192.0.2.7" not in routes(netns, ns)
    fw.stop(flush=True)
    assert routes(netns, ns).split() == ["blackhole", "203.0.113.200"]


def test_one_process_per_batch() -> None:
    calls: list[tuple[list[str], str | None]] = []

    class Recorder:
        def run(self, argv: list[str], stdin: str | None = None) -> str:
            calls.append((list(argv), stdin))
            return ""

    fw = RouteBackend(Recorder())
    fw.ip = "ip"
    fw.start([ROUTED])
    batch = FirewallBatch()
    for i in range(500):
        batch.ban(ban(f"10.0.{i // 256}.{i % 256}"))
    fw.apply(batch, NOW)
    assert len(calls) == 1 and calls[0][0] == ["ip", "-batch", "-"]
    assert calls[0][1] is not None and calls[0][1].count("\n") == 500
    assert calls[0][1].startswith("route replace blackhole 10.0.0.0 proto 242\n")


def test_network_blackholes(netns: Namespaces) -> None:
    ns = netns.add("rn")
    fw = RouteBackend(netns_runner(ns))
    fw.start([ROUTED])
    fw.reconcile([ban("198.51.100.0/24"), ban("2001:db8:1:2::/64"), ban("192.0.2.3")], NOW)
    assert fw.list() == {"sshd": {"198.51.100.0/24", "2001:db8:1:2::/64", "192.0.2.3"}}
    assert fw.is_intact()
    assert "198.51.100.0/24" in routes(netns, ns)
    batch = FirewallBatch()
    batch.unban(Unban("sshd", "198.51.100.0/24", NOW))
    fw.apply(batch, NOW)
    assert fw.list() == {"sshd": {"2001:db8:1:2::/64", "192.0.2.3"}}
    fw.stop(flush=True)
