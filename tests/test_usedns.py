"""usedns: host names of log lines resolved off the matching thread, forward-confirmed.

Against a real DNS server on 127.0.0.1 (tests/dns_server.py). The daemon-level test is in
tests/test_e2e_enrich.py (it needs a namespace for the server and the firewall).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from dns_server import DnsTestServer
from tailban.core.events import Failure
from tailban.daemon.names import NameWorker
from tailban.enrich.dns import DnsSettings, Resolver
from tailban.enrich.names import NameCache, confirm

ATTACKER = "203.0.113.66"
VICTIM = "192.0.2.10"


@pytest.fixture
def server() -> Iterator[DnsTestServer]:
    srv = DnsTestServer().start()
    # the attacker owns evil.example: its A records may name anyone; PTRs only their own
    srv.add("bot.evil.example", "A", ATTACKER)
    srv.add("bot.evil.example", "A", VICTIM)
    srv.add("66.113.0.203.in-addr.arpa", "PTR", "bot.evil.example")
    srv.add("10.2.0.192.in-addr.arpa", "PTR", "www.victim.example")
    srv.add("www.victim.example", "A", VICTIM)
    try:
        yield srv
    finally:
        srv.stop()


def resolver(server: DnsTestServer) -> Resolver:
    return Resolver(DnsSettings(nameservers=("127.0.0.1",), port=server.port, timeout=0.5))


def test_only_addresses_whose_reverse_name_is_the_logged_name(server: DnsTestServer) -> None:
    answer = confirm("Bot.Evil.Example.", resolver(server))
    assert answer.addresses == (ATTACKER,)
    assert answer.refused == (VICTIM,)
    # a name whose forward and reverse agree is its address
    assert confirm("www.victim.example", resolver(server)).addresses == (VICTIM,)
    assert confirm("nx.evil.example", resolver(server)).addresses == ()


@pytest.mark.parametrize("text", ["a;reboot", "$(id).evil.example", "x y", "-rf", "",
                                  "a" * 300, "1.2.3.4.5"])
def test_attacker_text_that_is_no_host_name_is_never_queried(server: DnsTestServer,
                                                            text: str) -> None:
    assert confirm(text, resolver(server)).addresses == ()
    assert server.count(text, "A") == 0


def test_answers_are_cached(server: DnsTestServer) -> None:
    now = [0.0]
    cache = NameCache(resolver(server), lambda: now[0], ttl=300, negative_ttl=60)
    for _ in range(3):
        assert cache.answer("bot.evil.example").addresses == (ATTACKER,)
    ptr = "66.113.0.203.in-addr.arpa"
    assert server.count(ptr, "PTR") == 1 and cache.lookups == 1
    now[0] = 301
    cache.answer("bot.evil.example")
    assert server.count(ptr, "PTR") == 2


def test_worker_delivers_confirmed_copies_and_warns_once(server: DnsTestServer,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    got: list[tuple[str, list[Failure]]] = []
    done = threading.Event()

    def deliver(jail: str, failures: list[Failure]) -> None:
        got.append((jail, failures))
        if len(got) == 2:
            done.set()

    worker = NameWorker(resolver(server), deliver)
    worker.start()
    try:
        line = "sshd(pam_unix)[1]: authentication failure; rhost=bot.evil.example"
        failures = [Failure(None, "bot.evil.example", 1000.0 + i, "root", "sshd:x", 1, line)
                    for i in range(2)]
        with caplog.at_level(logging.WARNING, logger="tailban.usedns"):
            worker.submit("sshd", "warn", failures)
            worker.submit("sshd", "warn", [Failure(None, "nx.evil.example", 1.0, None, "r")])
            assert done.wait(5)
    finally:
        worker.stop()
    assert [(jail, [(f.ip, f.host, f.time) for f in fs]) for jail, fs in got] == [
        ("sshd", [(ATTACKER, "bot.evil.example", 1000.0)]),
        ("sshd", [(ATTACKER, "bot.evil.example", 1001.0)])]
    counted = [r for r in caplog.records if "usedns = warn" in r.getMessage()]
    assert len(counted) == 1  # once per name and hour, not per failure
    assert any(VICTIM in r.getMessage() and "not counted" in r.getMessage()
               for r in caplog.records)
    status = worker.status()
    assert (status["resolved"], status["unresolved"]) == (2, 1)
