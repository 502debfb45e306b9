"""Report and incident mails from the running daemon, received by a real SMTP server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import DaemonHandle, Namespaces, wait_for
from e2e_support import World
from test_e2e_enrich import ATTACKER, SPEC, failures, geoip_dbs, mails
from test_e2e_enrich import services as services  # noqa: F401  (the fixture)


def test_report_mail_and_incident_reports(netns: Namespaces, tmp_path: Path,
                                          make_daemon: Callable[..., DaemonHandle],
                                          services: Callable[..., dict[str, Any]]) -> None:
    ns = netns.add("R")
    world = World(netns, tmp_path, ns, ns, ns)
    ports = services(ns, SPEC)
    country, asn = geoip_dbs(tmp_path)
    log = tmp_path / "auth.log"
    log.write_text("")
    conf = (f"\n[enrich]\nenabled = yes\n[geoip]\ncountry_db = {country}\nasn_db = {asn}\n"
            f"[whois]\nserver = 127.0.0.1\nport = {ports['whois']}\ntimeout = 2\n"
            f"[dns]\nnameservers = 127.0.0.1\nport = {ports['dns']}\ntimeout = 1\n"
            f"[mail]\ndestination = admin@example.org\nsender = tailban@example.org\n"
            f"smtp_host = 127.0.0.1\nsmtp_port = {ports['smtp']}\nstartstop = no\n"
            f"[report]\nschedule = daily 03:00\n"
            f"[incident]\nauto = 1\ntemplate = xarf\nreporter_name = Hostmaster\n"
            f"reporter_email = hostmaster@example.org\n")
    daemon = make_daemon(f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\nmaxretry = 3\n"
                         "bantime = 2s\n", ns=ns, extra_daemon=conf)
    daemon.start()
    with log.open("a") as f:
        f.write(failures(ATTACKER, 3, user="<b>admin</b>\x1b[2J"))
    world.wait_banned("sshd-v4", ATTACKER)

    def incidents() -> list[Any]:
        return [m for m in mails(ports["out"]) if m["X-ARF"] == "YES"]

    # incident.auto = 1: the first ban sends an X-ARF report to the whois abuse contact
    assert wait_for(lambda: len(incidents()) == 1, 10)
    report = incidents()[0]
    assert str(report["To"]) == "abuse@example.net"
    names = [part.get_filename() for part in report.iter_parts()]
    assert names[1:] == ["report.txt", "logfile.log"]
    evidence = list(report.iter_parts())[2].get_content()
    assert "Failed password for <b>admin</b>" in evidence and "\x1b" not in evidence
    # a second ban of the same address within min_interval sends nothing more
    assert wait_for(lambda: not world.in_set("sshd-v4", ATTACKER), 10, 0.1)
    with log.open("a") as f:
        f.write(failures(ATTACKER, 3))
    world.wait_banned("sshd-v4", ATTACKER)
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert wait_for(lambda: json.loads(daemon.cli("status", "--json").stdout)["enrichment"]
                    ["worker"]["done"] >= 2, 10)
    assert len(incidents()) == 1, status
    refused = daemon.cli("incident", ATTACKER, "--to", "abuse", "--send", check=False)
    assert refused.returncode == 1 and "already reported" in refused.stderr

    # the report, mailed now: a plain-text part and the HTML as alternatives
    assert "report queued" in daemon.cli("report", "--mail").stdout
    assert wait_for(lambda: any("report" in str(m["Subject"]) for m in mails(ports["out"])
                                if m["X-ARF"] is None), 20)
    mail = next(m for m in mails(ports["out"]) if "report for" in str(m["Subject"]))
    assert mail.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in mail.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    html = list(mail.iter_parts())[1].get_content()
    assert "<script" not in html.lower() and "&lt;b&gt;admin&lt;/b&gt;" in html
    assert "6 attempts" in str(mail["Subject"]) or "6" in str(mail["Subject"])

    # a JPCERT report for review goes to the administrators, in ISO-2022-JP
    sent = daemon.cli("incident", ATTACKER, "--template", "jpcert", "--send")
    assert "sent to admin@example.org" in sent.stdout
    assert wait_for(lambda: any("iso-2022-jp" in str(m.get("Content-Type", "")).lower()
                                for m in mails(ports["out"])), 10)
    jp = next(m for m in mails(ports["out"])
              if "iso-2022-jp" in str(m.get("Content-Type", "")).lower())
    body = jp.get_content()
    assert ATTACKER in body and "attacker.example.net" in body and "ブルートフォース" in body
    world.close()
