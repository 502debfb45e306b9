"""Incident reports for CERTs and abuse desks: JPCERT/CC (Japanese), plain English, X-ARF.

Everything about the attacker (log lines, reverse DNS, whois, country, AS) is hostile
text. It is cleaned once, when an :class:`Incident` is built, with the same rules as the
ban mails (:func:`tailban.notify.mail.clean_line`), headers are only set through the
``email`` API, and the single recipient is the validated ``to`` argument: nothing in an
incident can add a header, a recipient or a YAML key.

Sending: :class:`~tailban.notify.mail.MailSender` delivers to ``settings.destination``,
not to the To header, so send a report with settings whose destination is ``(to,)``,
e.g. ``MailSender(dataclasses.replace(settings, destination=(to,)))``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime, formatdate, make_msgid
from typing import NamedTuple

from tailban import __version__
from tailban.notify.mail import (
    BODY_MAX,
    POLICY,
    MailSettings,
    _set_body,
    _set_subject,
    clean_line,
    valid_address,
)

LINES_MAX = 200
"""Most log lines kept as evidence: enough to show a pattern, small enough to read."""
LINE_CHARS = 1000
"""Longest evidence line; longer ones end in ``...``."""
SCHEMA_URL = "http://www.x-arf.org/schema/abuse_login-attack_0.1.2.json"

_FIELD_CHARS = 200  # hostnames, AS text, org names: one readable line
_JP = "iso-2022-jp"
_RULE = "-" * 70

# Used only when Incident.services does not describe a jail: what the usual jails watch,
# and the usual port of a service (first word of its description, lower case).
_JAIL_SERVICES = {
    "sshd": "ssh", "dropbear": "ssh", "selinux-ssh": "ssh",
    "vsftpd": "ftp", "proftpd": "ftp", "pure-ftpd": "ftp",
    "postfix": "smtp", "postfix-sasl": "smtp", "exim": "smtp", "sendmail-auth": "smtp",
    "dovecot": "imap", "courier-auth": "imap",
    "apache-auth": "http", "nginx-http-auth": "http",
}
_SERVICE_PORTS = {
    "ssh": 22, "ftp": 21, "smtp": 25, "submission": 587, "smtps": 465, "pop3": 110,
    "pop3s": 995, "imap": 143, "imaps": 993, "http": 80, "https": 443,
}


def _text(value: object, limit: int = _FIELD_CHARS) -> str:
    return clean_line("" if value is None else value, limit)


@dataclass(frozen=True, slots=True)
class Reporter:
    """Who reports, and about which of our hosts; shown as the report's contact.

    Operator-supplied, but still cleaned: it ends up in the same bodies as attacker
    text. ``email`` must be a plain address (it becomes Reply-To and Reported-From).
    ``timezone`` is a label for the times shown (``"JST"``); empty means the incident's
    own zone name.
    """

    name: str
    organisation: str
    email: str
    phone: str | None = None
    host: str = ""
    timezone: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.email, str) or not valid_address(self.email):
            raise ValueError(f"reporter email: {self.email!r} is not a valid e-mail address")
        for name in ("name", "organisation", "host", "timezone"):
            object.__setattr__(self, name, _text(getattr(self, name)))
        if not self.name:
            raise ValueError("reporter name: must not be empty")
        phone = _text(self.phone, 60) if self.phone is not None else ""
        object.__setattr__(self, "phone", phone or None)


@dataclass(frozen=True, slots=True)
class Incident:
    """One attacking address and what it did; every text field is cleaned on creation.

    ``jails`` are ``(jail, failures)`` pairs; ``services`` optionally say what each jail
    protects as ``(jail, description, port)``, e.g. ``("sshd", "ssh", 22)`` or
    ``("postfix-sasl", "smtp auth", 587)`` (port None when unknown). ``timezone`` is a
    tzinfo or an IANA name; times are shown in it. ``lines`` keeps at most
    :data:`LINES_MAX` cleaned lines; ``omitted`` counts the rest.
    """

    ip: str
    hostname: str
    first_seen: float
    last_seen: float
    timezone: tzinfo | str
    jails: tuple[tuple[str, int], ...]
    services: tuple[tuple[str, str, int | None], ...] = ()
    lines: tuple[str, ...] = ()
    country: str = ""
    asn: str = ""
    abuse: str | None = None
    bans: int = 1
    omitted: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        # A scope id ("fe80::1%eth0") is free text that ipaddress accepts: refuse it.
        if not isinstance(self.ip, str) or "%" in self.ip:
            raise ValueError(f"incident ip: {self.ip!r} is not an IP address")
        try:
            address = ipaddress.ip_address(self.ip.strip())
        except ValueError:
            raise ValueError(f"incident ip: {self.ip!r} is not an IP address") from None
        object.__setattr__(self, "ip", address.compressed)
        object.__setattr__(self, "timezone", _zone(self.timezone))
        for name in ("first_seen", "last_seen"):
            object.__setattr__(self, name, _epoch(name, getattr(self, name)))
        if self.last_seen < self.first_seen:
            raise ValueError("incident last_seen is before first_seen")
        jails = tuple((_text(j, 100), _count(f"failures of {j!r}", n)) for j, n in self.jails)
        if not jails:
            raise ValueError("incident jails: at least one (jail, failures) pair is needed")
        object.__setattr__(self, "jails", jails)
        object.__setattr__(self, "services", tuple(
            (_text(j, 100), _text(s, 100), _port(p)) for j, s, p in self.services
        ))
        raw: Sequence[str] = (self.lines,) if isinstance(self.lines, str) else self.lines
        scanned = raw[: LINES_MAX * 4]  # bounded work whatever the caller passes
        cleaned = [x for x in (_text(line, LINE_CHARS) for line in scanned) if x]
        object.__setattr__(self, "lines", tuple(cleaned[:LINES_MAX]))
        object.__setattr__(self, "omitted", max(0, len(cleaned) - LINES_MAX)
                           + len(raw) - len(scanned))
        for name in ("hostname", "country", "asn"):
            object.__setattr__(self, name, _text(getattr(self, name)))
        object.__setattr__(self, "abuse", _text(self.abuse) or None)
        object.__setattr__(self, "bans", _count("bans", self.bans))


def _zone(value: tzinfo | str) -> tzinfo:
    if isinstance(value, tzinfo):
        return value
    try:
        return zoneinfo.ZoneInfo(str(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"incident timezone: {value!r} is not a known time zone") from None


def _epoch(name: str, value: float) -> float:
    try:
        stamp = float(value)
        datetime.fromtimestamp(stamp, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(f"incident {name}: {value!r} is not a Unix time") from None
    if not math.isfinite(stamp):
        raise ValueError(f"incident {name}: {value!r} is not a Unix time")
    return stamp


def _count(what: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"incident {what}: {value!r} is not a count")
    return value


def _port(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"incident service port: {value!r} is not a port number")
    return value


def dedupe_key(incident: Incident) -> str:
    """Same address, same jails, same first failure: the same incident.

    Lets a caller skip a report it already sent (after a retry or a restart); it is also
    the X-ARF Report-ID, so a desk sees a resent report as the same one.
    """
    jails = ",".join(sorted({jail for jail, _ in incident.jails}))
    text = f"{incident.ip}\n{jails}\n{int(incident.first_seen)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# --------------------------------------------------------------------------- facts


class _Hit(NamedTuple):
    jail: str
    failures: int
    service: str
    port: int | None


def _hits(incident: Incident) -> list[_Hit]:
    """Per jail, most failures first: the first one names the attack."""
    known = {jail: (service, port) for jail, service, port in incident.services}
    hits = []
    for jail, failures in incident.jails:
        default = _JAIL_SERVICES.get(jail.lower(), jail)
        service, port = known.get(jail, (default, None))
        service = service or default
        if port is None:
            words = service.lower().split() or [""]
            port = _SERVICE_PORTS.get(words[0])
        hits.append(_Hit(jail, failures, service, port))
    return sorted(hits, key=lambda h: -h.failures)


def _label(service: str) -> str:
    """``ssh`` reads as a protocol name in a sentence only when written ``SSH``."""
    return service.upper() if service == service.lower() else service


def _where(hit: _Hit) -> str:
    port = f" ({hit.port}/tcp)" if hit.port else ""
    return f"{_label(hit.service)}{port}"


def _when(stamp: float, zone: tzinfo) -> str:
    moment = datetime.fromtimestamp(stamp, zone)
    text = moment.strftime("%Y-%m-%d %H:%M:%S %z")
    name = clean_line(moment.tzname() or "", 40)
    return f"{text} ({name})" if name else text


def _offset(stamp: float, zone: tzinfo) -> str:
    text = datetime.fromtimestamp(stamp, zone).strftime("%z")
    return f"UTC{text[:3]}:{text[3:]}" if len(text) == 5 else "UTC"


def _zone_of(incident: Incident) -> tzinfo:
    return _zone(incident.timezone)


def _recipient(to: str) -> str:
    if not isinstance(to, str) or not valid_address(to):
        raise ValueError(f"report recipient: {to!r} is not a valid e-mail address")
    return to


def _headers(
    msg: EmailMessage, settings: MailSettings, reporter: Reporter, to: str, subject: str,
    charset: str,
) -> None:
    msg["From"] = settings.sender
    msg["To"] = _recipient(to)
    msg["Reply-To"] = reporter.email  # answers go to a person, not to the daemon's address
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("tailban", domain=settings.sender.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Mailer"] = f"tailban {__version__}"
    _set_subject(msg, clean_line(subject), charset)


def _fit(incident: Incident, used: str, charset: str) -> tuple[list[str], int]:
    """The evidence lines that fit beside ``used`` in one body, and how many did not.

    The body cap of the ban mails would otherwise cut the log mid-line and drop the
    count of left-out lines; iso-2022-jp pays escape sequences per wrapped segment.
    """
    budget = BODY_MAX - len(used.encode(charset, "replace")) - 1024
    kept: list[str] = []
    for line in incident.lines:
        cost = len(line.encode(charset, "replace")) + 3
        if charset != "utf-8":
            cost += 8 * (len(line) // 100 + 1)
        if cost > budget:
            break
        budget -= cost
        kept.append(line)
    return kept, incident.omitted + len(incident.lines) - len(kept)


# --------------------------------------------------------------------------- JPCERT/CC


def _jpcert_body(reporter: Reporter, incident: Incident) -> str:
    zone = _zone_of(incident)
    hits = _hits(incident)
    main = hits[0]
    total = sum(h.failures for h in hits)
    zone_label = reporter.timezone or clean_line(
        datetime.fromtimestamp(incident.first_seen, zone).tzname() or "", 40)
    zone_text = f"{zone_label} ({_offset(incident.first_seen, zone)})".strip()
    unknown = "不明"
    lines = [
        "JPCERT/CC 御中",
        "",
        f"{reporter.organisation or reporter.name} の {reporter.name} です。",
        "当方のサーバに対する不正アクセス (ブルートフォース攻撃) を検知しましたので、",
        "下記のとおり報告いたします。",
        "送信元ネットワークの管理者へのご連絡をお願いいたします。",
        "",
        f"(この報告は tailban {__version__} が自動的に作成しました。)",
        "",
        _RULE, "1. 連絡先", _RULE,
        f"  氏名         : {reporter.name}",
        f"  組織名       : {reporter.organisation or unknown}",
        f"  電子メール   : {reporter.email}",
        f"  電話番号     : {reporter.phone or 'なし'}",
        "",
        _RULE, "2. この報告の目的", _RULE,
        "  関係サイトへの連絡を希望",
        "  (送信元ネットワークの管理者への連絡と、対処のご依頼)",
        "",
        _RULE, "3. インシデントの種類", _RULE,
        f"  不正アクセス: {_label(main.service)} に対するブルートフォース攻撃",
        "  (パスワード認証の失敗の繰り返し)",
        "",
        _RULE, "4. インシデントの詳細", _RULE,
        "4-1 発生日時",
        f"  タイムゾーン : {zone_text}",
        f"  開始日時     : {_when(incident.first_seen, zone)}",
        f"  終了日時     : {_when(incident.last_seen, zone)}",
        f"  失敗回数     : 合計 {total} 回",
        "",
        "4-2 送信元 (攻撃元)",
        f"  IP アドレス  : {incident.ip}",
        f"  ホスト名     : {f'{incident.hostname} (逆引き)' if incident.hostname else unknown}",
        f"  国           : {incident.country or unknown}",
        f"  AS           : {incident.asn or unknown}",
        f"  不正利用窓口 : {incident.abuse or unknown}",
        "",
        "4-3 攻撃先 (当方)",
        f"  ホスト名     : {reporter.host or unknown}",
        *(f"  サービス     : {_where(h)}  {h.failures} 回 [{h.jail}]" for h in hits),
        "  (該当ログは 7. を参照)",
        "",
        _RULE, "5. 対処状況", _RULE,
        f"  送信元 IP アドレス {incident.ip} からの通信は、当方のファイアウォールで",
        f"  ブロック済みです (遮断回数: {incident.bans} 回)。",
        "",
        _RULE, "6. 依頼事項", _RULE,
        "  送信元ネットワークの管理者へご連絡いただき、当該ホストの調査と",
        "  対処を依頼していただけますよう、よろしくお願いいたします。",
        "",
        _RULE, "7. 該当ログ (抜粋、時刻はログに記録されたもの)", _RULE,
    ]
    closing = ["", "以上", "", reporter.name,
               *([reporter.organisation] if reporter.organisation else []), reporter.email, ""]
    kept, left_out = _fit(incident, "\n".join(lines + closing), _JP)
    lines += [f"  {line}" for line in kept]
    if left_out:
        lines.append(f"  (ほか {left_out} 行省略)")
    if not incident.lines:
        lines.append("  (ログなし)")
    return "\n".join(lines + closing)


def jpcert_message(
    settings: MailSettings, reporter: Reporter, incident: Incident, to: str
) -> EmailMessage:
    """A report in the items of JPCERT/CC's incident report form, in Japanese.

    Always ISO-2022-JP (7bit body, RFC 2047 subject), whatever ``settings.charset``
    says: that is what Japanese desks read without trouble. Characters the charset
    lacks (emoji in a user name...) become ``?`` rather than stopping the report.
    """
    main = _hits(incident)[0]
    subject = (f"インシデント報告: {_label(main.service)} に対するブルートフォース攻撃"
               f" ({incident.ip})")
    msg = EmailMessage(policy=POLICY)
    _headers(msg, settings, reporter, to, subject, _JP)
    _set_body(msg, _jpcert_body(reporter, incident), _JP)
    return msg


# --------------------------------------------------------------------------- English


def _facts_en(reporter: Reporter, incident: Incident) -> list[str]:
    zone = _zone_of(incident)
    hits = _hits(incident)
    unknown = "unknown"
    return [
        f"  Source address:  {incident.ip}",
        f"  Reverse DNS:     {incident.hostname or unknown}",
        f"  Country:         {incident.country or unknown}",
        f"  AS:              {incident.asn or unknown}",
        f"  Abuse contact:   {incident.abuse or unknown}",
        f"  First seen:      {_when(incident.first_seen, zone)}",
        f"  Last seen:       {_when(incident.last_seen, zone)}",
        f"  Target host:     {reporter.host or unknown}",
        *(f"  Service:         {_where(h)}: {h.failures} failed logins [{h.jail}]"
          for h in hits),
        f"  Total failures:  {sum(h.failures for h in hits)}",
        f"  Times blocked:   {incident.bans}",
    ]


def _contact_en(reporter: Reporter) -> list[str]:
    out = [f"  Name:          {reporter.name}"]
    if reporter.organisation:
        out.append(f"  Organisation:  {reporter.organisation}")
    out.append(f"  E-mail:        {reporter.email}")
    if reporter.phone:
        out.append(f"  Phone:         {reporter.phone}")
    return out


def _abuse_subject(incident: Incident) -> str:
    return f"Abuse report: {_label(_hits(incident)[0].service)} brute force from {incident.ip}"


def abuse_message(
    settings: MailSettings, reporter: Reporter, incident: Incident, to: str
) -> EmailMessage:
    """A plain English report for an ISP's abuse desk (UTF-8), log lines inline.

    Plain text only: a desk's ticket system may render HTML, and attacker text (user
    names like ``<b>``) must stay text.
    """
    hits = _hits(incident)
    lines = [
        "Dear abuse team,",
        "",
        f"the address {incident.ip} in your network has repeatedly tried to log in to our",
        f"server {reporter.host or '(see below)'} ({_label(hits[0].service)} brute force).",
        "It has been blocked in our firewall. Please investigate the host behind this",
        "address and stop the activity.",
        "",
        *_facts_en(reporter, incident),
        "",
        "Contact for this report:",
        *_contact_en(reporter),
        "",
        f"This report was generated automatically by tailban {__version__}.",
        "",
        "Log excerpt (times as logged):",
        "",
    ]
    kept, left_out = _fit(incident, "\n".join(lines), "utf-8")
    lines += [f"  {line}" for line in kept]
    if left_out:
        lines.append(f"  [... {left_out} more lines not shown]")
    if not incident.lines:
        lines.append("  (no log lines)")
    lines.append("")
    msg = EmailMessage(policy=POLICY)
    _headers(msg, settings, reporter, to, _abuse_subject(incident), "utf-8")
    _set_body(msg, "\n".join(lines), "utf-8")
    return msg


# --------------------------------------------------------------------------- X-ARF

_YAML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def _yaml_string(value: str) -> str:
    """A YAML double-quoted scalar that is one line of printable ASCII.

    Everything else is an escape, so no value can end the line, close the quote or
    start a new key, and the part stays 7bit. Lone surrogates (not encodable) become
    U+FFFD.
    """
    out = ['"']
    for char in str(value):
        code = ord(char)
        if char in _YAML_ESCAPES:
            out.append(_YAML_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _xarf_report(settings: MailSettings, reporter: Reporter, incident: Incident) -> str:
    """The machine-readable part: the login-attack schema's fields, strings quoted.

    Port, Occurrences and Version stay bare because the schema wants numbers there.
    """
    hit = _hits(incident)[0]
    zone = _zone_of(incident)
    source_type = "ipv6" if ipaddress.ip_address(incident.ip).version == 6 else "ipv4"
    domain = settings.sender.rpartition("@")[2]
    fields: list[tuple[str, str]] = [
        ("Reported-From", _yaml_string(reporter.email)),
        ("Category", _yaml_string("abuse")),
        ("Report-Type", _yaml_string("login-attack")),
        ("Report-ID", _yaml_string(f"{dedupe_key(incident)}@{domain}")),
        ("Service", _yaml_string(hit.service)),
    ]
    if hit.port:
        fields.append(("Port", str(hit.port)))
    fields += [
        ("User-Agent", _yaml_string(f"tailban {__version__}")),
        ("Date", _yaml_string(format_datetime(datetime.fromtimestamp(incident.first_seen,
                                                                     zone)))),
        ("Source", _yaml_string(incident.ip)),
        ("Source-Type", _yaml_string(source_type)),
    ]
    try:
        target = ipaddress.ip_address(reporter.host)
    except ValueError:
        pass
    else:
        kind = "ipv6" if target.version == 6 else "ipv4"
        fields += [("Destination", _yaml_string(target.compressed)),
                   ("Destination-Type", _yaml_string(kind))]
    fields += [
        ("Occurrences", str(hit.failures)),
        ("Attachment", _yaml_string("text/plain")),
        ("Schema-URL", _yaml_string(SCHEMA_URL)),
        ("Version", "0.2"),
    ]
    return "---\n" + "".join(f"{key}: {value}\n" for key, value in fields)


def _text_part(text: str, name: str) -> EmailMessage:
    part = EmailMessage(policy=POLICY)
    part.set_content(text, charset="utf-8")
    del part["MIME-Version"]  # only the top level carries it
    part.set_param("name", name)
    return part


def xarf_message(
    settings: MailSettings, reporter: Reporter, incident: Incident, to: str
) -> EmailMessage:
    """An X-ARF v0.2 login-attack report: text, ``report.txt`` (YAML), ``logfile.log``.

    For desks that file reports by machine (abusix and friends); the first part is
    still a readable letter for the ones that do not.
    """
    zone = _zone_of(incident)
    date = format_datetime(datetime.fromtimestamp(incident.first_seen, zone))
    human = [
        "Dear abuse team,",
        "",
        f"the address {incident.ip} has attacked our server {reporter.host or ''}".rstrip()
        + f" ({_label(_hits(incident)[0].service)} login attack).",
        "It has been blocked in our firewall. Please investigate the host behind it.",
        "",
        *_facts_en(reporter, incident),
        "",
        "This mail is an X-ARF report (http://www.x-arf.org/): report.txt holds the",
        "machine-readable report, logfile.log the log lines (times as logged).",
        "",
        "Contact for this report:",
        *_contact_en(reporter),
        "",
        f"Generated automatically by tailban {__version__}.",
        "",
    ]
    log = "\n".join(incident.lines) + "\n" if incident.lines else "(no log lines)\n"
    if incident.omitted:
        log += f"[... {incident.omitted} more lines not shown]\n"

    msg = EmailMessage(policy=POLICY)
    _headers(msg, settings, reporter, to, f"abuse report about {incident.ip} - {date}",
             "utf-8")
    msg["X-ARF"] = "YES"
    msg.set_content("\n".join(human), charset="utf-8")
    msg.make_mixed()
    msg.attach(_text_part(_xarf_report(settings, reporter, incident), "report.txt"))
    msg.attach(_text_part(log, "logfile.log"))
    return msg
