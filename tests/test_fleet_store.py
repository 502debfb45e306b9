"""The fleet store on a real PostgreSQL server (and the same contract on SQLite)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import wait_for
from tailban.config.model import FleetSettings
from tailban.daemon.fleet import open_store
from tailban.fleet.link import FleetLink
from tailban.fleet.policy import FleetDecisions, FleetJailRules, FleetRules
from tailban.stores.fleet import (
    FleetStore,
    FleetStoreError,
    Outgoing,
    PostgresFleetStore,
    SqliteFleetStore,
)
from tailban.tools.fleet_admin import GRANTS, fleet_bans


def ban(ip: str, jail: str = "sshd", at: float | None = None, ttl: float = 600) -> Outgoing:
    at = time.time() if at is None else at
    return Outgoing("ban", ip, jail, "3 failures", at, at + ttl)


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.sqlite3'}"
    server = request.getfixturevalue("pg")
    return str(server.url())


def connect(url: str, listen: bool = False) -> FleetStore:
    if url.startswith("sqlite"):
        return SqliteFleetStore(url[len("sqlite://"):])
    return PostgresFleetStore(url, listen=listen)


@pytest.fixture
def store(store_url: str) -> Iterator[FleetStore]:
    s = connect(store_url)
    s.migrate()
    yield s
    s.close()


def test_migrations_are_idempotent_and_recorded(store_url: str) -> None:
    s = connect(store_url)
    try:
        assert s.migrate() == [1]
        assert s.migrate() == []
        assert s.schema_version() == 1  # type: ignore[attr-defined]
    finally:
        s.close()


def test_publish_then_read_in_id_order(store: FleetStore) -> None:
    first = store.publish("web1", "", [ban("203.0.113.1"), ban("203.0.113.2")])
    second = store.publish("web2", "mail", [ban("2001:db8::7", "postfix")])
    assert second > first
    rows = store.read_after(0, 100)
    assert [(r[2], r[4], r[5]) for r in rows] == [
        ("203.0.113.1", "web1", ""), ("203.0.113.2", "web1", ""),
        ("2001:db8::7", "web2", "mail")]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert store.read_after(first, 100)[0][2] == "2001:db8::7"
    assert store.read_after(0, 2)[-1][2] == "203.0.113.2"


def test_unban_lifts_and_active_bans_count_each_address_once(store: FleetStore) -> None:
    now = time.time()
    store.publish("web1", "", [ban("203.0.113.1"), ban("203.0.113.9")])
    store.publish("web2", "", [ban("203.0.113.1"), ban("203.0.113.3", ttl=-10, at=now - 100)])
    merged = fleet_bans(store.active_bans(now))
    assert [(e["ip"], e["hosts"]) for e in merged] == [
        ("203.0.113.1", ["web1", "web2"]), ("203.0.113.9", ["web1"])]
    store.publish("web3", "", [Outgoing("unban", "203.0.113.1", "", "unban --fleet", now, None)])
    assert [e["ip"] for e in fleet_bans(store.active_bans(now))] == ["203.0.113.9"]


def test_expiry_removes_old_finished_rows_only(store: FleetStore) -> None:
    now = time.time()
    store.publish("web1", "", [ban("203.0.113.1", at=now - 50, ttl=10),
                               Outgoing("ban", "203.0.113.2", "sshd", "", now, None),
                               ban("203.0.113.3", ttl=3600)])
    assert store.expire(now + 100, keep=60) == 1  # created 100 s "ago", ended: gone
    assert sorted(r[2] for r in store.read_after(0, 10)) == ["203.0.113.2", "203.0.113.3"]


def test_a_notification_wakes_a_listener_at_once(pg: Any) -> None:
    listener = PostgresFleetStore(pg.url(), listen=True)
    writer = PostgresFleetStore(pg.url())
    writer.migrate()
    try:
        assert listener.wait(0.2) is False
        woke: list[float] = []

        def listen() -> None:
            if listener.wait(5.0):
                woke.append(time.monotonic())

        thread = threading.Thread(target=listen)
        thread.start()
        time.sleep(0.1)
        sent = time.monotonic()
        writer.publish("web1", "", [ban("203.0.113.1")])
        thread.join(6)
        assert woke and woke[0] - sent < 0.5
    finally:
        listener.close()
        writer.close()


def test_a_least_privilege_role_can_share_but_not_alter(pg: Any) -> None:
    owner = PostgresFleetStore(pg.url())
    owner.migrate()
    owner.close()
    grants = GRANTS.format(role="tb_host", database="postgres").replace(
        "PASSWORD '...'", "")
    pg.psql(grants)
    host_url = pg.url(user="tb_host")
    settings = FleetSettings(store=host_url, host="web1", migrate=False)
    s = open_store(settings)  # schema current: accepted without migrating
    try:
        s.publish("web1", "", [ban("203.0.113.1")])
        s.publish("web1", "", [Outgoing("unban", "203.0.113.1", "", "", time.time(), None)])
        assert len(s.read_after(0, 10)) == 2
        with pytest.raises(FleetStoreError, match="permission denied|must be owner"):
            s.migrate_drop = None  # type: ignore[attr-defined]
            s._run("DROP TABLE fleet_events")  # type: ignore[attr-defined]
    finally:
        s.close()
    with psycopg.connect(host_url, autocommit=True) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE intruder (x int)")


def test_an_unmigrated_store_is_refused_with_advice(pg: Any) -> None:
    with pytest.raises(FleetStoreError, match="tailban fleet init"):
        open_store(FleetSettings(store=pg.url(), migrate=False))


def test_bad_url_and_dead_server_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FleetStoreError, match="cannot connect"):
        PostgresFleetStore(f"postgresql://x@/db?host={tmp_path}&port=1", connect_timeout=1)


# -- two links sharing one server -----------------------------------------------------------


class Host:
    """A FleetLink with what a daemon would do with its callbacks."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.received: list[tuple[float, FleetDecisions]] = []
        self.confirmed: list[int] = []
        self.got = threading.Condition()
        rules = FleetRules(name, {"sshd": FleetJailRules("sshd")})
        settings = FleetSettings(store=url, host=name)
        self.link = FleetLink(lambda listen: open_store(settings, listen, not listen), name, "",
                              rules, self._deliver, self.confirmed.extend, idle_wait=0.5)

    def _deliver(self, decisions: FleetDecisions) -> None:
        with self.got:
            self.received.append((time.time(), decisions))
            self.got.notify_all()

    def banned(self) -> set[str]:
        return {b.ip for _, d in self.received for b in d.bans}


@pytest.fixture
def hosts(pg: Any) -> Iterator[list[Host]]:
    made = [Host("web1", pg.url()), Host("web2", pg.url())]
    for host in made:
        host.link.start(0, [])
    yield made
    for host in made:
        host.link.stop()


def test_a_ban_published_by_one_host_reaches_the_other_within_a_second(
        hosts: list[Host]) -> None:
    web1, web2 = hosts
    assert wait_for(lambda: web1.link.publisher.connected and web2.link.subscriber.connected, 10)
    sent = time.time()
    web1.link.publish([(1, ban("203.0.113.50", at=sent))])
    assert wait_for(lambda: "203.0.113.50" in web2.banned(), 3)
    arrived = next(t for t, d in web2.received if d.bans)
    assert arrived - sent < 1.0, f"propagation took {arrived - sent:.3f} s"
    assert wait_for(lambda: web1.confirmed == [1], 2)
    assert "203.0.113.50" not in web1.banned()  # its own row comes back and passes


def test_an_outage_costs_sharing_only_and_both_sides_catch_up(pg: Any,
                                                              hosts: list[Host]) -> None:
    web1, web2 = hosts
    assert wait_for(lambda: web1.link.publisher.connected and web2.link.subscriber.connected, 10)
    pg.stop("immediate")
    web1.link.publish([(7, ban("203.0.113.60"))])
    assert wait_for(lambda: not web1.link.publisher.connected, 10)
    status = web1.link.status()
    assert status["publisher"]["outbox"] == 1 and status["publisher"]["error"]
    assert web1.confirmed == []
    pg.start()
    assert wait_for(lambda: "203.0.113.60" in web2.banned(), 40)
    assert web1.confirmed == [7]
    assert web1.link.status()["publisher"]["connected"]
