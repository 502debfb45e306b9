"""Anomaly detection in the running daemon: an unusual login, a distributed attack banned
by network, state kept across a restart, and a stuck detector never delaying a ban."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import DaemonHandle, Namespaces, syslog_line, wait_for
from e2e_support import World
from mmdb_fixtures import write_city_db
from test_e2e_enrich import failures
from test_e2e_enrich import services as services  # noqa: F401  (the fixture)

HOME = "193.0.10.5"  # "NL"
ABROAD = "45.79.10.20"  # "CN" in the test database


def accepted(user: str, ip: str, when: float, pid: int) -> str:
    return syslog_line(f"sshd[{pid}]: Accepted publickey for {user} from {ip} port 50000 ssh2: "
                       "ED25519 SHA256:abc", when)


def city_db(tmp_path: Path) -> Path:
    path = tmp_path / "city.mmdb"
    write_city_db(path, {"193.0.0.0/16": ("NL", "Netherlands", "Amsterdam", 52.37, 4.9),
                         "45.79.0.0/16": ("CN", "China", "Beijing", 39.9, 116.4)})
    return path


def alerts(daemon: DaemonHandle) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(daemon.cli("alerts", "--json", "--since",
                                                       "400d").stdout)
    return rows


def test_unusual_login_alert_survives_restart_and_can_be_learned(
        netns: Namespaces, tmp_path: Path, make_daemon: Callable[..., DaemonHandle]) -> None:
    ns = netns.add("N")
    log = tmp_path / "auth.log"
    now = time.time()
    day = 86400.0
    # 30 habitual logins over 30 days, office hours, from home
    start = now - 30 * day
    habit = "".join(accepted("alice", HOME, start + i * day + 3600 * (i % 3), 1000 + i)
                    for i in range(30))
    log.write_text(habit)
    conf = f"\n[geoip]\ncity_db = {city_db(tmp_path)}\n"
    daemon = make_daemon(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\n",
                         ns=ns, extra_daemon=conf)
    daemon.start("--from-start")
    assert wait_for(lambda: json.loads(daemon.cli("status", "--json").stdout)["anomaly"]
                    ["logins"] == 30, 10)
    assert alerts(daemon) == []  # habits learned, nothing unusual
    with log.open("a") as f:
        f.write(accepted("alice", ABROAD, now - 60, 2000))
    assert wait_for(lambda: len(alerts(daemon)) == 1, 10)
    alert = alerts(daemon)[0]
    assert alert["kind"] == "login" and alert["subject"] == "alice"
    assert any("CN" in reason for reason in alert["reasons"]), alert
    # the model's state survives a restart: the same foreign login is still unusual
    daemon.stop()
    daemon.start()
    status = json.loads(daemon.cli("status", "--json").stdout)["anomaly"]
    assert status["accounts"] == 1
    with log.open("a") as f:
        f.write(accepted("alice", ABROAD, time.time() - 30, 2001))
    assert wait_for(lambda: len(alerts(daemon)) == 2, 10)
    out = daemon.cli("alerts", "ack", str(alerts(daemon)[1]["id"]), "--learn").stdout
    assert "learned" in out
    assert alerts(daemon)[1]["acked_at"] is not None
    text = daemon.cli("alerts", "--since", "400d").stdout
    assert "alice" in text and "(acknowledged)" in text
    report = json.loads(daemon.cli("report", "--since", "60d", "--format", "json").stdout)
    assert report["alerts"]["totals"] == {"login": 2}
    assert "Anomaly alerts" in daemon.cli("report", "--since", "60d").stdout


def test_distributed_attack_from_one_network_is_banned_as_a_network(
        netns: Namespaces, tmp_path: Path, make_daemon: Callable[..., DaemonHandle]) -> None:
    ns = netns.add("W")
    world = World(netns, tmp_path, ns, ns, ns)
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\nmaxretry = 5\n"
                         "netban_action = ban\n", ns=ns)
    daemon.start()
    # 8 addresses of one /24, each tries 3 different accounts: nobody reaches maxretry
    lines = "".join(failures(f"45.80.7.{10 + a}", 1, user=f"user{a}{u}")
                    for a in range(8) for u in range(3))
    with log.open("a") as f:
        f.write(lines)
    assert wait_for(lambda: any(a["kind"] == "distributed" for a in alerts(daemon)), 10)
    assert wait_for(lambda: "45.80.7.0/24" in world.nft("list", "set", "inet", "tailban",
                                                        "sshd-n4").stdout, 5)
    rows = json.loads(daemon.cli("banned", "--json").stdout)
    assert [(r["ip"], r["source"]) for r in rows] == [("45.80.7.0/24", "netban")]
    world.close()


def test_a_stuck_detector_never_delays_a_ban(
        netns: Namespaces, tmp_path: Path, make_daemon: Callable[..., DaemonHandle],
        services: Callable[..., dict[str, Any]]) -> None:
    ns = netns.add("S")
    world = World(netns, tmp_path, ns, ns, ns)
    ports = services(ns, {"dns_dead": ["org"]})
    log = tmp_path / "auth.log"
    log.write_text("")
    conf = (f"\n[enrich]\nenabled = yes\nrdns = no\nwhois = no\n"
            f"[geoip]\ncity_db = {city_db(tmp_path)}\n"
            f"[dns]\nnameservers = 127.0.0.1\nport = {ports['dns']}\ntimeout = 1\n"
            f"[dnsbl]\nzones = zen.example.org\nbudget = 2\n")
    daemon = make_daemon(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\nmaxretry = 3\n",
                         ns=ns, extra_daemon=conf)
    daemon.start()
    # every login makes the detector thread wait for a DNSBL zone that never answers
    with log.open("a") as f:
        f.write("".join(accepted(f"u{i}", HOME, time.time(), 3000 + i) for i in range(20)))
    delays = []
    for i in range(5):
        ip = f"45.79.2.{i + 1}"
        began = time.monotonic()
        with log.open("a") as f:
            f.write(failures(ip))
        world.wait_banned("sshd-v4", ip, timeout=5)
        delays.append(time.monotonic() - began)
    status = json.loads(daemon.cli("status", "--json").stdout)["anomaly"]
    assert status["pending"] >= 1  # the detector is still busy with the logins
    print(f"ban delays with a stuck detector: max {max(delays) * 1000:.0f} ms")
    assert max(delays) < 1.0
    world.close()
