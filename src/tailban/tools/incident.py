"""Incidents from the store: who attacked, when, how often, and the log lines as evidence.

Used by ``tailban incident`` and by the daemon's ``incident.auto``. Lines come from the
raw failures kept for ``[history] raw`` (rotated logs are never re-read); counts before
that come from the daily roll-ups.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import tzinfo
from email.message import EmailMessage

from tailban.config.model import HistorySettings
from tailban.notify.mail import MailSettings
from tailban.reports.incident import (
    Incident,
    Reporter,
    abuse_message,
    jpcert_message,
    xarf_message,
)
from tailban.stores.history import ROWID_KEY, rolled_until

TEMPLATES = {"jpcert": jpcert_message, "abuse": abuse_message, "xarf": xarf_message}


class NoIncident(Exception):
    """Nothing recorded for the address in the period, or no address to send to."""


def evidence(db: sqlite3.Connection, ip: str, since: float, rolled: float,
             ) -> list[tuple[float, str, int, str | None]]:
    """The address's raw failures since ``since``, in time order.

    The raw table has no index by address (it made each stored failure cost twice as
    much), so the search reads only the time spans the daily roll-ups saw the address in,
    plus the rows no roll-up has looked at yet (by time after the last roll-up, and by
    rowid for late rows of an older time).
    """
    spans = sorted((max(float(first), since), float(last)) for first, last in db.execute(
        "SELECT first, last FROM roll_day_ip WHERE ip = ? AND last >= ?", (ip, since)))
    merged: list[list[float]] = []
    for low, high in spans:
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    found: dict[int, tuple[float, str, int, str | None]] = {}
    columns = "SELECT rowid, t, jail, count, line FROM failures WHERE "
    queries: list[tuple[str, tuple[object, ...]]] = [
        (columns + "t >= ? AND t <= ? AND ip = ?", (low, high, ip)) for low, high in merged]
    queries.append((columns + "t >= ? AND ip = ?", (max(since, rolled), ip)))
    seen = db.execute("SELECT value FROM meta WHERE key = ?", (ROWID_KEY,)).fetchone()
    queries.append((columns + "rowid > ? AND +t >= ? AND ip = ?",
                    (int(seen[0]) if seen else 0, since, ip)))
    for sql, params in queries:
        for rowid, t, jail, count, line in db.execute(sql, params):
            found[rowid] = (t, jail, count, line)
    return sorted(found.values(), key=lambda row: row[0])


def build_incident(db: sqlite3.Connection, ip: str, since: float, tz: tzinfo,
                   ) -> Incident:
    # Counts like the report: roll-ups before rolled_until, raw rows after it (raw rows are
    # kept after being rolled up, so counting both would count them twice). Evidence lines
    # come from every raw row in the period.
    rolled = rolled_until(db)
    rows = evidence(db, ip, since, rolled)
    counts: dict[str, int] = {}
    first = last = None
    for t, jail, count, _line in rows:
        if t < rolled:
            continue
        counts[jail] = counts.get(jail, 0) + count
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
    rolled_rows = db.execute(
        "SELECT jail, sum(count), min(first), max(last) FROM roll_day_ip "
        "WHERE ip = ? AND last >= ? AND first < ? GROUP BY jail", (ip, since, rolled))
    for jail, count, r_first, r_last in rolled_rows:
        counts[jail] = counts.get(jail, 0) + int(count)
        first = r_first if first is None else min(first, r_first)
        last = r_last if last is None else max(last, r_last)
    if first is None or last is None:
        raise NoIncident(f"no failures of {ip} recorded since then")
    bans = db.execute("SELECT count(*) FROM ban_history WHERE ip = ? AND banned_at >= ?",
                      (ip, since)).fetchone()[0]
    hostname = country = asn = ""
    abuse = None
    found = db.execute("SELECT data FROM enrichment WHERE ip = ?", (ip,)).fetchone()
    if found:
        facts = json.loads(found[0])
        confirmed = facts.get("rdns_confirmed") or []
        hostname = confirmed[0] if confirmed else ""
        country = " ".join(str(x) for x in (facts.get("country_iso"),
                                            facts.get("country_name")) if x)
        if facts.get("asn") is not None:
            asn = f"AS{facts['asn']} {facts.get('as_org') or ''}".strip()
        abuse = (facts.get("whois") or {}).get("abuse")
    return Incident(ip=ip, hostname=hostname, first_seen=first, last_seen=last, timezone=tz,
                    jails=tuple(sorted(counts.items())),
                    lines=tuple(str(r[3]) for r in rows if r[3]), country=country, asn=asn,
                    abuse=abuse, bans=max(1, int(bans)))


def reporter_of(history: HistorySettings, mail: MailSettings, host: str) -> Reporter:
    return Reporter(name=history.reporter_name or f"tailban on {host}",
                    organisation=history.reporter_org or host,
                    email=history.reporter_email or mail.sender,
                    phone=history.reporter_phone or None, host=host)


def recipient(target: str, incident: Incident, mail: MailSettings) -> str:
    """``me`` (the administrators, for review), ``abuse`` (whois contact) or an address."""
    if target == "me":
        return mail.destination[0]
    if target == "abuse":
        if not incident.abuse:
            raise NoIncident(f"no abuse contact is known for {incident.ip} "
                             "(enrichment with whois finds it)")
        return incident.abuse
    return target


def last_sent(db: sqlite3.Connection, ip: str) -> float | None:
    row = db.execute("SELECT max(sent_at) FROM incidents WHERE ip = ? AND recipient != 'me'",
                     (ip,)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def incident_message(template: str, mail: MailSettings, reporter: Reporter,
                     incident: Incident, to: str) -> tuple[EmailMessage, MailSettings]:
    """The message and the settings that deliver it to ``to`` only."""
    message = TEMPLATES[template](mail, reporter, incident, to)
    return message, replace(mail, destination=(to,))
