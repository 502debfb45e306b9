"""Report dicts for the renderer tests: a realistic quarter on a mail server, and an empty one.

The numbers are generated from a fixed seed and are internally consistent (months are the sums
of their days, the overall section is the sum of the jails), so a test can recompute any total
it looks for instead of trusting a hard-coded figure.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Europe/Amsterdam")
FIRST_DAY = date(2026, 1, 1)
DAYS = 90  # 2026-01-01 .. 2026-03-31
HOUR_WEIGHTS = [5, 4, 4, 3, 3, 4, 6, 8, 9, 9, 8, 7, 7, 7, 8, 8, 9, 10, 11, 12, 12, 10, 8, 6]


def _epoch(day: date, hour: int = 0, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE).timestamp()


def _spread(total: int, weights: list[int]) -> list[int]:
    """Split a total over weights exactly (largest remainders), so hours sum to the total."""
    scale = sum(weights)
    shares = [total * w / scale for w in weights]
    parts = [int(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda i: shares[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _by_month(days: list[list[Any]]) -> list[list[Any]]:
    months: Counter[str] = Counter()
    for key, value in days:
        months[key[:7]] += value
    return [[month, months[month]] for month in sorted(months)]


def _section(rng: random.Random, daily_base: int, accounts: list[str],
             privileged: list[str], countries: list[tuple[str, str]]) -> dict[str, Any]:
    days: list[list[Any]] = []
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        weekend = 1.25 if day.weekday() >= 5 else 1.0
        surge = 2.5 if 40 <= offset <= 44 else 1.0
        days.append([day.isoformat(), int(daily_base * weekend * surge * rng.uniform(0.6, 1.4))])
    total = sum(v for _, v in days)
    addresses = total // 23
    bans_daily = [max(1, v // 40) for _, v in days]
    bans = sum(bans_daily)
    active, table = 0, []
    for (key, _), banned in zip(days, bans_daily, strict=True):
        active = max(0, active + banned - int(active * 0.3))
        table.append([key, active])
    bans_per_month: Counter[str] = Counter()
    for (key, _), banned in zip(days, bans_daily, strict=True):
        bans_per_month[key[:7]] += banned

    account_counts = _spread(total * 6 // 10, [len(accounts) * 3 - i * 2 for i in
                                               range(len(accounts))])
    top_accounts: list[list[Any]] = [[name, n] for name, n in
                                     zip(accounts, account_counts, strict=True)]
    priv = [[name, n] for name, n in top_accounts if name in privileged]
    priv.sort(key=lambda item: -item[1])

    country_attempts = _spread(total * 9 // 10, [2 ** (len(countries) - i) for i in
                                                 range(len(countries))])
    top_countries = [[code, name, n, max(1, n // 19)]
                     for (code, name), n in zip(countries, country_attempts, strict=True)]

    rdns = []
    new_returning = []
    for month, count in _by_month(days):
        seen = count // 23
        named = int(seen * rng.uniform(0.3, 0.6))
        rdns.append([month, round(named / seen, 4) if seen else 0.0, named, seen])
        new = int(seen * rng.uniform(0.55, 0.8))
        new_returning.append([month, new, seen - new])

    longest = []
    for i in range(5):
        first = _epoch(FIRST_DAY + timedelta(days=2 + i * 3), 3 + i, 17)
        last = first + (60 - i * 7) * 86400 + 3600 * i
        longest.append({"ip": f"203.0.113.{10 + i}", "first": first, "last": last,
                        "days": round((last - first) / 86400, 1), "attempts": 400 - i * 37})
    longest.append({"ip": "2001:db8:85a3:1234:5678:8a2e:370:7334",
                    "first": _epoch(date(2026, 2, 1), 12), "last": _epoch(date(2026, 3, 1), 12),
                    "days": 28.0, "attempts": 150})
    persistent = [{"ip": f"198.51.100.{20 + i}", "attempts": 3000 - i * 410,
                   "active_days": 40 - i * 4, "first": _epoch(FIRST_DAY, 1 + i),
                   "last": _epoch(date(2026, 3, 30), 22, 5 * i)} for i in range(5)]

    checked = min(addresses, 100)
    listed = checked * 63 // 100
    return {
        "attempts_total": total,
        "addresses_total": addresses,
        "bans_total": bans,
        "attempts_per_month": _by_month(days),
        "attempts_per_day": days,
        "attempts_per_hour_of_day": _spread(total, HOUR_WEIGHTS),
        "privileged_attempts": priv,
        "privileged_total": sum(n for _, n in priv),
        "bans_per_month": [[m, bans_per_month[m]] for m in sorted(bans_per_month)],
        "ban_table_size": table,
        "top_countries": top_countries,
        "until_country": {"country": "JP", "rank": 14, "attempts": 30},
        "rdns_share_per_month": rdns,
        "top_accounts": top_accounts,
        "dnsbl": {"banned": bans, "checked": checked, "listed": listed,
                  "by_zone": [["zen.spamhaus.org", listed - 3], ["bl.spamcop.net", listed // 2],
                              ["b.barracudacentral.org", listed // 3]]},
        "new_vs_returning_per_month": new_returning,
        "longest_running": longest,
        "most_persistent": persistent,
    }


COUNTRIES = [("CN", "China"), ("US", "United States"), ("RU", "Russia"), ("NL", "Netherlands"),
             ("BR", "Brazil"), ("IN", "India"), ("VN", "Vietnam"), ("??", "Unknown"),
             ("DE", "Germany"), ("KR", "South Korea")]


def _merge(sections: list[dict[str, Any]]) -> dict[str, Any]:
    """The overall section as the sum of the jails, as the real aggregation would give."""
    def counted(field: str) -> list[list[Any]]:
        total: Counter[str] = Counter()
        for section in sections:
            for key, value in section[field]:
                total[key] += value
        return [[key, total[key]] for key in sorted(total)]

    def ranked(field: str) -> list[list[Any]]:
        return sorted(counted(field), key=lambda item: (-item[1], item[0]))

    merged = dict(sections[0])
    for field in ("attempts_total", "addresses_total", "bans_total", "privileged_total"):
        merged[field] = sum(section[field] for section in sections)
    for field in ("attempts_per_month", "attempts_per_day", "bans_per_month", "ban_table_size"):
        merged[field] = counted(field)
    for field in ("privileged_attempts", "top_accounts"):
        merged[field] = ranked(field)
    merged["attempts_per_hour_of_day"] = [
        sum(values) for values in zip(*(s["attempts_per_hour_of_day"] for s in sections),
                                      strict=True)]
    countries: dict[str, list[Any]] = {}
    for section in sections:
        for code, name, attempts, addresses in section["top_countries"]:
            entry = countries.setdefault(code, [code, name, 0, 0])
            entry[2] += attempts
            entry[3] += addresses
    merged["top_countries"] = sorted(countries.values(), key=lambda c: -c[2])
    rdns: dict[str, list[int]] = {}
    fresh: dict[str, list[int]] = {}
    for section in sections:
        for month, _share, named, seen in section["rdns_share_per_month"]:
            rdns.setdefault(month, [0, 0])
            rdns[month][0] += named
            rdns[month][1] += seen
        for month, new, returning in section["new_vs_returning_per_month"]:
            fresh.setdefault(month, [0, 0])
            fresh[month][0] += new
            fresh[month][1] += returning
    merged["rdns_share_per_month"] = [[m, round(n / t, 4), n, t] for m, (n, t) in
                                      sorted(rdns.items())]
    merged["new_vs_returning_per_month"] = [[m, n, r] for m, (n, r) in sorted(fresh.items())]
    zones: Counter[str] = Counter()
    for section in sections:
        for zone, count in section["dnsbl"]["by_zone"]:
            zones[zone] += count
    merged["dnsbl"] = {key: sum(s["dnsbl"][key] for s in sections)
                       for key in ("banned", "checked", "listed")}
    merged["dnsbl"]["by_zone"] = [[z, n] for z, n in zones.most_common()]
    merged["longest_running"] = sections[0]["longest_running"]
    merged["most_persistent"] = sections[0]["most_persistent"]
    return merged


def sample_report() -> dict[str, Any]:
    rng = random.Random(20260401)
    sshd = _section(rng, 700, ["root", "admin", "ubuntu", "test", "user", "oracle", "postgres",
                               "git", "pi", "guest"], ["root", "admin"], COUNTRIES)
    postfix = _section(rng, 180, ["info", "admin", "sales", "postmaster", "contact", "office",
                                  "support", "test"], ["admin", "postmaster"], COUNTRIES[::-1])
    return {
        "generated_at": _epoch(date(2026, 4, 1), 6, 30),
        "timezone": "Europe/Amsterdam (UTC+01:00)",
        "since": _epoch(FIRST_DAY),
        "until": _epoch(FIRST_DAY + timedelta(days=DAYS)),
        "host": "mail.example.org",
        "jails": ["sshd", "postfix-sasl"],
        "overall": _merge([sshd, postfix]),
        "per_jail": {"sshd": sshd, "postfix-sasl": postfix},
        "top_accounts_by_service": {
            "ssh": sshd["top_accounts"],
            "postfix": postfix["top_accounts"],
            "dovecot": [["info", 310], ["admin", 220], ["test", 95], ["webmaster", 40]],
        },
    }


def _empty_section() -> dict[str, Any]:
    return {
        "attempts_total": 0, "addresses_total": 0, "bans_total": 0,
        "attempts_per_month": [], "attempts_per_day": [], "attempts_per_hour_of_day": [0] * 24,
        "privileged_attempts": [], "privileged_total": 0, "bans_per_month": [],
        "ban_table_size": [], "top_countries": [], "until_country": None,
        "rdns_share_per_month": [], "top_accounts": [],
        "dnsbl": {"banned": 0, "checked": 0, "listed": 0, "by_zone": []},
        "new_vs_returning_per_month": [], "longest_running": [], "most_persistent": [],
    }


def empty_report() -> dict[str, Any]:
    """A host that saw nothing: every renderer must still produce a complete document."""
    return {
        "generated_at": _epoch(date(2026, 4, 1), 6, 30),
        "timezone": "Europe/Amsterdam (UTC+01:00)",
        "since": _epoch(FIRST_DAY),
        "until": _epoch(FIRST_DAY + timedelta(days=DAYS)),
        "host": "quiet.example.org",
        "jails": ["sshd"],
        "overall": _empty_section(),
        "per_jail": {"sshd": _empty_section()},
        "top_accounts_by_service": {},
    }
