"""``tailban test-filter``: what a filter finds in a log, line by line (fail2ban-regex's job).

The JSON output is an interface (docs/filters.md): one object per failure in file order,
``{"line", "time", "epoch", "ip", "user", "count", "rule"}``, and with ``--bans`` the ban
events of an offline replay ``{"ban", "line", "time", "epoch"}``; a summary object last.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from tailban.bans.ledger import BanLedger
from tailban.core.addresses import IgnoreList
from tailban.core.events import Failure
from tailban.filters.factory import AnyFilter, make_matcher
from tailban.jails.policy import JailPolicy, JailRules
from tailban.tools.replay import chunks_of


@dataclass(frozen=True, slots=True)
class BanRule:
    maxretry: int
    findtime: float
    bantime: float


@dataclass(slots=True)
class FilterReport:
    lines: int = 0
    failures: list[tuple[int, Failure]] = field(default_factory=list)
    bans: list[tuple[int, Failure]] = field(default_factory=list)
    hostnames: int = 0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_filter(path: str, spec: AnyFilter, now: float, *, since: float | None = None,
               until: float | None = None, bans: BanRule | None = None) -> FilterReport:
    """Every failure with its physical line; optionally the bans a jail would decide."""
    matcher = make_matcher(spec, track_lines=True)
    numbers = matcher.event_lines
    assert numbers is not None
    policy = None
    if bans is not None:
        rules = JailRules(spec.name, bans.maxretry, bans.findtime, bans.bantime,
                          IgnoreList.parse("127.0.0.0/8 ::1"))
        policy = JailPolicy(rules, BanLedger())
    report = FilterReport()
    for chunk in chunks_of(path):
        report.lines += chunk.count(b"\n")
        first = len(numbers)
        events = matcher.scan(chunk, now)
        for offset, event in enumerate(events):
            if not isinstance(event, Failure):
                continue
            if (since is not None and event.time < since) or \
                    (until is not None and event.time > until):
                continue
            line = numbers[first + offset]
            if event.ip is None:
                report.hostnames += 1
            report.failures.append((line, event))
            if policy is not None and policy.observe([event], now=None):
                report.bans.append((line, event))
    return report


def write_json(report: FilterReport, out: IO[str], with_bans: bool) -> None:
    ban_at = {id(failure): line for line, failure in report.bans}
    for line, failure in report.failures:
        out.write(json.dumps({"line": line, "time": iso(failure.time), "epoch": failure.time,
                              "ip": failure.ip or failure.host, "user": failure.user,
                              "count": failure.count, "rule": failure.rule}) + "\n")
        if with_bans and id(failure) in ban_at:
            out.write(json.dumps({"ban": failure.ip, "line": line, "time": iso(failure.time),
                                  "epoch": failure.time}) + "\n")
    out.write(json.dumps({"summary": summary(report)}) + "\n")


def summary(report: FilterReport) -> dict[str, object]:
    rules = Counter(f.rule for _, f in report.failures)
    return {"lines": report.lines, "failures": sum(f.count for _, f in report.failures),
            "failure_lines": len(report.failures),
            "addresses": len({f.ip for _, f in report.failures if f.ip}),
            "unresolved_hostnames": report.hostnames, "per_rule": dict(rules.most_common()),
            "bans": len(report.bans)}


def write_text(report: FilterReport, out: IO[str], with_bans: bool) -> None:
    info = summary(report)
    out.write(f"Lines: {info['lines']:,}\nFailures: {info['failures']:,} "
              f"on {info['failure_lines']:,} lines from {info['addresses']:,} addresses\n")
    for rule, count in (info["per_rule"] or {}).items():  # type: ignore[attr-defined]
        out.write(f"  {count:>8,}  {rule}\n")
    if info["unresolved_hostnames"]:
        out.write(f"Host names (not counted, usedns): {info['unresolved_hostnames']:,}\n")
    if with_bans:
        out.write(f"Would ban: {len(report.bans):,} times\n")
        for line, failure in report.bans:
            out.write(f"  line {line:>8}  {iso(failure.time)}  {failure.ip}\n")
