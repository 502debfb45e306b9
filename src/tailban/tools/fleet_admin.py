"""`tailban fleet init|banned|grants`: administer the shared store without the daemon."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from tailban.config.load import load_daemon_settings
from tailban.daemon.fleet import open_store
from tailban.fleet.policy import clean_text
from tailban.stores.fleet import FleetStoreError, redact

GRANTS = """-- as the database owner, once (tailban fleet init created the tables):
CREATE ROLE {role} LOGIN PASSWORD '...';  -- or one role per host
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON fleet_meta TO {role};
GRANT SELECT, INSERT ON fleet_events TO {role};
GRANT UPDATE (lifted_at) ON fleet_events TO {role};  -- unban --fleet marks old bans lifted
GRANT DELETE ON fleet_events TO {role};  -- expiry of old rows (keep =); omit to expire by hand
GRANT USAGE ON SEQUENCE fleet_events_id_seq TO {role};
-- and in tailban.conf [fleet] of each host: migrate = no
"""


def fleet_command(confdir: str, action: str, store_url: str | None, role: str,
                  as_json: bool) -> int:
    settings = load_daemon_settings(confdir).fleet
    if store_url:
        settings = replace(settings, store=store_url)
    if not settings.store:
        print("tailban: no [fleet] store in tailban.conf (or give --store)", file=sys.stderr)
        return 78
    if action == "grants":
        database = settings.store.rsplit("/", 1)[-1].split("?")[0] or "tailban"
        print(GRANTS.format(role=role, database=database), end="")
        return 0
    try:
        store = open_store(settings, migrate=action == "init")
    except FleetStoreError as exc:
        print(f"tailban: fleet store {redact(settings.store)}: {exc}", file=sys.stderr)
        return 1
    try:
        if action == "init":
            print(f"fleet tables ready in {redact(settings.store)}")
            return 0
        rows = store.active_bans(time.time())
    finally:
        store.close()
    merged = fleet_bans(rows)
    if as_json:
        print(json.dumps(merged, indent=2))
    elif not merged:
        print("no fleet bans")
    else:
        for entry in merged:
            print(f"{entry['ip']:<39} {', '.join(entry['jails'])}  hosts: "
                  f"{', '.join(entry['hosts'])}")
    return 0


def fleet_bans(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """One entry per address, whatever number of hosts banned it (reports count it once)."""
    by_ip: dict[str, dict[str, Any]] = defaultdict(lambda: {"jails": set(), "hosts": set(),
                                                            "first": None, "events": 0})
    for _id, _kind, ip, jail, host, _grp, _reason, banned_at, _expires in rows:
        entry = by_ip[clean_text(ip, 64)]
        entry["jails"].add(clean_text(jail, 40))
        entry["hosts"].add(clean_text(host, 128))
        entry["events"] += 1
        if entry["first"] is None or banned_at < entry["first"]:
            entry["first"] = banned_at
    return [{"ip": ip, "jails": sorted(e["jails"]), "hosts": sorted(e["hosts"]),
             "first_banned_at": e["first"], "events": e["events"]}
            for ip, e in sorted(by_ip.items())]
