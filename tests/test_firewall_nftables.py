"""nftables backend against a real kernel, inside a private network namespace."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from conftest import Namespaces, wait_for
from tailban.core.events import Ban, Unban
from tailban.daemon.firewall_worker import FirewallWorker
from tailban.firewall.base import FirewallBatch, FirewallError, JailFirewall
from tailban.firewall.nft_runner import NftCommandRunner
from tailban.firewall.nftables import NftablesBackend

SSHD = JailFirewall("sshd", ("22",), "tcp", False, "drop")
MAIL = JailFirewall("postfix-sasl", ("25", "465", "587"), "tcp", False, "reject")
NOW = 1_000_000.0


@pytest.fixture
def ns(netns: Namespaces) -> str:
    return netns.add("fw")


def backend_in(ns: str, table: str = "tailban") -> NftablesBackend:
    return NftablesBackend(table, NftCommandRunner(prefix=("ip", "netns", "exec", ns)))


def ban(ip: str, jail: str = "sshd", seconds: float | None = 600) -> Ban:
    return Ban(jail, ip, NOW, None if seconds is None else NOW + seconds, 3, "line")


def elements(netns: Namespaces, ns: str, name: str) -> dict[str, int | None]:
    out = netns.run(ns, ["nft", "-j", "list", "set", "inet", "tailban", name]).stdout
    found: dict[str, int | None] = {}
    for item in json.loads(out)["nftables"]:
        for elem in item.get("set", {}).get("elem", []):
            if isinstance(elem, dict):
                found[elem["elem"]["val"]] = elem["elem"].get("timeout")
            else:
                found[elem] = None
    return found


def test_layout_apply_list_reconcile(netns: Namespaces, ns: str) -> None:
    fw = backend_in(ns)
    fw.start([SSHD, MAIL])
    ruleset = netns.run(ns, ["nft", "list", "table", "inet", "tailban"]).stdout
    assert "set sshd-v4" in ruleset and "set postfix-sasl-v6" in ruleset
    v4_set = netns.run(ns, ["nft", "list", "set", "inet", "tailban", "sshd-v4"]).stdout
    assert "flags timeout" in v4_set and "interval" not in v4_set  # O(1) inserts
    assert "flags interval,timeout" in ruleset  # only the separate networks sets
    assert "tcp dport 22 ip saddr @sshd-v4 drop" in ruleset
    assert "tcp dport { 25, 465, 587 } ip6 saddr @postfix-sasl-v6 reject" in ruleset

    batch = FirewallBatch()
    batch.ban(ban("192.0.2.1"))
    batch.ban(ban("2001:db8::1"))
    batch.ban(ban("192.0.2.2", seconds=None))
    batch.ban(ban("198.51.100.9", jail="postfix-sasl"))
    fw.apply(batch, NOW)
    v4 = elements(netns, ns, "sshd-v4")
    assert v4.keys() == {"192.0.2.1", "192.0.2.2"}
    assert v4["192.0.2.1"] == 600 and v4["192.0.2.2"] is None
    assert elements(netns, ns, "sshd-v6").keys() == {"2001:db8::1"}
    assert fw.list()["postfix-sasl"] == {"198.51.100.9"}

    # Unban of a present and an absent address in one transaction: the absent one must
    # not abort the batch.
    batch = FirewallBatch()
    batch.unban(Unban("sshd", "192.0.2.1", NOW))
    batch.unban(Unban("sshd", "203.0.113.50", NOW))
    fw.apply(batch, NOW)
    assert elements(netns, ns, "sshd-v4").keys() == {"192.0.2.2"}

    # Reconcile makes the kernel equal the database, atomically.
    fw.reconcile([ban("192.0.2.77"), ban("2001:db8::77", seconds=60)], NOW)
    assert fw.list()["sshd"] == {"192.0.2.77", "2001:db8::77"}
    assert fw.list()["postfix-sasl"] == set()

    # Restart with fewer jails drops the stale sets; the rest stays.
    fw2 = backend_in(ns)
    fw2.start([SSHD])
    assert "postfix-sasl" not in netns.run(ns, ["nft", "list", "table", "inet", "tailban"]).stdout
    assert fw2.list()["sshd"] == {"192.0.2.77", "2001:db8::77"}
    assert fw2.is_intact()
    fw2.stop(flush=False)
    assert netns.run(ns, ["nft", "list", "table", "inet", "tailban"], check=False).returncode == 0
    fw2.stop(flush=True)
    assert netns.run(ns, ["nft", "list", "table", "inet", "tailban"], check=False).returncode != 0


def test_ten_thousand_bans_in_one_transaction(netns: Namespaces, ns: str) -> None:
    fw = backend_in(ns)
    fw.start([SSHD])
    batch = FirewallBatch()
    for i in range(10_000):
        batch.ban(ban(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"))
    fw.apply(batch, NOW)
    assert len(fw.list()["sshd"]) == 10_000


def test_flushed_ruleset_is_detected_and_restored(netns: Namespaces, ns: str) -> None:
    fw = backend_in(ns)
    fw.start([SSHD])
    fw.reconcile([ban("192.0.2.5")], NOW)
    netns.run(ns, ["nft", "flush", "ruleset"])
    assert not fw.is_intact()
    fw.start([SSHD])
    fw.reconcile([ban("192.0.2.5")], NOW)
    assert fw.is_intact() and fw.list()["sshd"] == {"192.0.2.5"}


def test_failed_transaction_is_retried_never_dropped(netns: Namespaces, ns: str,
                                                     tmp_path: Path) -> None:
    """The nft binary fails while a flag file exists; bans stay pending, then land."""
    flag = tmp_path / "broken"
    wrapper = tmp_path / "nft"
    wrapper.write_text(f"#!/bin/sh\n[ -e {flag} ] && {{ echo 'simulated failure' >&2; "
                       f"exit 1; }}\nexec ip netns exec {ns} nft \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    fw = NftablesBackend("tailban", NftCommandRunner(binary=str(wrapper)))
    fw.start([SSHD])
    flag.touch()
    with pytest.raises(FirewallError):
        fw.reconcile([], NOW)

    async def scenario() -> tuple[int, str | None, bool]:
        worker = FirewallWorker(fw, clock=lambda: NOW)
        worker.start()
        ticket = worker.submit([ban("192.0.2.10"), ban("192.0.2.11")])
        assert not await worker.wait(ticket, 0.5)
        pending, error = len(worker.pending), worker.last_error
        worker.submit([ban("192.0.2.12")], [Unban("sshd", "192.0.2.11", NOW)])
        os.unlink(flag)
        done = await worker.drain(10.0)
        await worker.stop()
        return pending, error, done

    pending, error, done = asyncio.run(scenario())
    assert pending == 2 and error is not None and "simulated failure" in error
    assert done
    assert wait_for(lambda: fw.list()["sshd"] == {"192.0.2.10", "192.0.2.12"}, 5)


def test_long_and_short_ban_times(netns: Namespaces, ns: str) -> None:
    """A week, a year and beyond (no kernel timeout then), and under a second."""
    fw = backend_in(ns)
    fw.start([SSHD])
    batch = FirewallBatch()
    batch.ban(ban("192.0.2.1", seconds=604800))
    batch.ban(ban("192.0.2.2", seconds=365 * 86400))
    batch.ban(ban("192.0.2.3", seconds=10 * 365 * 86400))
    batch.ban(ban("192.0.2.4", seconds=0.3))
    fw.apply(batch, NOW)
    found = elements(netns, ns, "sshd-v4")
    assert found["192.0.2.1"] == 604800 and found["192.0.2.2"] == 365 * 86400
    assert found["192.0.2.3"] is None and found["192.0.2.4"] == 1


def test_network_bans_go_to_the_interval_sets(netns: Namespaces, ns: str) -> None:
    fw = backend_in(ns)
    fw.start([SSHD])
    batch = FirewallBatch()
    batch.ban(ban("198.51.100.0/24"))
    batch.ban(ban("2001:db8:1:2::/64", seconds=None))
    batch.ban(ban("192.0.2.9"))
    fw.apply(batch, NOW)
    assert fw.list()["sshd"] == {"198.51.100.0/24", "2001:db8:1:2::/64", "192.0.2.9"}
    assert "198.51.100.0/24" in netns.run(
        ns, ["nft", "list", "set", "inet", "tailban", "sshd-n4"]).stdout
    batch = FirewallBatch()
    batch.unban(Unban("sshd", "198.51.100.0/24", NOW))
    batch.unban(Unban("sshd", "203.0.113.0/24", NOW))  # absent: must not abort the batch
    fw.apply(batch, NOW)
    assert fw.list()["sshd"] == {"2001:db8:1:2::/64", "192.0.2.9"}
    fw.reconcile([ban("10.9.0.0/16")], NOW)
    assert fw.list()["sshd"] == {"10.9.0.0/16"}
    assert fw.is_intact()
