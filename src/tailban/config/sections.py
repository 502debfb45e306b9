"""The optional sections of tailban.conf (``[fleet]``, ...): known keys and typed reading.

Each section is a small frozen settings value; an unknown key or a bad value is a
ConfigError with file, line, section and option, like everywhere else.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from typing import TypeVar

from tailban.config.errors import ConfigError
from tailban.config.ini import IniDocument
from tailban.config.model import (
    AnomalySettings,
    EnrichSettings,
    FleetSettings,
    HistorySettings,
)
from tailban.core.durations import parse_duration
from tailban.notify.settings import MailSettings, valid_address

T = TypeVar("T")

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_TLS_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

SECTIONS: dict[str, frozenset[str]] = {
    "fleet": frozenset({"store", "host", "group", "password_file", "trust", "keep", "migrate",
                        *_TLS_KEYS}),
    "enrich": frozenset({"enabled", "ttl", "rdns", "whois"}),
    "geoip": frozenset({"country_db", "city_db", "asn_db"}),
    "whois": frozenset({"server", "port", "timeout", "rate"}),
    "dns": frozenset({"nameservers", "port", "timeout"}),
    "dnsbl": frozenset({"zones", "budget"}),
    "mail": frozenset({"destination", "destemail", "sender", "transport", "smtp_host",
                       "smtp_port", "smtp_security", "smtp_user", "smtp_password_file",
                       "sendmail_path", "charset", "timeout", "subject", "body", "digest",
                       "startstop"}),
    "history": frozenset({"keep", "raw"}),
    "anomaly": frozenset({"enabled", "min_history", "threshold", "mail", "net_window",
                          "net_min_addresses", "net_min_accounts", "wave_warmup"}),
    "report": frozenset({"schedule", "destination", "since", "privileged"}),
    "incident": frozenset({"min_interval", "auto", "template", "reporter_name",
                           "reporter_org", "reporter_email", "reporter_phone"}),
}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def parse_trust(text: str) -> tuple[str, ...]:
    """Host names and ``group:NAME`` entries, space or comma separated."""
    items = text.replace(",", " ").split()
    for item in items:
        name = item[len("group:"):] if item.startswith("group:") else item
        if not _NAME.match(name):
            raise ValueError(f"not a host or group:NAME: {item!r}")
    return tuple(items)


class SectionReader:
    """Typed values of one section, each error pointing at its line."""

    def __init__(self, doc: IniDocument, section: str) -> None:
        self.doc = doc
        self.section = section
        known = SECTIONS[section]
        for key, value in doc.sections.get(section, {}).items():
            if key not in known:
                raise ConfigError(f"unknown option (known: {', '.join(sorted(known))})",
                                  file=value.file, line=value.line, section=section,
                                  option=key)

    def get(self, key: str, parse: Callable[[str], T], default: T) -> T:
        value = self.doc.resolve(self.section, key)
        if value is None or not value.text.strip():
            return default
        try:
            return parse(value.text.strip())
        except ValueError as exc:
            raise ConfigError(f"{exc} (got {value.text!r})", file=value.file, line=value.line,
                              section=self.section, option=key) from None

    def text(self, key: str, default: str = "") -> str:
        return self.get(key, str, default)


def _store_url(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise ValueError("store is postgresql://[user@]host[:port]/database or sqlite:///path")
    if text.startswith("postgres") and ":" in text.split("://", 1)[1].split("@")[0] \
            and "@" in text:
        raise ValueError("do not put the password in the URL (it shows in ps and logs): "
                         "use password_file or TAILBAN_FLEET_PASSWORD")
    return text


def _host_name(text: str) -> str:
    if not _NAME.match(text):
        raise ValueError("host is letters, digits, '.', '_', ':' or '-' (max 128)")
    return text


def _absolute(text: str) -> str:
    if not os.path.isabs(text):
        raise ValueError("must be an absolute path")
    return text


def _sslmode(text: str) -> str:
    if text not in _SSLMODES:
        raise ValueError(f"sslmode is one of {', '.join(_SSLMODES)}")
    return text


def fleet_settings(doc: IniDocument) -> FleetSettings:
    read = SectionReader(doc, "fleet")
    tls = [("sslmode", read.get("sslmode", _sslmode, ""))]
    tls += [(key, read.get(key, _absolute, "")) for key in _TLS_KEYS[1:]]
    hostname = socket.gethostname()
    return FleetSettings(
        store=read.get("store", _store_url, ""),
        host=read.get("host", _host_name, hostname if _NAME.match(hostname) else "localhost"),
        group=read.get("group", _host_name, ""),
        password_file=read.get("password_file", _absolute, None),
        tls=tuple((k, v) for k, v in tls if v),
        trust=read.get("trust", parse_trust, ()),
        keep=read.get("keep", parse_duration, 7 * 86400.0),
        migrate=read.get("migrate", parse_bool, True))


def _duration_or_zero(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0s", "no", "off") else parse_duration(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("expected a port number 1-65535")
    return int(text)


def _positive(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not number > 0:
        raise ValueError("must be positive")
    return number


def _addresses(text: str) -> tuple[str, ...]:
    import ipaddress

    items = tuple(text.replace(",", " ").split())
    for item in items:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise ValueError(f"not an IP address: {item!r}") from None
    return items


def _zones(text: str) -> tuple[str, ...]:
    zones = tuple(z.strip(".").lower() for z in text.replace(",", " ").split())
    for zone in zones:
        if not re.fullmatch(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", zone):
            raise ValueError(f"not a DNS zone: {zone!r}")
    return zones


def _server(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", text):
        raise ValueError("expected a host name or address")
    return text


def enrich_settings(doc: IniDocument) -> EnrichSettings:
    enrich = SectionReader(doc, "enrich")
    geoip = SectionReader(doc, "geoip")
    whois = SectionReader(doc, "whois")
    dns = SectionReader(doc, "dns")
    dnsbl = SectionReader(doc, "dnsbl")
    base = EnrichSettings()
    return EnrichSettings(
        enabled=enrich.get("enabled", parse_bool, base.enabled),
        ttl=enrich.get("ttl", parse_duration, base.ttl),
        rdns=enrich.get("rdns", parse_bool, base.rdns),
        whois=enrich.get("whois", parse_bool, base.whois),
        whois_server=whois.get("server", _server, base.whois_server),
        whois_port=whois.get("port", _port, base.whois_port),
        whois_timeout=whois.get("timeout", parse_duration, base.whois_timeout),
        whois_rate=whois.get("rate", _positive, base.whois_rate),
        country_db=geoip.get("country_db", _absolute, None),
        city_db=geoip.get("city_db", _absolute, None),
        asn_db=geoip.get("asn_db", _absolute, None),
        nameservers=dns.get("nameservers", _addresses, ()),
        dns_port=dns.get("port", _port, base.dns_port),
        dns_timeout=dns.get("timeout", parse_duration, base.dns_timeout),
        dnsbl_zones=dnsbl.get("zones", _zones, ()),
        dnsbl_budget=dnsbl.get("budget", parse_duration, base.dnsbl_budget))


def mail_settings(doc: IniDocument, fallback_destination: str = "",
                  fallback_sender: str = "") -> tuple[MailSettings | None, bool]:
    """``[mail]`` as validated MailSettings (None without a destination), and startstop.

    fail2ban keeps ``destemail`` and ``sender`` in jail.local's [DEFAULT]; they are used
    when ``[mail]`` does not say, so a migrated configuration mails the same person.
    """
    read = SectionReader(doc, "mail")
    destination = read.text("destination") or read.text("destemail") or fallback_destination
    startstop = read.get("startstop", parse_bool, True)
    if not destination:
        return None, startstop
    password_file = read.get("smtp_password_file", _absolute, None)
    password = None
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.readline().strip()
        except OSError as exc:
            where = doc.get("mail", "smtp_password_file")
            raise ConfigError(f"cannot read: {exc}", file=where.file if where else None,
                              line=where.line if where else None, section="mail",
                              option="smtp_password_file") from None
    options: dict[str, object] = {
        "destination": destination, "transport": read.text("transport", "smtp").lower(),
        "smtp_host": read.text("smtp_host", "localhost"),
        "smtp_port": read.get("smtp_port", _port, 25),
        "smtp_security": read.text("smtp_security", "none").lower(),
        "smtp_user": read.text("smtp_user") or None, "smtp_password": password,
        "sendmail_path": read.text("sendmail_path", "/usr/sbin/sendmail"),
        "charset": read.text("charset", "utf-8"),
        "timeout": read.get("timeout", parse_duration, 10.0),
        "digest": read.get("digest", _duration_or_zero, 0.0),
    }
    sender = read.text("sender") or fallback_sender
    if sender:
        options["sender"] = sender
    subject = doc.resolve("mail", "subject")
    body = doc.resolve("mail", "body")
    if subject is not None and subject.text.strip():
        options["subject_template"] = subject.text.strip()
    if body is not None and body.text.strip():
        options["body_template"] = body.text.strip("\n") + "\n"
    try:
        return MailSettings(**options), startstop  # type: ignore[arg-type]
    except ValueError as exc:
        message = str(exc)
        key = message.split(":", 1)[0].removeprefix("mail ").strip()
        key = {"subject_template": "subject", "body_template": "body",
               "smtp_password": "smtp_password_file"}.get(key, key)
        if key == "destination" and read.text("destination") == "" and \
                read.text("destemail") == "":
            where = None
        else:
            where = doc.get("mail", key) or (doc.get("mail", "destemail")
                                             if key == "destination" else None)
        raise ConfigError(message, file=where.file if where else None,
                          line=where.line if where else None, section="mail",
                          option=key) from None


def _schedule(text: str) -> str:
    words = text.lower().split()
    if words and words[0] in ("daily", "weekly", "monthly") and len(words) <= 2:
        if len(words) == 2 and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", words[1]):
            raise ValueError("the time is HH:MM, e.g. daily 03:00")
        return " ".join(words)
    raise ValueError("schedule is daily [HH:MM], weekly [HH:MM] or monthly [HH:MM]")


def _mail_list(text: str) -> tuple[str, ...]:
    items = tuple(a.strip() for a in text.replace(",", " ").split() if a.strip())
    for item in items:
        if not valid_address(item):
            raise ValueError(f"not an e-mail address: {item!r}")
    return items


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.replace(",", " ").split())


def _template(text: str) -> str:
    if text not in ("jpcert", "abuse", "xarf"):
        raise ValueError("template is jpcert, abuse or xarf")
    return text


def _count(text: str) -> int:
    if not text.isdigit():
        raise ValueError("expected a whole number (0 = off)")
    return int(text)


def _one_line(text: str) -> str:
    if any(not ch.isprintable() for ch in text) or len(text) > 200:
        raise ValueError("one printable line, at most 200 characters")
    return text


def history_settings(doc: IniDocument) -> HistorySettings:
    history = SectionReader(doc, "history")
    report = SectionReader(doc, "report")
    incident = SectionReader(doc, "incident")
    base = HistorySettings()
    none: tuple[str, ...] = ()
    email = incident.get("reporter_email", _mail_list, none)
    if len(email) > 1:
        raise ConfigError("one address", section="incident", option="reporter_email")
    return HistorySettings(
        keep=history.get("keep", parse_duration, base.keep),
        raw=history.get("raw", parse_duration, base.raw),
        report_schedule=report.get("schedule", _schedule, ""),
        report_destination=report.get("destination", _mail_list, none),
        report_since=report.get("since", parse_duration, base.report_since),
        privileged=report.get("privileged", _words, base.privileged),
        incident_min_interval=incident.get("min_interval", parse_duration,
                                           base.incident_min_interval),
        incident_auto=incident.get("auto", _count, 0),
        incident_template=incident.get("template", _template, base.incident_template),
        reporter_name=incident.get("reporter_name", _one_line, ""),
        reporter_org=incident.get("reporter_org", _one_line, ""),
        reporter_email=email[0] if email else "",
        reporter_phone=incident.get("reporter_phone", _one_line, ""))


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError("expected a whole number of at least 1")
    return int(text)


def anomaly_settings(doc: IniDocument) -> AnomalySettings:
    read = SectionReader(doc, "anomaly")
    base = AnomalySettings()
    return AnomalySettings(
        enabled=read.get("enabled", parse_bool, base.enabled),
        min_history=read.get("min_history", _positive_int, base.min_history),
        threshold=read.get("threshold", _positive, base.threshold),
        mail=read.get("mail", parse_bool, base.mail),
        net_window=read.get("net_window", parse_duration, base.net_window),
        net_min_addresses=read.get("net_min_addresses", _positive_int,
                                   base.net_min_addresses),
        net_min_accounts=read.get("net_min_accounts", _positive_int, base.net_min_accounts),
        wave_warmup=read.get("wave_warmup", _positive_int, base.wave_warmup))
