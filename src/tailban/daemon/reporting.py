"""The scheduled report mail and automatic incident reports, beside the ban path.

The report and an incident's evidence are read on a worker thread from a read-only
connection (WAL: it never blocks the daemon's writes) and handed to the mail thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from tailban.notify.mail import report_message
from tailban.reports.compute import compute_report, open_readonly
from tailban.reports.incident import Incident
from tailban.tools.incident import (
    NoIncident,
    build_incident,
    incident_message,
    last_sent,
    reporter_of,
)
from tailban.tools.report import local_zone

if TYPE_CHECKING:
    from tailban.daemon.server import Daemon

log = logging.getLogger("tailban.report")


def next_run(schedule: str, after: float, tz: tzinfo) -> float | None:
    """When ``daily [HH:MM]``, ``weekly [HH:MM]`` (Mondays) or ``monthly [HH:MM]`` (the 1st)
    next comes after ``after``; default time 03:00."""
    words = schedule.split()
    if not words:
        return None
    hour, minute = (int(x) for x in (words[1] if len(words) > 1 else "03:00").split(":"))
    now = datetime.fromtimestamp(after, tz)
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    for _ in range(400):
        ok = candidate.timestamp() > after and (
            words[0] == "daily" or (words[0] == "weekly" and candidate.weekday() == 0)
            or (words[0] == "monthly" and candidate.day == 1))
        if ok:
            return candidate.timestamp()
        candidate = (candidate + timedelta(days=1)).replace(hour=hour, minute=minute)
    return None


def period_of(schedule: str) -> float:
    kind = schedule.split()[0] if schedule else "daily"
    return {"daily": 1, "weekly": 7, "monthly": 31}.get(kind, 1) * 86400.0


class Reporting:
    def __init__(self, daemon: Daemon, loop: asyncio.AbstractEventLoop) -> None:
        self.daemon = daemon
        self.loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self.sent = 0
        self.next_at: float | None = None
        self.tz = local_zone()
        self._building: set[str] = set()  # addresses whose incident report is being made
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _schedule(self) -> None:
        history = self.daemon.config.daemon.history
        assert self.tz is not None
        self.next_at = next_run(history.report_schedule, self.daemon.clock(), self.tz)
        if self.next_at is not None:
            delay = max(0.0, self.next_at - self.daemon.clock())
            self._timer = self.loop.call_later(delay, self._due)

    def _due(self) -> None:
        self.loop.create_task(self.send_report())
        self._schedule()

    async def send_report(self) -> None:
        """Compute and queue the report mail now (also used by the tests)."""
        daemon = self.daemon
        enrichment = daemon.enrichment
        mailer = enrichment.mailer if enrichment is not None else None
        if mailer is None:
            return
        history = daemon.config.daemon.history
        until = daemon.clock()
        since = until - (history.report_since if history.report_schedule == "" else
                         max(period_of(history.report_schedule), 86400.0))
        try:
            text, html, total = await self.loop.run_in_executor(None, self._render, since,
                                                                until)
        except sqlite3.Error as exc:
            log.error("report not made: %s", exc)
            return
        subject = f"[tailban] report for {socket.gethostname()}: {total:,} attempts"
        settings = mailer.settings if not history.report_destination else replace(
            mailer.settings, destination=history.report_destination)
        mailer.send_message(report_message(settings, subject, text, html), "report mail",
                            history.report_destination)
        self.sent += 1

    def _render(self, since: float, until: float) -> tuple[str, str, int]:
        from tailban.reports.render import render_html, render_text

        assert self.tz is not None
        db = open_readonly(self.daemon.config.daemon.dbfile)
        try:
            report = compute_report(db, since=since, until=until, tz=self.tz,
                                    privileged=self.daemon.config.daemon.history.privileged,
                                    host=socket.gethostname(), now=until)
        finally:
            db.close()
        return render_text(report), render_html(report), int(report["overall"]
                                                              ["attempts_total"])

    # -- incident.auto ----------------------------------------------------------------------

    def maybe_incident(self, ip: str, abuse: str | None) -> None:
        """After a ban: report the address once it has N bans (never twice per interval).

        The evidence is read on a worker thread from a read-only connection: the raw
        failures have no index by address, and a persistent attacker's 30 days can take
        a second to read, which the loop (bans, commands) must not wait for."""
        daemon = self.daemon
        history = daemon.config.daemon.history
        enrichment = daemon.enrichment
        mailer = enrichment.mailer if enrichment is not None else None
        if history.incident_auto <= 0 or mailer is None or not abuse or ip in self._building:
            return
        db = daemon.store.connection
        bans = db.execute("SELECT count(*) FROM ban_history WHERE ip = ?", (ip,)).fetchone()[0]
        now = daemon.clock()
        previous = last_sent(db, ip)
        if bans < history.incident_auto or (previous is not None and
                                            now - previous < history.incident_min_interval):
            return
        self._building.add(ip)
        task = self.loop.create_task(self._incident(ip, abuse, now, bans))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _incident(self, ip: str, abuse: str, now: float, bans: int) -> None:
        daemon = self.daemon
        history = daemon.config.daemon.history
        enrichment = daemon.enrichment
        mailer = enrichment.mailer if enrichment is not None else None
        try:
            incident = await self.loop.run_in_executor(None, self._build_incident, ip,
                                                       now - history.raw)
            if mailer is None:
                return
            message, settings = incident_message(
                history.incident_template, mailer.settings,
                reporter_of(history, mailer.settings, socket.gethostname()), incident, abuse)
        except (NoIncident, ValueError, sqlite3.Error) as exc:
            log.warning("incident report about %s not made: %s", ip, exc)
            return
        finally:
            self._building.discard(ip)
        mailer.send_message(message, f"incident report about {ip}", settings.destination)
        daemon.store.connection.execute("INSERT INTO incidents VALUES (?, ?, ?, ?)",
                                        (ip, now, history.incident_template, abuse))
        log.info("incident report about %s queued for %s (%d bans)", ip, abuse, bans)

    def _build_incident(self, ip: str, since: float) -> Incident:
        assert self.tz is not None
        db = open_readonly(self.daemon.config.daemon.dbfile)
        try:
            return build_incident(db, ip, since, self.tz)
        finally:
            db.close()
