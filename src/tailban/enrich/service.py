"""One call that gathers what every configured source knows about an address.

Synchronous and slow by nature (DNS, whois over the network): only the enrichment worker
thread calls it, never the ban path. Each source is optional and failures become notes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tailban.config.model import Config, EnrichSettings
from tailban.enrich.facts import Enrichment

if TYPE_CHECKING:  # imported when wanted: dnspython and geoip2 cost ~25 MiB of memory
    from tailban.enrich.dns import Resolver
    from tailban.enrich.geoip import GeoIPLookup
    from tailban.enrich.whois import WhoisClient

log = logging.getLogger("tailban.enrich")


@dataclass(frozen=True, slots=True)
class Wants:
    """Which sources run: all configured ones with [enrich] on, else what a jail needs."""

    geoip: bool = False
    rdns: bool = False
    dnsbl: bool = False
    whois: bool = False


def wants_for(config: Config) -> Wants | None:
    """Which sources to run; None when nothing needs enrichment at all."""
    settings = config.daemon.enrich
    jails = config.enabled_jails
    mail_whois = any(j.mail.startswith("mail-whois") for j in jails)
    dnsbl_jails = any(j.dnsbl_action != "none" for j in jails)
    if settings.enabled:
        return Wants(geoip=any((settings.country_db, settings.city_db, settings.asn_db)),
                     rdns=settings.rdns, dnsbl=bool(settings.dnsbl_zones),
                     whois=settings.whois or mail_whois)
    if mail_whois or dnsbl_jails or any(j.mail != "none" for j in jails) \
            or config.daemon.mail is not None:
        return Wants(dnsbl=dnsbl_jails and bool(settings.dnsbl_zones), whois=mail_whois)
    return None


class Enricher:
    def __init__(self, settings: EnrichSettings, wants: Wants, *,
                 whois_resolve: Callable[[str, int], tuple[str, int]] | None = None) -> None:
        self.settings = settings
        self.wants = wants
        self.geoip: GeoIPLookup | None = None
        self.dns: Resolver | None = None
        self.whois: WhoisClient | None = None
        if wants.geoip:
            from tailban.enrich.geoip import GeoIPLookup

            self.geoip = GeoIPLookup(settings.country_db, settings.city_db, settings.asn_db)
        if wants.rdns or wants.dnsbl:
            from tailban.enrich.dns import DnsSettings, Resolver

            self.dns = Resolver(DnsSettings(settings.nameservers, settings.dns_port,
                                            settings.dns_timeout, settings.dnsbl_zones,
                                            settings.dnsbl_budget))
        if wants.whois:
            from tailban.enrich.whois import WhoisClient

            self.whois = WhoisClient((settings.whois_server, settings.whois_port),
                                     timeout=settings.whois_timeout,
                                     rate_per_minute=settings.whois_rate,
                                     cache_ttl=settings.ttl, resolve=whois_resolve)

    def problems(self) -> list[str]:
        """For the log at start: missing databases and the like (never fatal)."""
        return self.geoip.problems() if self.geoip is not None else []

    def gather(self, ip: str, now: float, *, dnsbl_only: bool = False) -> Enrichment:
        notes: list[str] = []
        fields: dict[str, object] = {}
        if self.geoip is not None and not dnsbl_only:
            geo = self.geoip.lookup(ip)
            fields.update(country_iso=geo.country_iso, country_name=geo.country_name,
                          country_source="geoip" if geo.country_iso else None,
                          city=geo.city, latitude=geo.latitude, longitude=geo.longitude,
                          asn=geo.asn, as_org=geo.as_org)
            notes.extend(n for n in geo.notes if "configured" not in n)
        if self.dns is not None and self.wants.rdns and not dnsbl_only:
            reverse = self.dns.reverse(ip)
            fields.update(rdns=reverse.names, rdns_confirmed=reverse.confirmed)
            if reverse.error:
                notes.append(f"reverse DNS: {reverse.error}")
        if self.dns is not None and self.wants.dnsbl and self.settings.dnsbl_zones:
            result = self.dns.dnsbl(ip)
            fields["dnsbl"] = tuple({"zone": x.zone, "codes": list(x.codes),
                                     "meanings": list(x.meanings), "txt": x.txt}
                                    for x in result.listings)
            fields["dnsbl_checked"] = (*(x.zone for x in result.listings), *result.not_listed)
            notes.extend(f"DNSBL {e.zone}: {e.reason}" for e in result.errors)
        if self.whois is not None and not dnsbl_only:
            info = self.whois.lookup(ip)
            fields["whois"] = {k: v for k, v in (
                ("network", info.network), ("country", info.country),
                ("netname", info.netname), ("org", info.org), ("abuse", info.abuse),
                ("servers", list(info.servers)), ("error", info.error)) if v}
            if not fields.get("country_iso") and info.country:
                fields.update(country_iso=info.country, country_source="whois")
        return Enrichment(ip, now, notes=tuple(notes), **fields)  # type: ignore[arg-type]

    def close(self) -> None:
        if self.geoip is not None:
            self.geoip.close()
