"""Writers for tiny MaxMind DB files that the real geoip2 Reader accepts.

Tests use real files rather than mocks so that the reader's database-type checks, IPv4-in-IPv6
mapping and file replacement behave exactly as with the databases geoipupdate downloads.
Import with ``from mmdb_fixtures import write_country_db`` (tests/ is on sys.path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from mmdb_writer import MmdbF64, MmdbU32, MMDBWriter
from netaddr import IPSet

StrPath = str | os.PathLike[str]

COUNTRY_TYPE = "GeoLite2-Country"
CITY_TYPE = "GeoLite2-City"
ASN_TYPE = "GeoLite2-ASN"


def write_db(path: StrPath, database_type: str, records: Mapping[str, dict[str, Any]]) -> None:
    """Write arbitrary records; the typed helpers below build the record shapes geoip2 reads.

    The database is IPv6 with IPv4 mapped into ::/96, like MaxMind's own files, so IPv4 and
    IPv6 networks can be mixed.
    """
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description={"en": f"tailban test {database_type}"},
    )
    for cidr, record in records.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(os.fspath(path))


def _country_record(iso: str, name: str) -> dict[str, Any]:
    return {"country": {"iso_code": iso, "names": {"en": name}}}


def write_country_db(path: StrPath, networks: Mapping[str, tuple[str, str]]) -> None:
    """``networks`` maps a CIDR to ``(iso_code, english_name)``."""
    write_db(
        path,
        COUNTRY_TYPE,
        {cidr: _country_record(iso, name) for cidr, (iso, name) in networks.items()},
    )


def write_city_db(
    path: StrPath, networks: Mapping[str, tuple[str, str, str, float, float]]
) -> None:
    """``networks`` maps a CIDR to ``(iso_code, country_name, city_name, latitude, longitude)``."""
    records: dict[str, dict[str, Any]] = {}
    for cidr, (iso, name, city, lat, lon) in networks.items():
        record = _country_record(iso, name)
        record["city"] = {"names": {"en": city}}
        record["location"] = {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon)}
        records[cidr] = record
    write_db(path, CITY_TYPE, records)


def write_asn_db(path: StrPath, networks: Mapping[str, tuple[int, str]]) -> None:
    """``networks`` maps a CIDR to ``(asn, organisation)``; ASNs are uint32 as in MaxMind's."""
    write_db(
        path,
        ASN_TYPE,
        {
            cidr: {
                "autonomous_system_number": MmdbU32(asn),
                "autonomous_system_organization": org,
            }
            for cidr, (asn, org) in networks.items()
        },
    )


def replace_db(
    path: StrPath, write: Callable[[StrPath, Mapping[str, Any]], None], networks: Mapping[str, Any]
) -> None:
    """Swap in a new database the way geoipupdate does: write a sibling file, then rename.

    ``write`` is one of the writers above. The rename gives the path a new inode, so a reader
    that still has the old file mapped keeps working.
    """
    target = os.fspath(path)
    tmp = f"{target}.tmp-{os.getpid()}"
    write(tmp, networks)
    os.replace(tmp, target)
