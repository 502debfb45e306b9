"""`tailban report` and `tailban incident`: read the store directly, no daemon needed."""

from __future__ import annotations

import contextlib
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
    """The system's zone with its daylight-saving rules (not today's fixed offset), so a
    year's report puts summer and winter hours where they belong."""
    from pathlib import Path
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    names = []
    if os.environ.get("TZ"):
        names.append(os.environ["TZ"].lstrip(":"))
    with contextlib.suppress(OSError):
        names.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            names.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in names:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def usable_store(path: str) -> str | None:
    """Why the database at ``path`` cannot be read by a report command, or None."""
    if not os.path.exists(path):
        return f"no database at {path}"
    return ensure_current_schema(path)


def ensure_current_schema(path: str) -> str | None:
    """Bring an older store forward before reading it read-only; an error text if we can't."""
    import sqlite3

    from tailban.stores.migrations import latest
    from tailban.stores.sqlite import LOCAL_STEPS, SqliteStore

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error as exc:
        return f"{path} is not a tailban database ({exc})"
    finally:
        db.close()
    if row is not None and int(row[0]) >= latest(LOCAL_STEPS):
        return None
    try:
        SqliteStore(path).close()
    except (sqlite3.Error, OSError) as exc:
        return (f"{path} has an older schema and could not be upgraded ({exc}); start the "
                "daemon once, or run the report as a user who may write the file")
    return None


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
    problem = usable_store(path)
    if problem:
        print(f"tailban: {problem}", file=sys.stderr)
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
    problem = usable_store(path)
    if problem:
        print(f"tailban: {problem}", file=sys.stderr)
        return 1
    db = sqlite3.connect(path, timeout=10)
    try:
        incident = build_incident(db, address, start, local_zone())
        to = recipient(target, incident, mail)
        reporter = reporter_of(history, mail, socket.gethostname())
        message, settings = incident_message(template or history.incident_template, mail,
                                             reporter, incident, to)
        if not send:
            sys.stdout.write(preview(message))
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


def preview(message: Any) -> str:
    """Headers and decoded text parts: what the recipient will read, not the MIME bytes."""
    lines = [f"{key}: {value}" for key, value in message.items()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            name = part.get_filename()
            lines += ["", f"--- {part.get_content_type()}" + (f" ({name})" if name else "")
                      + " ---", part.get_content()]
    return "\n".join(lines) + "\n"


def alerts_command(conf: str, db_path: str | None, since: str, as_json: bool) -> int:
    """List stored alerts, newest last; attacker text stays data (escaped when printed)."""
    now = time.time()
    try:
        start = parse_when(since, now)
    except ValueError as exc:
        print(f"tailban: {exc}", file=sys.stderr)
        return 2
    path = db_path or load_daemon_settings(conf).dbfile
    problem = usable_store(path)
    if problem:
        print(f"tailban: {problem}", file=sys.stderr)
        return 1
    db = open_readonly(path)
    try:
        rows = db.execute("SELECT id, t, kind, jail, subject, score, reasons, action, acked_at "
                          "FROM alerts WHERE t >= ? ORDER BY id", (start,)).fetchall()
    finally:
        db.close()
    alerts = [{"id": r[0], "time": r[1], "kind": r[2], "jail": r[3], "subject": r[4],
               "score": r[5], "reasons": json.loads(r[6]), "action": r[7],
               "acked_at": r[8]} for r in rows]
    if as_json:
        print(json.dumps(alerts, indent=1, ensure_ascii=False))
        return 0
    if not alerts:
        print("no alerts")
    for alert in alerts:
        when = datetime.fromtimestamp(alert["time"]).astimezone().strftime("%Y-%m-%d %H:%M")
        acked = "  (acknowledged)" if alert["acked_at"] else ""
        print(f"#{alert['id']} {when} {alert['kind']:<11} {_safe(alert['jail'])} "
              f"{_safe(alert['subject'])} score {alert['score']:.1f} "
              f"[{alert['action']}]{acked}")
        for reason in alert["reasons"]:
            print(f"    {_safe(reason)}")
    return 0


def _safe(value: object) -> str:
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in str(value))
