"""Mail settings: where and how mails go, checked when the configuration is read.

Kept apart from :mod:`tailban.notify.mail` so reading the configuration does not load the
email package (several MiB) into a daemon that sends no mail.
"""

from __future__ import annotations

import math
import re
import socket
from dataclasses import dataclass, field
from string import Template
from typing import Literal

Transport = Literal["smtp", "sendmail"]
Security = Literal["none", "starttls", "ssl"]

VARIABLES = (
    "ip", "jail", "failures", "matches", "country", "asn", "org", "rdns", "dnsbl",
    "whois", "abuse", "bantime", "expires", "hostname",
)

DEFAULT_SUBJECT = "[tailban] $jail: banned $ip ($country) after $failures failures"
DEFAULT_BODY = """\
Hi,

The address $ip has just been banned by tailban on $hostname
after $failures failures in the jail $jail.

  Ban length:  $bantime
  Expires:     $expires
  Country:     $country
  AS:          $asn
  Network:     $org
  Reverse DNS: $rdns
  DNSBL:       $dnsbl
  Abuse mail:  $abuse

Whois summary:
$whois

Lines containing failures of $ip:
$matches

Regards,
tailban
"""


_CONTROL = re.compile(
    r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
    r"\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]"
)
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,255}")


def valid_address(text: str) -> bool:
    """True for a plain ``local@domain`` address: ASCII dot-atom, no name, no comment.

    Deliberately narrower than RFC 5322 (no quoted local parts, no display names): a
    setting that needs more is more likely a typo or an injection attempt than a need.
    """
    if len(text) > 254 or text.count("@") != 1:
        return False
    local, domain = text.split("@")
    if len(local) > 64 or len(domain) > 253:
        return False
    if not (_LOCAL_PART.fullmatch(local) and _DOMAIN.fullmatch(domain)):
        return False
    from email.errors import HeaderParseError
    from email.headerregistry import Address

    try:
        parsed = Address(addr_spec=text)
    except (ValueError, IndexError, HeaderParseError):
        return False
    return parsed.addr_spec == text


def _default_sender() -> str:
    candidate = f"tailban@{socket.gethostname()}"
    return candidate if valid_address(candidate) else "tailban@localhost"


def _check_template(name: str, text: str) -> None:
    template = Template(text)
    if not template.is_valid():
        raise ValueError(f"mail {name}: invalid $-placeholder in {text[:80]!r} (use $$ for $)")
    unknown = sorted(set(template.get_identifiers()) - set(VARIABLES))
    if unknown:
        raise ValueError(
            f"mail {name}: unknown variable(s) {', '.join('$' + u for u in unknown)};"
            f" known: {', '.join(VARIABLES)}"
        )


@dataclass(frozen=True, slots=True)
class MailSettings:
    """Where and how mails go; constructing one validates everything (ValueError).

    ``destination`` may be given as a comma-separated string, as in an ini file.
    ``digest`` is a period in seconds: 0 sends one mail per ban, otherwise bans are
    collected (see :mod:`tailban.notify.digest`).
    """

    destination: tuple[str, ...]
    sender: str = field(default_factory=_default_sender)
    transport: Transport = "smtp"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_security: Security = "none"
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    sendmail_path: str = "/usr/sbin/sendmail"
    charset: str = "utf-8"
    timeout: float = 10.0
    subject_template: str = DEFAULT_SUBJECT
    body_template: str = DEFAULT_BODY
    digest: float = 0.0

    def __post_init__(self) -> None:
        raw: object = self.destination
        if isinstance(raw, str):
            raw = [a.strip() for a in raw.split(",") if a.strip()]
        if not isinstance(raw, tuple | list):
            raise ValueError(f"mail destination: {raw!r} is not a list of addresses")
        destination = tuple(raw)
        object.__setattr__(self, "destination", destination)
        if not destination:
            raise ValueError("mail destination: at least one address is needed")
        for address in destination:
            if not isinstance(address, str) or not valid_address(address):
                raise ValueError(f"mail destination: {address!r} is not a valid e-mail address")
        if not valid_address(self.sender):
            raise ValueError(f"mail sender: {self.sender!r} is not a valid e-mail address")
        if self.transport not in ("smtp", "sendmail"):
            raise ValueError(f"mail transport: {self.transport!r} is not smtp or sendmail")
        if self.smtp_security not in ("none", "starttls", "ssl"):
            raise ValueError(
                f"mail smtp_security: {self.smtp_security!r} is not none, starttls or ssl"
            )
        if not _HOST.fullmatch(self.smtp_host):
            raise ValueError(f"mail smtp_host: {self.smtp_host!r} is not a host name")
        if isinstance(self.smtp_port, bool) or not 0 < self.smtp_port < 65536:
            raise ValueError(f"mail smtp_port: {self.smtp_port!r} is not a port number")
        if self.smtp_password is not None and self.smtp_user is None:
            raise ValueError("mail smtp_password is set but smtp_user is not")
        if self.smtp_user is not None:
            if not self.smtp_user or _CONTROL.search(self.smtp_user):
                raise ValueError(f"mail smtp_user: {self.smtp_user!r} is not a user name")
            if self.smtp_password is None:
                raise ValueError("mail smtp_user is set but smtp_password is not")
        if not self.sendmail_path.startswith("/"):
            raise ValueError(
                f"mail sendmail_path: {self.sendmail_path!r} must be an absolute path"
            )
        charset = self.charset.strip().lower().replace("_", "-")
        charset = {"utf8": "utf-8", "iso2022-jp": "iso-2022-jp"}.get(charset, charset)
        if charset not in ("utf-8", "iso-2022-jp"):
            raise ValueError(f"mail charset: {self.charset!r} is not utf-8 or iso-2022-jp")
        object.__setattr__(self, "charset", charset)
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"mail timeout: {self.timeout!r} must be a positive number")
        if not (math.isfinite(self.digest) and self.digest >= 0):
            raise ValueError(f"mail digest: {self.digest!r} must be 0 or a positive number")
        if _CONTROL.search(self.subject_template):
            raise ValueError("mail subject_template: must be one line without control characters")
        _check_template("subject_template", self.subject_template)
        _check_template("body_template", self.body_template)

