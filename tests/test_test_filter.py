"""``tailban test-filter --json``: failures with their physical lines, bans with theirs.

Checked against fail2ban 1.0.2's labels of the real logs in ../shared/corpus/real: every
(line, ip) fail2ban counts is reported on the same line, and with --bans the first ban of
every address is on the same line as in the sliding-window oracle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "real"
RUNS = [("loghub_OpenSSH_2k.log", "sshd.normal", "sshd", "ssh-3-in-1800"),
        ("teliten-log.plemma_auth.log", "sshd.normal", "sshd", "ssh-3-in-1800"),
        ("binayakpg-authlogs_secure.head5000.log", "sshd.normal", "sshd", "fail2ban-default"),
        ("NoLE-MailLog_mail.log", "postfix.auth", "postfix[mode=auth]",
         "postfix-sasl-2-in-5400")]
# Bans only tailban decides (expanded rsyslog repeat lines, corpus README caveat 2).
EXTRA_FIRST_BANS = {"loghub_OpenSSH_2k.log": {"106.5.5.195", "5.36.59.76"}}


def test_filter_json(log: Path, filt: str, *extra: str) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "tailban", "test-filter", "--json", str(log),
                          filt, *extra], capture_output=True, text=True, check=True,
                         env=dict(os.environ, TZ="UTC"), timeout=120).stdout
    return [json.loads(line) for line in out.splitlines()]


test_filter_json.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.mark.parametrize(("log", "run", "filt", "setting"), RUNS)
def test_lines_and_bans_match_fail2ban(log: str, run: str, filt: str, setting: str) -> None:
    require(REAL.is_dir(), f"the shared corpus {REAL} is absent")
    data = json.loads((REAL / f"{log}.{run}.bans.json").read_text())
    entry = next(e for e in data["settings"] if e["name"] == setting)
    rows = test_filter_json(REAL / log, filt, "--bans", "--maxretry", str(entry["maxretry"]),
                            "--findtime", str(entry["findtime"]),
                            "--bantime", str(entry["bantime"]))
    failures = [r for r in rows if "rule" in r]
    bans = [r for r in rows if "ban" in r]
    summary = rows[-1]["summary"]
    ours = {(r["line"], r["ip"]) for r in failures}
    theirs = {(m["line"], m["ip"]) for m in map(json.loads, (REAL / f"{log}.{run}.matches.jsonl")
                                                .read_text().splitlines())}
    assert theirs <= ours, sorted(theirs - ours)[:5]
    lines = [r["line"] for r in failures]
    assert lines == sorted(lines) and all(isinstance(r["epoch"], float) for r in failures)
    assert all(str(r["time"]).endswith("Z") and r["count"] >= 1 for r in failures)
    first: dict[str, object] = {}
    for ban in bans:
        first.setdefault(str(ban["ban"]), ban["line"])
    oracle = {ip: info["line"] for ip, info in entry["sliding_window"]["first_ban_by_ip"].items()}
    extras = EXTRA_FIRST_BANS.get(log, set())
    assert {ip: line for ip, line in first.items() if ip not in extras} == oracle
    assert set(first) - set(oracle) == extras
    assert summary["lines"] == len((REAL / log).read_bytes().splitlines())


def test_since_until_and_errors(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("".join(
        f"2026-11-23T10:0{i}:00+00:00 h sshd[{i}]: Invalid user u{i} from 192.0.2.{i} port 1\n"
        for i in range(5)))
    rows = test_filter_json(log, "sshd", "--since", "2026-11-23T10:01:00Z",
                            "--until", "2026-11-23T10:03:00Z")
    assert [(r["line"], r["ip"], r["user"]) for r in rows if "rule" in r] == [
        (2, "192.0.2.1", "u1"), (3, "192.0.2.2", "u2"), (4, "192.0.2.3", "u3")]
    bad = subprocess.run([sys.executable, "-m", "tailban", "test-filter", str(log), "nosuch"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "nosuch" in bad.stderr
