"""`tailban report` counts against a generated log whose truth is known.

The log comes from ../shared/bench/gen_authlog.py with --kinds-out (each line's kind) and
--truth; it is replayed through the daemon's pipeline into a fresh store (`tailban replay
--store`) and `tailban report --format json` must give exactly the counts computed here
from the kinds file and the log text, independently of tailban's filters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import SHARED, require

COUNTED = {"failed_password", "failed_password_invalid", "invalid_user", "max_auth_exceeded"}
USER = re.compile(r"(?:Failed password for (?:invalid user )?|Invalid user |exceeded for "
                  r"(?:invalid user )?)(.*?) from (\S+) port")
PRIVILEGED = ("root", "admin", "administrator", "toor", "sysadmin", "superuser", "sa",
              "postgres", "mysql", "oracle")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    gen = SHARED / "bench" / "gen_authlog.py"
    require(gen.exists(), f"the shared generator {gen} is absent")
    tmp = tmp_path_factory.mktemp("report")
    log, kinds, truth = tmp / "auth.log", tmp / "kinds.txt", tmp / "truth.json"
    subprocess.run([sys.executable, str(gen), "--lines", "30000", "--seed", "7", "--rate",
                    "0.004", "--start-date", "2026-06-01T00:00:00", "--crafted-share", "0",
                    "-o", str(log), "--kinds-out", str(kinds), "--truth", str(truth)],
                   check=True, timeout=120)
    conf = tmp / "conf"
    conf.mkdir()
    (conf / "jail.conf").write_text("[sshd]\nenabled = true\nlogpath = /dev/null\n")
    db = tmp / "store.sqlite3"
    env = {**os.environ, "TZ": "UTC"}
    tailban = [sys.executable, "-m", "tailban", "-c", str(conf)]
    subprocess.run([*tailban, "replay", "--filter", "sshd", "--maxretry", "3", "--findtime",
                    "30m", "--bantime", "400d", "--store", str(db), str(log)],
                   check=True, env=env, timeout=300, capture_output=True)
    out = subprocess.run([*tailban, "report", "--db", str(db), "--since", "2026-01-01",
                          "--until", "2026-11-01", "--format", "json"],
                         check=True, env=env, timeout=120, capture_output=True, text=True)
    return {"report": json.loads(out.stdout), "log": log, "kinds": kinds,
            "truth": json.loads(truth.read_text()), "db": db, "tailban": tailban, "env": env}


def counted_lines(data: dict[str, Any]) -> list[tuple[datetime, str, str]]:
    """(time, user, ip) of every line the generator counts as a failure."""
    out = []
    kinds = data["kinds"].read_text().splitlines()
    for line, kind in zip(data["log"].read_text().splitlines(), kinds, strict=True):
        if kind not in COUNTED:
            continue
        when = datetime.strptime(f"2026 {line[:15]}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)
        match = USER.search(line)
        assert match, line
        out.append((when, match.group(1), match.group(2)))
    return out


def test_totals_match_the_truth(generated: dict[str, Any]) -> None:
    overall = generated["report"]["overall"]
    truth = generated["truth"]
    assert overall["attempts_total"] == truth["lines_counted_as_failures"]
    attackers = {ip for ip, v in truth["ips"].items() if v["counted"]}
    assert overall["addresses_total"] == len(attackers)
    assert generated["report"]["jails"] == ["sshd"]


def test_time_series_match_the_log(generated: dict[str, Any]) -> None:
    lines = counted_lines(generated)
    overall = generated["report"]["overall"]
    assert dict(map(tuple, overall["attempts_per_month"])) == \
        dict(Counter(t.strftime("%Y-%m") for t, _, _ in lines))
    assert dict(map(tuple, overall["attempts_per_day"])) == \
        dict(Counter(t.strftime("%Y-%m-%d") for t, _, _ in lines))
    per_hour = Counter(t.hour for t, _, _ in lines)
    assert overall["attempts_per_hour_of_day"] == [per_hour[h] for h in range(24)]
    assert len(overall["attempts_per_month"]) >= 2  # the log spans more than one month


def test_accounts_match_the_log(generated: dict[str, Any]) -> None:
    lines = counted_lines(generated)
    users = Counter(u for _, u, _ in lines)
    overall = generated["report"]["overall"]
    assert dict(map(tuple, overall["privileged_attempts"])) == \
        {u: users[u] for u in PRIVILEGED if users[u]}
    assert overall["privileged_total"] == sum(users[u] for u in PRIVILEGED)
    top = overall["top_accounts"]
    assert [n for _, n in top] == [n for _, n in users.most_common(len(top))]
    assert all(users[u] == n for u, n in top)
    assert generated["report"]["top_accounts_by_service"]["ssh"] == top


def test_addresses_bans_and_persistence_match(generated: dict[str, Any]) -> None:
    lines = counted_lines(generated)
    per_ip = Counter(ip for _, _, ip in lines)
    overall = generated["report"]["overall"]
    truth = generated["truth"]
    # maxretry 3 in 30 min and a ban longer than the log: one ban per address over it
    assert overall["bans_total"] == truth["ips_over_maxretry"]
    assert sum(n for _, n in overall["bans_per_month"]) == truth["ips_over_maxretry"]
    persistent = overall["most_persistent"][0]
    days = {}
    for t, _, ip in lines:
        days.setdefault(ip, set()).add(t.date())
    assert persistent["active_days"] == max(len(d) for d in days.values())
    assert persistent["attempts"] == per_ip[persistent["ip"]]
    longest = overall["longest_running"][0]
    spans = {ip: (min(t for t, _, i in lines if i == ip), max(t for t, _, i in lines if i == ip))
             for ip in per_ip}
    best = max(spans.values(), key=lambda s: s[1] - s[0])
    assert round(longest["days"], 2) == round((best[1] - best[0]).total_seconds() / 86400, 2)
    firsts = Counter(min(t for t, _, i in lines if i == ip).strftime("%Y-%m") for ip in per_ip)
    assert {m: new for m, new, _ in overall["new_vs_returning_per_month"]} == dict(firsts)
    # unknown countries (no enrichment in this store) are one bucket holding everything
    assert overall["top_countries"][0][:3] == ["??", "unknown", len(lines)]


def test_text_and_csv_carry_the_same_totals(generated: dict[str, Any]) -> None:
    base = [*generated["tailban"], "report", "--db", str(generated["db"]), "--since",
            "2026-01-01", "--until", "2026-11-01"]
    total = generated["report"]["overall"]["attempts_total"]
    text = subprocess.run([*base, "--format", "text"], check=True, env=generated["env"],
                          capture_output=True, text=True).stdout
    assert f"{total:,}" in text or str(total) in text
    csv_text = subprocess.run([*base, "--format", "csv"], check=True, env=generated["env"],
                              capture_output=True, text=True).stdout
    assert f"overall,,attempts_total,{total}" in csv_text.replace("\r\n", "\n") or \
        str(total) in csv_text
