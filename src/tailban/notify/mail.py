"""Ban mails built with the stdlib ``email`` package and sent through SMTP or sendmail.

Every value that reaches a mail comes from an attacker (log lines, reverse DNS, whois), so
values are cleaned once in :func:`template_values` and headers are only ever set through the
``email`` API, which refuses CR/LF. Recipients come from validated settings, never from the
message, so nothing in a value can add a recipient.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import ssl
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP as _SMTP_POLICY
from email.utils import formatdate, make_msgid
from string import Template
from typing import Literal

from tailban import __version__
from tailban.notify.settings import _CONTROL, VARIABLES
from tailban.notify.settings import DEFAULT_BODY as DEFAULT_BODY
from tailban.notify.settings import DEFAULT_SUBJECT as DEFAULT_SUBJECT
from tailban.notify.settings import MailSettings as MailSettings
from tailban.notify.settings import Security as Security
from tailban.notify.settings import Transport as Transport
from tailban.notify.settings import valid_address as valid_address

log = logging.getLogger(__name__)

LifecycleEvent = Literal["start", "stop"]

LINE_MAX = 500
"""Longest single-line value, in characters: enough for any real rDNS or log line."""
MATCHES_MAX = 50
"""Most log lines quoted in one mail (the last may say how many were left out)."""
BODY_MAX = 64 * 1024
"""Largest body in bytes of the mail charset; a storm must not produce huge mails."""
DIGEST_LISTED = 500
"""Bans listed one per row in a digest before "and N more"."""

# cte_type 7bit: a non-ASCII body is sent quoted-printable/base64, never as raw 8bit that a
# server without 8BITMIME could mangle.
POLICY = _SMTP_POLICY.clone(cte_type="7bit")

# Line and paragraph breaks (everything str.splitlines() splits on), other C0/C1 controls,
# lone surrogates (unencodable) and the invisible/bidi format characters that can disguise
# text. Tab is handled separately: it becomes a space.
_ELLIPSIS = "..."
_TRUNCATED = "\n[... truncated by tailban]\n"
_JIS_LINE = 160  # chars; even alternating kana/ASCII stays well below SMTP's 998 octets


class MailError(Exception):
    """A mail could not be handed over; the message says where and why, for the log."""



@dataclass(frozen=True, slots=True)
class BanMailFacts:
    """What is known about one ban; all text is untrusted and cleaned when rendered.

    ``bantime`` is human text ("10m"), ``expires`` an ISO time with zone or "never",
    ``whois`` a short summary (its line breaks become `` | ``), ``hostname`` this
    server's name.
    """

    ip: str
    jail: str
    failures: int
    matches: tuple[str, ...] = ()
    country: str = ""
    asn: str = ""
    org: str = ""
    rdns: str = ""
    dnsbl: str = ""
    whois: str = ""
    abuse: str = ""
    bantime: str = ""
    expires: str = "never"
    hostname: str = field(default_factory=socket.gethostname)


def clean_line(value: object, limit: int = LINE_MAX) -> str:
    """One line of printable text, at most ``limit`` characters.

    Controls are removed rather than replaced so that ``\\r\\nBcc: x`` can never become a
    line of its own; only a bounded prefix is examined, so a 1 MB value costs little.
    """
    text = str(value)[: limit * 4].replace("\t", " ")
    text = _CONTROL.sub("", text).strip()
    if len(text) > limit:
        text = text[: limit - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
    return text


def _clean_lines(lines: Sequence[str]) -> list[str]:
    """At most MATCHES_MAX lines, the last one saying how many were left out."""
    scanned = lines[: MATCHES_MAX * 4]  # bounded work whatever the caller passes
    cleaned = [line for line in (clean_line(x) for x in scanned) if line]
    unscanned = len(lines) - len(scanned)
    if len(cleaned) > MATCHES_MAX or unscanned:
        kept = MATCHES_MAX - 1
        extra = max(0, len(cleaned) - kept) + unscanned
        cleaned = [*cleaned[:kept], f"[... {extra} more lines not shown]"]
    return cleaned


def _joined_lines(text: str) -> str:
    """A multi-line summary as one line: `` | `` keeps its structure readable."""
    lines = (clean_line(x) for x in str(text)[: LINE_MAX * 4].splitlines())
    return clean_line(" | ".join(line for line in lines if line))


def template_values(facts: BanMailFacts, *, single_line: bool = False) -> dict[str, str]:
    """The template variables of a ban, every one cleaned and capped.

    Every value is one line except ``matches``, which keeps one line per log line in a
    body; with ``single_line`` (subjects) those are joined with `` | `` too. Empty values
    become ``-`` so that a layout never shows a dangling label.
    """
    values = {
        name: clean_line(getattr(facts, name))
        for name in VARIABLES
        if name not in ("matches", "whois", "failures")
    }
    try:
        values["failures"] = str(int(facts.failures))
    except (TypeError, ValueError):
        values["failures"] = clean_line(facts.failures, 20)
    values["whois"] = _joined_lines(facts.whois)
    raw: object = facts.matches
    matches = _clean_lines((raw,) if isinstance(raw, str) else tuple(facts.matches))
    values["matches"] = clean_line(" | ".join(matches)) if single_line else "\n".join(matches)
    return {name: values[name] or "-" for name in VARIABLES}


def _codec_safe(text: str, charset: str) -> str:
    """Characters the charset lacks become ``?``: a mail with a ``?`` beats no mail."""
    if charset == "utf-8":
        return text
    return text.encode(charset, "replace").decode(charset)


def _cap_body(text: str, charset: str) -> str:
    limit = BODY_MAX - len(_TRUNCATED.encode(charset))
    if len(text.encode(charset, "replace")) <= BODY_MAX:
        return text
    keep = min(len(text), limit)
    while keep > 0:
        excess = len(text[:keep].encode(charset, "replace")) - limit
        if excess <= 0:
            break
        keep -= max(1, excess // 4)
    return text[:keep] + _TRUNCATED


def _wrap_long_lines(text: str, width: int) -> str:
    out: list[str] = []
    for line in text.split("\n"):
        out.extend(line[i:i + width] for i in range(0, max(len(line), 1), width))
    return "\n".join(out)


def _set_subject(msg: EmailMessage, subject: str, charset: str) -> None:
    # The normal assignment runs the email API's CR/LF refusal even when the value is
    # then replaced by its iso-2022-jp encoded words (the API can only write UTF-8 ones).
    msg["Subject"] = subject
    if charset == "utf-8" or subject.isascii():
        return
    encoded = Header(_codec_safe(subject, charset), charset, header_name="Subject").encode()
    del msg["Subject"]
    msg.set_raw("Subject", encoded)


def _set_body(msg: EmailMessage, text: str, charset: str) -> None:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if charset == "utf-8":
        msg.set_content(_cap_body(text, charset), charset="utf-8")
        return
    # Wrapped first: every wrapped line costs escape sequences that the cap must count.
    text = _cap_body(_wrap_long_lines(_codec_safe(text, charset), _JIS_LINE), charset)
    msg.set_content(text, charset=charset, cte="7bit")


def _new_message(settings: MailSettings, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.destination)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("tailban", domain=settings.sender.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a daemon
    msg["X-Mailer"] = f"tailban {__version__}"
    _set_subject(msg, clean_line(subject), settings.charset)
    _set_body(msg, body, settings.charset)
    return msg


def ban_message(settings: MailSettings, facts: BanMailFacts) -> EmailMessage:
    """The mail for one ban, from the configured subject and body templates."""
    subject = Template(settings.subject_template).substitute(
        template_values(facts, single_line=True)
    )
    body = Template(settings.body_template).substitute(template_values(facts))
    return _new_message(settings, subject, body)


def _local_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def digest_message(
    settings: MailSettings,
    facts: Sequence[BanMailFacts],
    period_start: float,
    period_end: float,
    *,
    hostname: str | None = None,
) -> EmailMessage:
    """One mail for many bans, so that a storm costs one mail per period, not one per ban.

    ``period_start``/``period_end`` are Unix times. The subject is fixed rather than
    templated: the per-ban variables make no sense for a group.
    """
    host = clean_line(hostname or (facts[0].hostname if facts else socket.gethostname()), 100)
    count = len(facts)
    per_jail = Counter(clean_line(f.jail, 40) or "-" for f in facts)
    start, end = _local_time(period_start), _local_time(period_end)
    lines = [
        f"tailban on {host} made {_plural(count, 'ban')} between {start} and {end}.",
        "",
        "Bans per jail:",
        *(f"  {jail:<40} {n:>7}" for jail, n in sorted(per_jail.items(),
                                                       key=lambda kv: (-kv[1], kv[0]))),
        "",
        f"{'Address':<39}  {'Jail':<20}  {'Country':<20}  {'Failures':>8}",
        f"{'-' * 39}  {'-' * 20}  {'-' * 20}  {'-' * 8}",
    ]
    for fact in facts[:DIGEST_LISTED]:
        values = template_values(fact, single_line=True)
        lines.append(
            f"{clean_line(values['ip'], 39):<39}  {clean_line(values['jail'], 20):<20}  "
            f"{clean_line(values['country'], 20):<20}  {clean_line(values['failures'], 8):>8}"
        )
    if count > DIGEST_LISTED:
        lines.append(f"... and {count - DIGEST_LISTED} more")
    lines += ["", "Regards,", "tailban", ""]
    subject = f"[tailban] {host}: {_plural(count, 'ban')} between {start} and {end}"
    return _new_message(settings, subject, "\n".join(lines))


def lifecycle_message(
    settings: MailSettings, event: LifecycleEvent, hostname: str, jails: Sequence[str]
) -> EmailMessage:
    """The start/stop mail, like fail2ban's: a restart nobody asked for is worth knowing."""
    if event not in ("start", "stop"):
        raise ValueError(f"lifecycle event {event!r} is not start or stop")
    verb = "started" if event == "start" else "stopped"
    host = clean_line(hostname, 100) or "-"
    names = [clean_line(j, 100) for j in jails[:DIGEST_LISTED]]
    lines = ["Hi,", "", f"tailban has been {verb} on {host}.", ""]
    if names:
        lines.append(f"{_plural(len(jails), 'jail')}:")
        lines += [f"  {name}" for name in names]
        if len(jails) > DIGEST_LISTED:
            lines.append(f"  ... and {len(jails) - DIGEST_LISTED} more")
    else:
        lines.append("No jails.")
    lines += ["", "Regards,", "tailban", ""]
    return _new_message(settings, f"[tailban] {verb} on {host}", "\n".join(lines))


def alert_message(settings: MailSettings, alert_id: int, kind: str, jail: str, subject: str,
                  score: float, reasons: Sequence[str]) -> EmailMessage:
    """An anomaly alert: what was unusual, in words, and how to mark it as expected."""
    what = {"login": "unusual login", "wave": "attack wave",
            "distributed": "distributed attack"}.get(kind, kind)
    article = "an" if what[:1] in "aeiou" else "a"
    lines = ["Hi,", "", f"tailban noticed {article} {what} in {clean_line(jail, 100)}:", ""]
    lines += [f"  - {clean_line(reason)}" for reason in reasons[:20]]
    lines += ["", f"Alert {alert_id}, score {score:.1f}.",
              f"If this was expected: tailban alerts ack {alert_id}"
              + (" --learn" if kind == "login" else ""), "", "Regards,", "tailban", ""]
    return _new_message(settings, f"[tailban] {what}: {clean_line(subject, 100)}",
                        "\n".join(lines))


def report_message(settings: MailSettings, subject: str, text: str,
                   html: str) -> EmailMessage:
    """The scheduled report: a plain-text part and the self-contained HTML as alternatives."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.destination)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("tailban", domain=settings.sender.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Mailer"] = f"tailban {__version__}"
    msg["Subject"] = clean_line(subject)
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


class MailSender:
    """Hands finished messages to the MTA; one call, one delivery attempt.

    Envelope recipients are always the configured destinations (SMTP) or the To header
    this module wrote (sendmail ``-t``), never anything derived from ban data. Failures
    raise :class:`MailError`; retrying is the caller's choice.
    ``ssl_context`` replaces the default verifying context (e.g. a private CA).
    """

    def __init__(
        self, settings: MailSettings, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.settings = settings
        self._ssl_context = ssl_context

    def send(self, msg: EmailMessage) -> None:
        if self.settings.transport == "sendmail":
            self._send_sendmail(msg)
        else:
            self._send_smtp(msg)

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _send_smtp(self, msg: EmailMessage) -> None:
        s = self.settings
        where = f"SMTP {s.smtp_host}:{s.smtp_port}"
        data = msg.as_bytes(policy=POLICY)
        stage = "connect"
        client: smtplib.SMTP | None = None
        try:
            if s.smtp_security == "ssl":
                client = smtplib.SMTP_SSL(
                    s.smtp_host, s.smtp_port, timeout=s.timeout, context=self._context()
                )
            else:
                client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout)
            if s.smtp_security == "starttls":
                stage = "STARTTLS"
                client.starttls(context=self._context())
            if s.smtp_user is not None:
                stage = "login"
                client.login(s.smtp_user, s.smtp_password or "")
            stage = "send"
            refused = client.sendmail(s.sender, list(s.destination), data)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"{where}: {stage} failed: {_describe(exc)}") from exc
        finally:
            if client is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.quit()
                client.close()
        if refused:
            # Some recipients got it: raising would make the caller resend to them too.
            log.warning("%s refused recipients: %s", where, ", ".join(sorted(refused)))

    def _send_sendmail(self, msg: EmailMessage) -> None:
        s = self.settings
        data = msg.as_bytes(policy=POLICY.clone(linesep="\n"))  # local MTAs want LF
        argv = [s.sendmail_path, "-t", "-oi"]
        try:
            done = subprocess.run(
                argv, input=data, capture_output=True, timeout=s.timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise MailError(f"{s.sendmail_path} did not finish within {s.timeout:g} s") from exc
        except OSError as exc:
            raise MailError(f"cannot run {s.sendmail_path}: {_describe(exc)}") from exc
        if done.returncode != 0:
            err = clean_line(done.stderr.decode("utf-8", "replace"), 300) or "no message"
            raise MailError(f"{s.sendmail_path} exited with status {done.returncode}: {err}")


def _describe(exc: BaseException) -> str:
    text = clean_line(exc, 300)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
