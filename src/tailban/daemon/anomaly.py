"""The detectors' thread: unusual logins, attack waves, distributed attacks.

The ban path hands each chunk's failures and logins over with one deque append; the
detectors (pure, in ``anomaly/``) run here with GeoIP and DNSBL facts looked up on this
thread. Alerts go back to the loop, which stores them, mails them (rate-limited) and acts
when a jail says ``ban``. The detectors' state is saved in SQLite so a restart keeps what
they learned.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tailban.anomaly.distributed import LayeredDetector, NetAlert
from tailban.anomaly.login import LoginEvent, LoginModel
from tailban.anomaly.waves import WaveDetector, WaveEvent
from tailban.config.model import AnomalySettings, Config
from tailban.core.events import Failure, Success
from tailban.daemon.workqueue import WorkQueue
from tailban.enrich.service import Enricher, Wants
from tailban.tools.report import local_zone

if TYPE_CHECKING:
    import asyncio

    from tailban.daemon.server import Daemon

log = logging.getLogger("tailban.anomaly")

MAX_PENDING = 10_000
BUSY_WAIT = 3.0  # longest the detectors defer to a firewall transaction in flight
SERVICES = {"sshd": "ssh", "dropbear": "ssh", "dovecot": "imap", "postfix": "smtp"}
SlimFailure = tuple[str, str, float, str | None, int]  # jail, ip, time, user, count


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # "login" | "wave" | "distributed"
    jail: str
    subject: str  # the account, the jail, or the network
    score: float
    reasons: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)
    ip: str | None = None  # the source to ban for a login alert
    ban_targets: tuple[str, ...] = ()  # networks to ban for a distributed alert


def _service(filter_name: str) -> str:
    for prefix, service in SERVICES.items():
        if filter_name.startswith(prefix):
            return service
    return filter_name


class AnomalyWorker:
    """Owns the detectors; everything in them is touched on this thread only."""

    def __init__(self, settings: AnomalySettings, enricher: Enricher | None,
                 states: dict[str, str], deliver: Callable[[list[Alert]], None],
                 services: dict[str, str], clock: Callable[[], float] = time.time,
                 busy: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.busy = busy  # True while bans wait for the kernel: let them go first
        self.enricher = enricher
        self._deliver = deliver
        self.services = services  # jail -> service
        self.clock = clock
        zone = local_zone()
        self.logins = self._load(states, "logins", LoginModel.from_state,
                                 lambda: LoginModel(min_history=settings.min_history,
                                                    threshold=settings.threshold, tz=zone))
        # what was learned comes from the state; the knobs always from [anomaly]
        self.logins.min_history = settings.min_history
        self.logins.threshold = settings.threshold
        self.logins.tz = zone
        self.network = self._load(states, "distributed", LayeredDetector.from_state,
                                  LayeredDetector)
        self.network.fast.config = replace(self.network.fast.config,
                                           window=settings.net_window,
                                           min_addresses=settings.net_min_addresses,
                                           min_accounts=settings.net_min_accounts)
        self.waves: dict[str, WaveDetector] = {}
        for name, data in states.items():
            if name.startswith("wave:"):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.waves[name[5:]] = WaveDetector.from_state(json.loads(data))
        self._open: dict[str, tuple[int, set[str]]] = {}  # jail -> minute, its sources
        self._queue: WorkQueue[tuple[str, Any]] = WorkQueue(MAX_PENDING)
        self._thread: threading.Thread | None = None
        self.seen_logins = 0
        self.seen_failures = 0

    @staticmethod
    def _load(states: dict[str, str], name: str, load: Callable[[Any], Any],
              new: Callable[[], Any]) -> Any:
        data = states.get(name)
        if data:
            try:
                return load(json.loads(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("anomaly state %s unreadable, starting afresh: %s", name, exc)
        return new()

    # -- from the loop ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="anomaly", daemon=True)
        self._thread.start()

    def _put(self, item: tuple[str, Any]) -> None:
        self._queue.put([item])

    def submit(self, failures: Sequence[tuple[str, Failure]],
               logins: Sequence[tuple[str, Success]]) -> None:
        if failures or logins:
            # Only what the detectors read: in a storm the failures wait here for the bans,
            # and their log lines would be held (and the memory fragmented) until then.
            slim = [(jail, f.ip, f.time, f.user, f.count) for jail, f in failures
                    if f.ip is not None]
            self._put(("events", (slim, logins)))

    def tick(self, now: float) -> None:
        self._put(("tick", now))

    def learn(self, details: dict[str, Any]) -> None:
        self._put(("learn", details))

    def snapshot(self, done: Callable[[dict[str, str]], None]) -> None:
        self._put(("snapshot", done))

    def stop(self, timeout: float = 3.0) -> dict[str, str]:
        """Stop the thread and return the final state (safe: the thread has ended)."""
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.states()

    def status(self) -> dict[str, Any]:
        return {"pending": len(self._queue), "dropped": self._queue.dropped,
                "logins": self.seen_logins, "failures": self.seen_failures,
                "accounts": len(self.logins), "jails_watched": len(self.waves)}

    # -- the thread -----------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        out = {"logins": json.dumps(self.logins.to_state()),
               "distributed": json.dumps(self.network.to_state())}
        out.update({f"wave:{jail}": json.dumps(det.to_state())
                    for jail, det in self.waves.items()})
        return out

    def _run(self) -> None:
        while True:
            item = self._queue.take()
            if item is None:
                return
            kind, payload = item
            if kind == "events":
                # A storm's failures arrive together with its bans: the detectors can wait
                # until the kernel has those bans (this thread competes for the interpreter).
                deadline = time.monotonic() + BUSY_WAIT
                while self.busy() and time.monotonic() < deadline and not self._queue.closed:
                    time.sleep(0.005)
            try:
                alerts = self._handle(kind, payload)
            except Exception:  # a detector's bug must not end the thread
                log.exception("anomaly detection failed on %s", kind)
                continue
            if alerts:
                self._deliver(alerts)

    def _handle(self, kind: str, payload: Any) -> list[Alert]:
        if kind == "events":
            failures, logins = payload
            return self._failures(failures) + self._logins(logins)
        if kind == "tick":
            now = float(payload)
            self.network.expire(now)
            alerts: list[Alert] = []
            for jail, detector in self.waves.items():
                alerts += self._wave_alerts(jail, detector.update(int(now // 60), 0, 0))
            return alerts
        if kind == "learn":
            self.logins.learn(LoginEvent(**payload))
            return []
        if kind == "snapshot":
            payload(self.states())
        return []

    def _facts(self, ip: str, now: float) -> dict[str, Any]:
        if self.enricher is None:
            return {}
        found = self.enricher.gather(ip, now)
        return {"country": found.country_iso, "asn": found.asn, "latitude": found.latitude,
                "longitude": found.longitude,
                "dnsbl": tuple(str(d.get("zone")) for d in found.dnsbl)}

    def _logins(self, logins: Sequence[tuple[str, Success]]) -> list[Alert]:
        alerts: list[Alert] = []
        for jail, success in logins:
            if not success.user:
                continue
            self.seen_logins += 1
            event = LoginEvent(account=success.user, ip=success.ip, time=success.time,
                               service=self.services.get(jail, "ssh"),
                               method=success.method.lower() if success.method else None,
                               **self._facts(success.ip, success.time))
            verdict = self.logins.observe(event)
            if verdict.unusual:
                details = asdict(event)
                details["dnsbl"] = list(event.dnsbl)
                alerts.append(Alert("login", jail, success.user, verdict.score,
                                    verdict.reasons, {"event": details,
                                                      "features": verdict.features},
                                    ip=success.ip))
        return alerts

    def _failures(self, failures: Sequence[SlimFailure]) -> list[Alert]:
        alerts: list[Alert] = []
        per_minute: dict[tuple[str, int], tuple[int, set[str]]] = {}
        for jail, ip, when, user, weight in failures:
            self.seen_failures += weight
            minute = int(when // 60)
            count, sources = per_minute.get((jail, minute), (0, set()))
            sources.add(ip)
            per_minute[(jail, minute)] = (count + weight, sources)
            asn = None
            if self.enricher is not None and self.enricher.geoip is not None:
                asn = self.enricher.geoip.lookup(ip).asn
            for net in self.network.observe(when, ip, user, asn):
                alerts.append(self._net_alert(jail, net))
        for (jail, minute), (count, sources) in sorted(per_minute.items()):
            detector = self.waves.get(jail)
            if detector is None:
                detector = self.waves[jail] = WaveDetector(
                    warmup_minutes=self.settings.wave_warmup)
            # counts of one minute add up across batches: pass only addresses new to it
            open_minute, seen = self._open.get(jail, (-1, set()))
            if open_minute != minute:
                seen = set()
                self._open[jail] = (minute, seen)
            fresh = sources - seen
            seen |= fresh
            alerts += self._wave_alerts(jail, detector.update(minute, count, len(fresh)))
        return alerts

    @staticmethod
    def _net_alert(jail: str, net: NetAlert) -> Alert:
        return Alert("distributed", jail, net.network, float(net.failures), (net.reasons,),
                     {"addresses": list(net.addresses), "address_count": net.address_count,
                      "accounts": net.accounts, "account_examples": list(net.account_examples),
                      "failures": net.failures, "first": net.first, "last": net.last,
                      "asn": net.asn}, ban_targets=net.ban_target)

    @staticmethod
    def _wave_alerts(jail: str, events: list[WaveEvent]) -> list[Alert]:
        out = []
        for event in events:
            what = "started" if event.kind == "start" else "ended"
            reason = (f"attack wave {what} in {jail}: {event.failures:.0f} failures/min from "
                      f"{event.sources:.0f} sources/min ({event.trigger})")
            out.append(Alert("wave", jail, f"{jail}:{event.kind}", float(event.score),
                             (reason,), {"kind": event.kind, "minute": event.minute,
                                         "started": event.started,
                                         "failures_per_min": event.failures,
                                         "sources_per_min": event.sources}))
        return out


def services_of(config: Config) -> dict[str, str]:
    return {j.name: _service(j.filter.name) for j in config.enabled_jails}


def make_enricher(config: Config) -> Enricher | None:
    """GeoIP (country, AS, coordinates) and DNSBL for the detectors, on their own thread."""
    enrich = config.daemon.enrich
    geo = any((enrich.country_db, enrich.city_db, enrich.asn_db))
    zones = bool(enrich.dnsbl_zones) and enrich.enabled
    if not geo and not zones:
        return None
    return Enricher(enrich, Wants(geoip=geo, dnsbl=zones))


class AnomalyBridge:
    """The loop's side: store alerts, mail them (rate-limited), act on them."""

    MAIL_EVERY = 86400.0

    def __init__(self, daemon: Daemon, loop: asyncio.AbstractEventLoop) -> None:
        self.daemon = daemon
        self.loop = loop
        config = daemon.config
        states = {name: data for name, data in daemon.store.connection.execute(
            "SELECT name, data FROM anomaly_state")}
        self.worker = AnomalyWorker(config.daemon.anomaly, make_enricher(config), states,
                                    self._deliver, services_of(config), daemon.clock,
                                    busy=lambda: daemon.firewall.busy)
        self._mailed: dict[tuple[str, str, str], tuple[float, float]] = {}
        self.alerts = 0
        self.bans = 0

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        for name, data in self.worker.stop().items():
            self.daemon.store.save_state(name, data)

    def save(self) -> None:
        def done(states: dict[str, str]) -> None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._save, states)
        self.worker.snapshot(done)

    def _save(self, states: dict[str, str]) -> None:
        for name, data in states.items():
            self.daemon.store.save_state(name, data)

    def status(self) -> dict[str, Any]:
        return {**self.worker.status(), "alerts": self.alerts, "bans": self.bans}

    def _deliver(self, alerts: list[Alert]) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._apply, alerts)

    def _apply(self, alerts: list[Alert]) -> None:
        daemon = self.daemon
        now = daemon.clock()
        for alert in alerts:
            jail = daemon.jails.get(alert.jail)
            action = "alert"
            if jail is not None:
                action = {"login": jail.config.anomaly_action,
                          "distributed": jail.config.netban_action,
                          "wave": "alert" if jail.config.wave_alerts else "none"}[alert.kind]
            if action == "none":
                continue
            alert_id = daemon.store.add_alert(
                now, alert.kind, alert.jail, alert.subject, alert.score,
                json.dumps(list(alert.reasons)), json.dumps(alert.details, default=str), action)
            self.alerts += 1
            log.warning("alert %d (%s) in %s: %s%s", alert_id, alert.kind, alert.jail,
                        "; ".join(alert.reasons), "; banned" if action == "ban" else "")
            if action == "ban" and jail is not None:
                self._ban(jail, alert, now)
            self._mail(alert_id, alert, now)

    def _ban(self, jail: Any, alert: Alert, now: float) -> None:
        from tailban.core.addresses import IgnoreList
        targets = [alert.ip] if alert.kind == "login" and alert.ip else list(alert.ban_targets)
        ignore: IgnoreList = jail.config.ignoreip
        bans = []
        for target in targets:
            if target is None or self.daemon.ledger.is_banned(jail.name, target, now):
                continue
            if "/" not in target and target in ignore:
                continue
            if "/" in target and _overlaps(target, ignore):
                continue
            source = "anomaly" if alert.kind == "login" else "netban"
            bans.append(jail.policy.manual_ban(target, now, source=source))
        if bans:
            self.bans += len(bans)
            self.daemon.record(bans)
            self.daemon.firewall.submit(bans)
            self.daemon.schedule_expiry(min((b.expires_at for b in bans if b.expires_at),
                                            default=None))

    def _mail(self, alert_id: int, alert: Alert, now: float) -> None:
        """One mail per subject and reason a day, unless the score rises clearly."""
        enrichment = self.daemon.enrichment
        mailer = enrichment.mailer if enrichment is not None else None
        if mailer is None or not self.daemon.config.daemon.anomaly.mail:
            return
        key = (alert.kind, alert.subject, alert.reasons[0].split(" ", 2)[0] if alert.reasons
               else "")
        previous = self._mailed.get(key)
        if previous is not None and now - previous[0] < self.MAIL_EVERY \
                and alert.score < previous[1] * 1.5:
            return
        self._mailed[key] = (now, alert.score)
        from tailban.notify.mail import alert_message
        mailer.send_message(alert_message(mailer.settings, alert_id, alert.kind, alert.jail,
                                          alert.subject, alert.score, alert.reasons),
                            f"alert {alert_id}")
        self.daemon.store.connection.execute("UPDATE alerts SET mailed = 1 WHERE id = ?",
                                             (alert_id,))


def _overlaps(target: str, ignore: Any) -> bool:
    import ipaddress
    net = ipaddress.ip_network(target, strict=False)
    return any(net.version == other.version and net.overlaps(other)
               for other in ignore.networks)
