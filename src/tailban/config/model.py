"""Validated settings: what the rest of tailban reads instead of raw INI text."""

from __future__ import annotations

from dataclasses import dataclass, field

from tailban.core.addresses import IgnoreList
from tailban.core.bantime import BantimeIncrement
from tailban.defaults import DEFAULT_SOCKET
from tailban.filters.fail2ban_file import UserFilter
from tailban.filters.model import FilterSpec
from tailban.jails.policy import JailRules
from tailban.notify.settings import MailSettings


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """``tailban.conf`` ``[fleet]``: the shared database and who this host is in it."""

    store: str = ""  # empty: no fleet; postgresql://... or sqlite:///path
    host: str = ""
    group: str = ""
    password_file: str | None = None
    tls: tuple[tuple[str, str], ...] = ()  # libpq options: sslmode, sslrootcert, ...
    trust: tuple[str, ...] = ()  # hosts or group:NAME whose bans apply here; empty: all
    keep: float = 7 * 86400.0  # old fleet rows removed after this
    migrate: bool = True  # create/upgrade the fleet tables at start (needs owner rights)

    @property
    def enabled(self) -> bool:
        return bool(self.store)


@dataclass(frozen=True, slots=True)
class EnrichSettings:
    """``[enrich]``, ``[geoip]``, ``[whois]``, ``[dns]``, ``[dnsbl]``: facts about banned
    addresses, gathered off the ban path. Off unless ``[enrich] enabled`` (no host expects
    its ban daemon to query whois servers unasked)."""

    enabled: bool = False
    ttl: float = 7 * 86400.0
    rdns: bool = True
    whois: bool = True
    whois_server: str = "whois.iana.org"
    whois_port: int = 43
    whois_timeout: float = 5.0
    whois_rate: float = 30.0  # queries per minute
    country_db: str | None = None
    city_db: str | None = None
    asn_db: str | None = None
    nameservers: tuple[str, ...] = ()
    dns_port: int = 53
    dns_timeout: float = 2.0
    dnsbl_zones: tuple[str, ...] = ()
    dnsbl_budget: float = 4.0


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """``[history]``, ``[report]``, ``[incident]``: what reports keep and when they go out."""

    keep: float = 400 * 86400.0  # roll-ups, successes and ban history
    raw: float = 30 * 86400.0  # raw failures with their log lines (incident evidence)
    report_schedule: str = ""  # "" | "daily HH:MM" | "weekly" | "monthly"
    report_destination: tuple[str, ...] = ()  # empty: [mail] destination
    report_since: float = 30 * 86400.0
    privileged: tuple[str, ...] = ("root", "admin", "administrator", "toor", "sysadmin",
                                   "superuser", "sa", "postgres", "mysql", "oracle")
    incident_min_interval: float = 7 * 86400.0
    incident_auto: int = 0  # report an address after this many bans; 0: never
    incident_template: str = "abuse"
    reporter_name: str = ""
    reporter_org: str = ""
    reporter_email: str = ""
    reporter_phone: str = ""


@dataclass(frozen=True, slots=True)
class AnomalySettings:
    """``[anomaly]``: the detectors' knobs; they run beside the ban path, never on it."""

    enabled: bool = True
    min_history: int = 20  # logins of an account before its habits are judged
    threshold: float = 6.0
    mail: bool = True  # mail alerts (when [mail] is set), at most one per subject+reason a day
    net_window: float = 600.0
    net_min_addresses: int = 5
    net_min_accounts: int = 5
    wave_warmup: int = 60  # minutes


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """``tailban.conf`` ``[Definition]``: where the daemon keeps its socket, pid and state."""

    socket: str = DEFAULT_SOCKET
    pidfile: str = "/run/tailban/tailban.pid"
    dbfile: str = "/var/lib/tailban/tailban.sqlite3"
    logtarget: str = "stderr"
    loglevel: str = "INFO"
    dbpurgeage: float = 86400.0 * 30
    flushonstop: bool = False
    table: str = "tailban"
    checkinterval: float = 60.0  # how often firewall objects are checked and restored
    fleet: FleetSettings = field(default_factory=FleetSettings)
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    mail: MailSettings | None = None  # None: no [mail] destination
    mail_startstop: bool = True
    history: HistorySettings = field(default_factory=HistorySettings)
    anomaly: AnomalySettings = field(default_factory=AnomalySettings)


@dataclass(frozen=True, slots=True)
class JournalOptions:
    """Where a jail reads the systemd journal and which entries (``backend = systemd[...]``,
    ``journalmatch``); used with ``backend = systemd``, and by ``auto`` when it picks it."""

    path: str | None = None  # journalpath: a directory of journal files
    files: tuple[str, ...] = ()  # journalfiles
    system: bool = True  # journalflags 4 (fail2ban's default): system journal only
    match: tuple[str, ...] = ()  # journalctl match arguments, "+" between alternatives


@dataclass(frozen=True, slots=True)
class JailConfig:
    """One enabled or disabled jail, with every value already checked."""

    name: str
    enabled: bool
    filter_ref: str
    filter: FilterSpec | UserFilter
    logpaths: tuple[str, ...]
    backend: str
    maxretry: int
    findtime: float
    bantime: float
    ignoreip: IgnoreList
    ports: tuple[str, ...]  # "22", "1000-2000"; empty = all ports
    protocol: str
    banaction: str  # backend kind: nftables, iptables, iptables-rules, route, ipfw, pf
    allports: bool
    blocktype: str  # drop | reject
    usedns: str
    increment: BantimeIncrement = field(default_factory=BantimeIncrement)
    banprefix4: int = 32
    banprefix6: int = 128
    banlist: str | None = None
    account_maxretry: int = 0
    account_findtime: float = 3600.0
    account_action: str = "alert"
    reset_on_success: bool = False
    share: str = "both"  # fleet: publish | subscribe | both | none
    fleet_bantime: float | None = None  # fleet bans here last this long; None: as published
    fleet_trust: tuple[str, ...] | None = None  # None: [fleet] trust
    mail: str = "none"  # none | mail | mail-whois | mail-whois-lines (fail2ban's action)
    dnsbl_action: str = "none"  # none | tag | ban
    anomaly_action: str = "alert"  # alert | ban | none: unusual successful logins
    netban_action: str = "alert"  # alert | ban | none: distributed attacks from one network
    wave_alerts: bool = True  # attack-wave start/end alerts
    journal: JournalOptions = field(default_factory=JournalOptions)
    source_file: str = ""

    @property
    def rules(self) -> JailRules:
        return JailRules(self.name, self.maxretry, self.findtime, self.bantime, self.ignoreip,
                         self.increment, self.banprefix4, self.banprefix6,
                         self.account_maxretry, self.account_findtime, self.account_action)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration as one immutable value, so a reload can be all or nothing."""

    confdir: str
    daemon: DaemonSettings
    jails: dict[str, JailConfig] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def enabled_jails(self) -> list[JailConfig]:
        return [jail for jail in self.jails.values() if jail.enabled]
