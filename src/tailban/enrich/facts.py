"""Everything known about one address, as one JSON-able value (stored, shown, mailed).

The parts come from untrusted sources (PTR records, whois servers, DNSBL TXT records); they
are cleaned by their adapters, and ``text_*`` helpers give the one-line forms used in mails
and ``tailban show``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Enrichment:
    ip: str
    fetched_at: float
    country_iso: str | None = None
    country_name: str | None = None
    country_source: str | None = None  # "geoip" | "whois"
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    asn: int | None = None
    as_org: str | None = None
    rdns: tuple[str, ...] = ()
    rdns_confirmed: tuple[str, ...] = ()
    dnsbl: tuple[dict[str, Any], ...] = ()  # {"zone", "codes", "meanings", "txt"}
    dnsbl_checked: tuple[str, ...] = ()  # zones that answered (listed or not)
    whois: dict[str, Any] = field(default_factory=dict)  # network, netname, org, abuse, ...
    notes: tuple[str, ...] = ()  # missing databases, timeouts: what the admin should know

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Enrichment:
        data = json.loads(text)
        for key in ("rdns", "rdns_confirmed", "dnsbl", "dnsbl_checked", "notes"):
            data[key] = tuple(data.get(key) or ())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    # -- one-line forms -----------------------------------------------------------------

    @property
    def abuse(self) -> str | None:
        value = self.whois.get("abuse")
        return value if isinstance(value, str) else None

    def text_country(self) -> str:
        if not self.country_iso:
            return ""
        name = f" {self.country_name}" if self.country_name else ""
        return f"{self.country_iso}{name}"

    def text_asn(self) -> str:
        if self.asn is None:
            return ""
        return f"AS{self.asn}" + (f" {self.as_org}" if self.as_org else "")

    def text_org(self) -> str:
        parts = [self.whois.get("netname"), self.whois.get("org"), self.whois.get("network")]
        return " / ".join(str(p) for p in parts if p)

    def text_rdns(self) -> str:
        if not self.rdns:
            return ""
        return ", ".join(f"{n}{'' if n in self.rdns_confirmed else ' (unconfirmed)'}"
                         for n in self.rdns)

    def text_dnsbl(self) -> str:
        if not self.dnsbl:
            return "not listed" if self.dnsbl_checked else ""
        return "; ".join(f"{d.get('zone')}: {', '.join(d.get('meanings') or ())}"
                         for d in self.dnsbl)

    def text_whois(self) -> str:
        w = self.whois
        if not w:
            return ""
        keys = ("network", "netname", "org", "country", "abuse")
        text = ", ".join(f"{k} {w[k]}" for k in keys if w.get(k))
        if w.get("error"):
            text += ("; " if text else "") + f"error: {w['error']}"
        return text
