"""`tailban report` and `tailban incident`: read the store directly, no daemon needed."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime, tzinfo
from typing import Any

from tailban.config.load import load_config, load_daemon_settings
from tailban.core.durations import parse_duration
from tailban.reports.compute import compute_report, open_readonly


def parse_when(text: str, now: float) -> float:
    """``30d``, ``1y`` (365 days), ``2026-01-01`` or an ISO time; local time zone."""
    stripped = text.strip()
    if stripped.endswith("y") and stripped[:-1].isdigit():
        return now - int(stripped[:-1]) * 365 * 86400.0
    try:
        return now - parse_duration(stripped)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"not a duration (30d, 1y) or a date (2026-01-31): {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def report_command(conf: str, db_path: str | None, since: str, until: str | None,
                   jails: list[str] | None, fmt: str, out: str | None,
                   until_country: str | None) -> int:
    now = time.time()
    try:
        start = parse_when(since, now)
        end = parse_when(until, now) if until else now
    except ValueError as exc:
        print(f"tailban: {exc}", file=sys.stderr)
        return 2
    settings = load_daemon_settings(conf)
    path = db_path or settings.dbfile
    if not os.path.exists(path):
        print(f"tailban: no database at {path}", file=sys.stderr)
        return 1
    db = open_readonly(path)
    try:
        report = compute_report(db, since=start, until=end, tz=local_zone(), jails=jails,
                                privileged=settings.history.privileged,
                                until_country=until_country, host=socket.gethostname(),
                                now=now)
    finally:
        db.close()
    text = render(report, fmt)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    from tailban.reports.render import render_csv, render_html, render_text
    if fmt == "html":
        return render_html(report)
    if fmt == "csv":
        return render_csv(report)
    return render_text(report)




def incident_command(conf: str, db_path: str | None, ip: str, since: str,
                     template: str | None, target: str, send: bool) -> int:
    import sqlite3

    from tailban.core.addresses import normalise_ip
    from tailban.notify.mail import MailError, MailSender
    from tailban.tools.incident import (
        NoIncident,
        build_incident,
        incident_message,
        last_sent,
        recipient,
        reporter_of,
    )

    address = normalise_ip(ip)
    if address is None:
        print(f"tailban: not an IP address: {ip!r}", file=sys.stderr)
        return 2
    config = load_config(conf)
    mail = config.daemon.mail
    history = config.daemon.history
    if mail is None:
        print("tailban: incident reports are mails: set destination in [mail] of "
              "tailban.conf", file=sys.stderr)
        return 78
    now = time.time()
    try:
        start = parse_when(since, now)
    except ValueError as exc:
        print(f"tailban: {exc}", file=sys.stderr)
        return 2
    path = db_path or config.daemon.dbfile
    if not os.path.exists(path):
        print(f"tailban: no database at {path}", file=sys.stderr)
        return 1
    db = sqlite3.connect(path, timeout=10)
    try:
        incident = build_incident(db, address, start, local_zone())
        to = recipient(target, incident, mail)
        reporter = reporter_of(history, mail, socket.gethostname())
        message, settings = incident_message(template or history.incident_template, mail,
                                             reporter, incident, to)
        if not send:
            sys.stdout.write(message.as_string())
            print(f"\n(not sent: add --send to mail it to {to})", file=sys.stderr)
            return 0
        if target != "me":
            previous = last_sent(db, address)
            if previous is not None and now - previous < history.incident_min_interval:
                when = datetime.fromtimestamp(previous).astimezone().isoformat(timespec="minutes")
                print(f"tailban: {address} was already reported on {when}; [incident] "
                      "min_interval stops another report", file=sys.stderr)
                return 1
        MailSender(settings).send(message)
        db.execute("INSERT INTO incidents VALUES (?, ?, ?, ?)",
                   (address, now, template or history.incident_template,
                    "me" if target == "me" else to))
        db.commit()
        print(f"incident report about {address} sent to {to}")
        return 0
    except (NoIncident, ValueError, MailError) as exc:
        print(f"tailban: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
