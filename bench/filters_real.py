#!/usr/bin/env python3
"""Real logs of ``../shared/corpus/real``: failures fail2ban found, failures tailban finds,
and tailban's extras grouped by rule (issue 4's closing figures); then, with
``--throughput``, ``tailban test-filter`` next to ``fail2ban-regex`` on the same generated
log in the same run (fail2ban-regex only when installed).

    python3 bench/filters_real.py [--throughput] [--lines 1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL = SHARED / "corpus" / "real"
sys.path.insert(0, str(REPO / "src"))

RUNS = {("sshd", "normal"): "sshd", ("sshd", "aggressive"): "sshd[mode=aggressive]",
        ("postfix", "auth"): "postfix[mode=auth]", ("dovecot", "normal"): "dovecot",
        ("dovecot", "aggressive"): "dovecot[mode=aggressive]",
        ("pam-generic", "default"): "pam-generic"}


def tailban_failures(log: Path, ref: str) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "tailban", "-c", "/nonexistent", "test-filter",
                          "--json", str(log), ref], capture_output=True, text=True, check=True,
                         env={"TZ": "UTC", "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": str(REPO / "src")}).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{\"line\"")]


def real_logs() -> None:
    print("| log | filter | fail2ban failures | tailban failures (weight) | extras by rule |")
    print("|---|---|---:|---:|---|")
    for labels in sorted(REAL.glob("*.matches.jsonl")):
        key = labels.name.removesuffix(".matches.jsonl")
        log_name, flt, mode = key.rsplit(".", 2)
        ref = RUNS.get((flt, mode))
        if ref is None:
            continue
        theirs = {(row["line"], row["ip"]) for row in
                  (json.loads(x) for x in labels.read_text().splitlines() if x.strip())}
        ours = tailban_failures(REAL / log_name, ref)
        extras = Counter(str(f["rule"]) for f in ours if (f["line"], f["ip"]) not in theirs)
        weight = sum(int(str(f["count"])) for f in ours)
        shown = ", ".join(f"{rule} {n}" for rule, n in extras.most_common()) or "-"
        print(f"| {log_name} | {ref} | {len(theirs):,} | {len(ours):,} ({weight:,}) | {shown} |")


def throughput(lines: int) -> None:
    log = Path(f"/var/tmp/tb/auth-{lines}.log")
    if not log.exists():
        log.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(SHARED / "bench" / "gen_authlog.py"), "--lines",
                        str(lines), "--seed", "1", "-o", str(log)], check=True)
    script = Path(sys.prefix) / "bin" / "tailban"
    tailban = [str(script)] if script.exists() else [sys.executable, "-m", "tailban"]
    runs = {"tailban test-filter (sshd)": [*tailban, "-c", "/nonexistent", "test-filter",
                                           str(log), "sshd"],
            "tailban test-filter --json (sshd)": [*tailban, "-c", "/nonexistent",
                                                  "test-filter", "--json", str(log), "sshd"]}
    if shutil.which("fail2ban-regex") and Path("/etc/fail2ban/filter.d/sshd.conf").exists():
        runs["fail2ban-regex (sshd)"] = ["fail2ban-regex", str(log),
                                         "/etc/fail2ban/filter.d/sshd.conf"]
    print(f"\n{lines:,} lines (gen_authlog --seed 1): best of 2, whole command")
    for label, argv in runs.items():
        best = min(_timed(argv) for _ in range(2))
        print(f"  {label}: {best:.1f} s = {lines / best / 1000:.0f}k lines/s")


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={"TZ": "UTC", "PATH": "/usr/local/bin:/usr/bin:/bin"})
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    real_logs()
    if args.throughput:
        throughput(args.lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
