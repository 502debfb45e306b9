"""Enrichment and ban mail in the running daemon, against real servers in its namespace.

DNS (dnslib), whois (a TCP server on port 43's protocol) and SMTP (aiosmtpd) run inside the
daemon's network namespace (tests/ns_services.py); GeoIP databases are real MaxMind files
written by the test. The addresses are public ones on purpose (whois refuses private
space); nothing leaves the namespace.
"""

from __future__ import annotations

import email
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, DaemonHandle, Namespaces, syslog_line, wait_for
from e2e_support import World
from mmdb_fixtures import write_asn_db, write_country_db

ATTACKER = "193.0.10.7"
QUIET = "45.79.10.20"
WHOIS_ANSWER = """% IANA WHOIS server
inetnum:      193.0.0.0 - 193.0.23.255
netname:      EXAMPLE-NET
descr:        $(reboot) `id` \r\nBcc: victim@example.org
country:      NL
abuse-mailbox: abuse@example.net
"""


@pytest.fixture
def services(netns: Namespaces, tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(ns: str, spec: dict[str, Any]) -> dict[str, Any]:
        spec_file = tmp_path / f"spec-{len(procs)}.json"
        spec_file.write_text(json.dumps(spec))
        out = tmp_path / f"out-{len(procs)}"
        proc = subprocess.Popen(
            netns.exec_argv(ns, [sys.executable, str(REPO / "tests" / "ns_services.py"),
                                 str(spec_file), str(out)]),
            stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        ports: dict[str, Any] = json.loads(proc.stdout.readline())
        ports["out"] = out
        return ports

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def failures(ip: str, n: int = 3, user: str = "root") -> str:
    return "".join(syslog_line(f"sshd[{500 + i}]: Failed password for {user} from {ip} port "
                               f"{42000 + i} ssh2") for i in range(n))


def mails(out: Path) -> list[EmailMessage]:
    found = sorted(out.glob("mail-*.eml"), key=lambda p: int(p.stem.split("-")[1]))
    return [email.message_from_bytes(p.read_bytes(), policy=default_policy)  # type: ignore[misc]
            for p in found]


def geoip_dbs(tmp_path: Path) -> tuple[Path, Path]:
    country, asn = tmp_path / "country.mmdb", tmp_path / "asn.mmdb"
    write_country_db(country, {"193.0.0.0/16": ("NL", "Netherlands"),
                               "45.79.0.0/16": ("US", "United States")})
    write_asn_db(asn, {"193.0.0.0/16": (3333, "EXAMPLE-NCC"), "45.79.0.0/16": (63949, "LIN")})
    return country, asn


def enrich_conf(ports: dict[str, Any], country: Path, asn: Path, *, mail: str = "",
                zones: str = "zen.spamhaus.org dead.example") -> str:
    return (f"\n[enrich]\nenabled = yes\n[geoip]\ncountry_db = {country}\nasn_db = {asn}\n"
            f"[whois]\nserver = 127.0.0.1\nport = {ports['whois']}\ntimeout = 2\n"
            f"[dns]\nnameservers = 127.0.0.1\nport = {ports['dns']}\ntimeout = 1\n"
            f"[dnsbl]\nzones = {zones}\nbudget = 2\n"
            f"[mail]\ndestination = admin@example.org\nsender = tailban@example.org\n"
            f"smtp_host = 127.0.0.1\nsmtp_port = {ports['smtp']}\n{mail}")


def jails(log: Path, extra: str = "") -> str:
    return (f"[DEFAULT]\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\n\n[sshd]\nenabled = true\n"
            f"port = 22\nlogpath = {log}\naction = %(action_mwl)s\n{extra}")


SPEC: dict[str, Any] = {
    "dns": [["7.10.0.193.in-addr.arpa", "PTR", "attacker.example.net"],
            ["attacker.example.net", "A", ATTACKER],
            ["20.10.79.45.in-addr.arpa", "PTR", "liar.example.com"],
            ["liar.example.com", "A", "198.51.100.1"],
            ["7.10.0.193.zen.spamhaus.org", "A", "127.0.0.4"],
            ["7.10.0.193.zen.spamhaus.org", "TXT", "https://check.spamhaus.org/x"]],
    "dns_dead": ["dead.example"],
    "whois": {ATTACKER: WHOIS_ANSWER, "*": "% no data\n"},
}


def test_a_ban_is_enriched_shown_and_mailed(netns: Namespaces, tmp_path: Path,
                                            make_daemon: Callable[..., DaemonHandle],
                                            services: Callable[..., dict[str, Any]]) -> None:
    ns = netns.add("E")
    world = World(netns, tmp_path, ns, ns, ns)
    ports = services(ns, SPEC)
    country, asn = geoip_dbs(tmp_path)
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(jails(log), ns=ns, extra_daemon=enrich_conf(ports, country, asn))
    daemon.start()
    wait_for(lambda: len(mails(ports["out"])) >= 1, 5)  # the start mail
    with log.open("a") as f:
        f.write(failures(ATTACKER) + failures(QUIET))
    world.wait_banned("sshd-v4", ATTACKER)
    world.wait_banned("sshd-v4", QUIET)

    shown = json.loads(daemon.cli("show", ATTACKER, "--json").stdout)
    facts = shown["enrichment"]
    assert (facts["country_iso"], facts["country_source"]) == ("NL", "geoip")
    assert (facts["asn"], facts["as_org"]) == (3333, "EXAMPLE-NCC")
    assert facts["rdns_confirmed"] == ["attacker.example.net"]
    assert [d["zone"] for d in facts["dnsbl"]] == ["zen.spamhaus.org"]
    assert "XBL" in " ".join(facts["dnsbl"][0]["meanings"])
    assert facts["whois"]["abuse"] == "abuse@example.net"
    assert facts["whois"]["netname"] == "EXAMPLE-NET"
    assert any("dead.example" in n for n in facts["notes"])  # the zone that never answers
    assert shown["banned"][0]["jail"] == "sshd" and shown["bans_total"] == 1
    liar = json.loads(daemon.cli("show", QUIET, "--json").stdout)["enrichment"]
    assert liar["rdns"] == ["liar.example.com"] and liar["rdns_confirmed"] == []
    text = daemon.cli("show", QUIET).stdout
    assert "liar.example.com (NOT forward-confirmed)" in text
    rows = {r["ip"]: r for r in json.loads(daemon.cli("banned", "--json").stdout)}
    assert rows[ATTACKER]["country"] == "NL" and rows[ATTACKER]["dnsbl"] == ["zen.spamhaus.org"]

    def ban_mails() -> list[EmailMessage]:
        return [m for m in mails(ports["out"]) if "banned" in str(m["Subject"])]

    assert wait_for(lambda: len(ban_mails()) == 2, 10)
    mail = next(m for m in ban_mails() if ATTACKER in str(m["Subject"]))
    assert str(mail["To"]) == "admin@example.org" and mail["Bcc"] is None
    assert "NL" in str(mail["Subject"])
    body = mail.get_content()
    assert "abuse@example.net" in body and "attacker.example.net" in body
    assert "zen.spamhaus.org" in body and "AS3333" in body
    assert f"Failed password for root from {ATTACKER}" in body  # mail-whois-lines
    assert "$(reboot)" in body  # whois text arrives as inert text
    assert "\nBcc:" not in body.replace("\r\n", "\n").split("\n\n", 1)[0]
    status = json.loads(daemon.cli("status", "--json").stdout)["enrichment"]
    assert status["worker"]["done"] >= 2 and status["mail"]["sent"] >= 3
    print(f"enrichment median per address (test servers): {status['worker']['median_ms']} ms")
    daemon.stop()
    assert wait_for(lambda: any("stop" in str(m["Subject"]).lower()
                                for m in mails(ports["out"])), 5)
    world.close()


def test_a_resolver_that_never_answers_does_not_delay_bans(
        netns: Namespaces, tmp_path: Path, make_daemon: Callable[..., DaemonHandle],
        services: Callable[..., dict[str, Any]]) -> None:
    ns = netns.add("D")
    world = World(netns, tmp_path, ns, ns, ns)
    ports = services(ns, {"dns_dead": ["arpa", "example", "org"], "whois": {"*": "DEAD"}})
    country, asn = geoip_dbs(tmp_path)
    log = tmp_path / "auth.log"
    log.write_text("")
    daemon = make_daemon(jails(log), ns=ns, extra_daemon=enrich_conf(
        ports, country, asn, zones="zen.example.org"))
    daemon.start()
    delays = []
    for i in range(10):
        ip = f"45.79.1.{i + 1}"
        started = time.monotonic()
        with log.open("a") as f:
            f.write(failures(ip))
        world.wait_banned("sshd-v4", ip, timeout=5)
        delays.append(time.monotonic() - started)
    status = json.loads(daemon.cli("status", "--json").stdout)["enrichment"]["worker"]
    # The worker is stuck on the dead servers while every ban went through at once.
    assert status["pending"] >= 5 and status["busy_for"] is not None
    print(f"ban delays with a dead resolver: max {max(delays) * 1000:.0f} ms")
    assert max(delays) < 1.0
    world.close()


def test_dnsbl_action_ban_bans_a_listed_address_at_its_first_failure(
        netns: Namespaces, tmp_path: Path, make_daemon: Callable[..., DaemonHandle],
        services: Callable[..., dict[str, Any]]) -> None:
    ns = netns.add("L")
    world = World(netns, tmp_path, ns, ns, ns)
    ports = services(ns, SPEC)
    log = tmp_path / "auth.log"
    log.write_text("")
    conf = (f"\n[dns]\nnameservers = 127.0.0.1\nport = {ports['dns']}\ntimeout = 1\n"
            f"[dnsbl]\nzones = zen.spamhaus.org\n")
    daemon = make_daemon(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\nmaxretry = 5\n"
                         "dnsbl_action = ban\n", ns=ns, extra_daemon=conf)
    daemon.start()
    with log.open("a") as f:
        f.write(failures(ATTACKER, 1) + failures(QUIET, 1))
    world.wait_banned("sshd-v4", ATTACKER)
    rows = json.loads(daemon.cli("banned", "--json").stdout)
    assert [(r["ip"], r["source"]) for r in rows] == [(ATTACKER, "dnsbl")]
    assert not world.in_set("sshd-v4", QUIET)
    world.close()


def test_a_storm_sends_one_digest(netns: Namespaces, tmp_path: Path,
                                  make_daemon: Callable[..., DaemonHandle],
                                  services: Callable[..., dict[str, Any]]) -> None:
    ns = netns.add("M")
    world = World(netns, tmp_path, ns, ns, ns)
    ports = services(ns, {})
    log = tmp_path / "auth.log"
    log.write_text("")
    conf = (f"\n[mail]\ndestination = admin@example.org\nsmtp_host = 127.0.0.1\n"
            f"smtp_port = {ports['smtp']}\ndigest = 3s\nstartstop = no\n")
    daemon = make_daemon(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\nmaxretry = 3\n"
                         "action = %(action_)s\n  sendmail[name=sshd]\n", ns=ns,
                         extra_daemon=conf)
    daemon.start()
    with log.open("a") as f:
        f.write("".join(failures(f"45.{80 + i // 250}.{i % 250}.9") for i in range(1000)))
    world.wait_banned("sshd-v4", "45.83.249.9", timeout=10)
    assert wait_for(lambda: len(mails(ports["out"])) >= 1, 15)
    time.sleep(4)  # a second digest would have arrived by now
    received = mails(ports["out"])
    assert len(received) == 1, [str(m["Subject"]) for m in received]
    assert "1000" in str(received[0]["Subject"]) + received[0].get_content()
    world.close()


def test_usedns_bans_the_confirmed_address_of_a_logged_host_name(
        netns: Namespaces, tmp_path: Path, make_daemon: Callable[..., DaemonHandle],
        services: Callable[..., dict[str, Any]]) -> None:
    # attacker.example.net also lists QUIET among its A records; QUIET's reverse name is
    # another: only ATTACKER may be banned for lines that name attacker.example.net
    spec = dict(SPEC, dns=[*SPEC["dns"], ["attacker.example.net", "A", QUIET],
                           ["nx-only.example.net", "A", "198.51.100.77"]])
    ns = netns.add("U")
    world = World(netns, tmp_path, ns, ns, ns)
    ports = services(ns, spec)
    log = tmp_path / "secure"
    log.write_text("")
    conf = f"\n[dns]\nnameservers = 127.0.0.1\nport = {ports['dns']}\ntimeout = 1\n"
    daemon = make_daemon(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\nmaxretry = 3\n",
                         ns=ns, extra_daemon=conf)
    daemon.start()
    pam = ("sshd(pam_unix)[{pid}]: authentication failure; logname= uid=0 euid=0 "
           "tty=NODEVssh ruser= rhost={host}  user=root")
    with log.open("a") as f:
        f.write("".join(syslog_line(pam.format(pid=700 + i, host=host))
                        for i, host in enumerate(["attacker.example.net"] * 3
                                                 + ["nx-only.example.net"] * 3)))
    world.wait_banned("sshd-v4", ATTACKER)
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert wait_for(lambda: json.loads(daemon.cli("status", "--json").stdout)["usedns"]
                    ["unresolved"] == 3, 5), status
    assert not world.in_set("sshd-v4", QUIET)
    assert not world.in_set("sshd-v4", "198.51.100.77")
    assert "usedns = warn" in daemon.log.read_text()
    world.close()
