"""The control socket's commands: a fixed table of typed handlers over the running daemon."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tailban import __version__
from tailban.control.protocol import Rows
from tailban.control.server import CommandError
from tailban.core.addresses import normalise_target
from tailban.core.durations import parse_duration
from tailban.core.events import Ban, Unban
from tailban.enrich.facts import Enrichment
from tailban.firewall.base import FirewallError

if TYPE_CHECKING:
    from tailban.daemon.server import Daemon

log = logging.getLogger("tailban")

UNBAN_WAIT = 10.0  # seconds a ban/unban command waits for the kernel
BANNED_BATCH = 500  # rows of `banned` made and sent at a time


class ControlCommands:
    """What `tailban status|banned|ban|unban|reload|stop|reconcile|ping` do in the daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "ping": self._cmd_ping, "status": self._cmd_status, "banned": self._cmd_banned,
            "ban": self._cmd_ban, "unban": self._cmd_unban, "reload": self._cmd_reload,
            "stop": self._cmd_stop, "reconcile": self._cmd_reconcile, "show": self._cmd_show,
            "mail-report": self._cmd_mail_report, "alert-ack": self._cmd_alert_ack,
        }

    async def _cmd_ping(self, args: dict[str, Any]) -> str:
        return "pong"

    def _jail_arg(self, args: dict[str, Any], required: bool) -> str | None:
        name = args.get("jail")
        if name is None and not required:
            return None
        if not isinstance(name, str) or name not in self.daemon.jails:
            raise CommandError(f"no enabled jail {name!r} (enabled: "
                               f"{', '.join(sorted(self.daemon.jails)) or 'none'})")
        return name

    @staticmethod
    def _ip_arg(args: dict[str, Any]) -> str:
        """An address or a network (``198.51.100.0/24``) in canonical form."""
        raw = args.get("ip")
        ip = normalise_target(raw) if isinstance(raw, str) else None
        if ip is None:
            raise CommandError(f"not an IP address or network: {raw!r}")
        return ip

    async def _cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        only = self._jail_arg(args, required=False)
        jails = {}
        for name, jail in self.daemon.jails.items():
            if only is not None and name != only:
                continue
            counters = jail.policy.counters
            files = [f.path for f in self.daemon.logs.files.values() if name in f.jails]
            jails[name] = {
                "filter": jail.config.filter_ref,
                "backend": self.daemon.logs.backends.get(name, ("file", ""))[0],
                "backend_reason": self.daemon.logs.backends.get(name, ("file", ""))[1],
                "files": files,
                "file_errors": {p: e for p, e in self.daemon.file_errors.items() if p in files},
                "currently_failing": len(jail.policy.window),
                "total_failures": counters.failures,
                "ignored_failures": counters.ignored,
                "currently_banned": self.daemon.ledger.count_in(name),
                "total_banned": counters.bans,
                "account_alerts": self.daemon.account_alerts.get(name, 0),
                "maxretry": jail.config.maxretry, "findtime": jail.config.findtime,
                "bantime": jail.config.bantime,
            }
        worker = self.daemon.firewall
        return {
            "version": __version__, "pid": os.getpid(),
            "uptime": round(self.daemon.clock() - self.daemon.started_at, 1),
            "jails": jails,
            "firewall": {"backend": self.daemon.backend.name, "pending": len(worker.pending),
                         "last_error": worker.last_error, "failed_attempts": worker.failures,
                         "transactions": worker.transactions},
            "fleet": self.daemon.fleet.status() if self.daemon.fleet is not None else None,
            "enrichment": self.daemon.enrichment.status()
            if self.daemon.enrichment is not None else None,
            "anomaly": self.daemon.anomaly.status() if self.daemon.anomaly is not None
            else None,
            "usedns": self.daemon.names.worker.status() if self.daemon.names is not None
            else None,
        }

    async def _cmd_banned(self, args: dict[str, Any]) -> Rows:
        only = self._jail_arg(args, required=False)
        bans = list(self.daemon.ledger if only is None else self.daemon.ledger.in_jail(only))
        bans.sort(key=lambda b: (b.jail, b.banned_at))
        return Rows(self._banned_rows(bans))

    def _banned_rows(self, bans: list[Ban]) -> Iterator[list[dict[str, Any]]]:
        """Batches of rows, each with its log lines and facts read for that batch only:
        over 100,000 bans, all rows at once held ~130 MB in the daemon."""
        store = self.daemon.store
        now = self.daemon.clock()
        for start in range(0, len(bans), BANNED_BATCH):
            batch = bans[start:start + BANNED_BATCH]
            lines = store.lines_of(batch)
            known = store.enrichment_of(sorted({b.ip for b in batch}))
            rows: list[dict[str, Any]] = []
            for b in batch:
                data = known.get(b.ip)
                facts = Enrichment.from_json(data) if data else None
                rows.append({
                    "jail": b.jail, "ip": b.ip, "banned_at": b.banned_at,
                    "expires_at": b.expires_at, "remaining": b.remaining(now),
                    "failures": b.failures, "source": b.source,
                    "line": lines.get((b.jail, b.ip), ""),
                    "country": facts.country_iso if facts else None,
                    "asn": facts.asn if facts else None,
                    "as_org": facts.as_org if facts else None,
                    "rdns": list(facts.rdns_confirmed) if facts else [],
                    "dnsbl": [d.get("zone") for d in facts.dnsbl] if facts else [],
                })
            yield rows

    async def _cmd_alert_ack(self, args: dict[str, Any]) -> dict[str, Any]:
        """Mark an alert as expected; ``learn`` teaches the login model it was normal."""
        import json

        raw = args.get("id")
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise CommandError(f"not an alert id: {raw!r}")
        row = self.daemon.store.alert(raw)
        if row is None:
            raise CommandError(f"no alert {raw}")
        if args.get("learn"):
            if row[2] != "login":
                raise CommandError(f"alert {raw} is a {row[2]} alert: only login alerts can "
                                   "be learned")
            if self.daemon.anomaly is None:
                raise CommandError("anomaly detection is off")
        self.daemon.store.ack_alert(raw, self.daemon.clock())
        learned = False
        if args.get("learn") and self.daemon.anomaly is not None:
            event = json.loads(str(row[7])).get("event")
            if isinstance(event, dict):
                event["dnsbl"] = tuple(event.get("dnsbl") or ())
                self.daemon.anomaly.worker.learn(event)
                learned = True
        return {"id": raw, "acked": True, "learned": learned}

    async def _cmd_mail_report(self, args: dict[str, Any]) -> dict[str, Any]:
        """Mail the scheduled report now (``tailban report --mail``)."""
        reporting = self.daemon.reporting
        if reporting is None:
            raise CommandError("no [mail] destination is configured")
        await reporting.send_report()
        return {"queued": True, "next": reporting.next_at}

    async def _cmd_show(self, args: dict[str, Any]) -> dict[str, Any]:
        """All we know about one address (``tailban show IP``)."""
        ip = self._ip_arg(args)
        daemon = self.daemon
        now = daemon.clock()
        lines = daemon.store.ban_lines(ip=ip)
        bans = [{"jail": b.jail, "banned_at": b.banned_at, "expires_at": b.expires_at,
                 "failures": b.failures, "source": b.source,
                 "line": lines.get((b.jail, ip), "")}
                for b in (daemon.ledger.get(name, ip) for name in daemon.ledger.jails_of(ip))
                if b is not None]
        history = daemon.store.history_of(ip)
        failing = {name: jail.policy.window.count(ip) for name, jail in daemon.jails.items()
                   if jail.policy.window.count(ip)}
        times = [float(h["banned_at"]) for h in history]  # type: ignore[arg-type]
        facts: Enrichment | None = None
        note = None
        if daemon.enrichment is not None and "/" not in ip:
            facts = await daemon.enrichment.lookup(ip, float(args.get("wait", 10.0)))
            if facts is None:
                note = "enrichment still running (try again in a moment)"
        elif daemon.enrichment is None:
            note = "enrichment is off ([enrich] enabled = yes in tailban.conf)"
            stored = daemon.store.enrichment_of([ip]).get(ip)
            facts = Enrichment.from_json(stored) if stored else None
        return {
            "ip": ip, "banned": bans, "failing": failing,
            "jails": sorted({str(h["jail"]) for h in history} | {b["jail"] for b in bans}),
            "bans_total": len(history),
            "first_banned": min(times) if times else None,
            "last_banned": max(times) if times else None, "history": history[:20],
            "enrichment": dataclasses.asdict(facts) if facts is not None else None,
            "enrichment_note": note, "now": now,
        }

    async def _cmd_ban(self, args: dict[str, Any]) -> dict[str, Any]:
        name = self._jail_arg(args, required=True)
        assert name is not None
        ip = self._ip_arg(args)
        bantime = args.get("bantime")
        seconds: float | None = None
        if bantime is not None:
            try:
                seconds = parse_duration(str(bantime), allow_forever=True)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        now = self.daemon.clock()
        ban = self.daemon.jails[name].policy.manual_ban(ip, now, seconds)
        new = [ban, *self.daemon.recidive_bans([ban], now)]
        self.daemon.record(new)
        ticket = self.daemon.firewall.submit(new, urgent=True)
        self.daemon.schedule_expiry(ban.expires_at)
        if self.daemon.enrichment is not None:
            self.daemon.enrichment.on_bans(new, [])
        log.info("Ban %s in %s (manual)", ip, name)
        applied = await self.daemon.firewall.wait(ticket, UNBAN_WAIT)
        return {"jail": name, "ip": ip, "expires_at": ban.expires_at, "applied": applied,
                "error": None if applied else self.daemon.firewall.last_error}

    async def _cmd_unban(self, args: dict[str, Any]) -> dict[str, Any]:
        ip = self._ip_arg(args)
        only = self._jail_arg(args, required=False)
        now = self.daemon.clock()
        names = [only] if only else self.daemon.ledger.jails_of(ip)
        unbans = [Unban(n, ip, now, "manual") for n in names
                  if self.daemon.ledger.remove(n, ip) is not None]
        fleet_wide = bool(args.get("fleet"))
        if fleet_wide and self.daemon.fleet is None:
            raise CommandError("--fleet: no [fleet] store is configured")
        if not unbans and not fleet_wide:
            raise CommandError(f"{ip} is not banned" + (f" in {only}" if only else ""))
        self.daemon.record(unbans=unbans, fleet_unbans=[(ip, only or "")] if fleet_wide else ())
        if not unbans:
            return {"ip": ip, "jails": [], "fleet": True}
        ticket = self.daemon.firewall.submit(unbans=unbans, urgent=True)
        for unban in unbans:
            log.info("Unban %s in %s (manual)", ip, unban.jail)
        applied = await self.daemon.firewall.wait(ticket, UNBAN_WAIT)
        if not applied:
            raise CommandError(f"unban of {ip} recorded but the firewall has not applied it "
                               f"yet (retrying): {self.daemon.firewall.last_error}")
        return {"ip": ip, "jails": [u.jail for u in unbans], "fleet": fleet_wide}

    async def _cmd_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.daemon.reload()

    async def _cmd_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        flush = bool(args.get("flush", False))
        asyncio.get_running_loop().call_soon(self.daemon.request_stop, flush or None)
        return {"stopping": True, "flush": flush or self.daemon.flush_on_stop, "pid": os.getpid()}

    async def _cmd_reconcile(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            await self.daemon.reconcile()
        except FirewallError as exc:
            raise CommandError(f"reconcile failed: {exc}") from None
        return {"bans": len(self.daemon.ledger)}
