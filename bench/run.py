#!/usr/bin/env python3
"""One run of every tailban figure, next to the peers when they are installed.

Generates the logs with ../shared/bench/gen_authlog.py, measures offline throughput with
../shared/bench/throughput.py (tailban replay vs fail2ban-regex and sshg-parser when present)
and the end-to-end figures with bench/e2e_tailban.py (a private network namespace) and
bench/storm_control.py (commands during the burst), bench/history_writes.py (storing
the burst's failures on a store with 30 days of them), then
writes bench/results/latest.json and latest.md with the ratios against the peers (measured
in this run when present, else BASELINE.md's figures, marked as such). Installs nothing:
`apt-get install -y fail2ban sshguard` adds the peers. Needs root for the e2e part.

    sudo python3 bench/run.py            # full: 1M + 200k lines, 50 + 10,000 addresses
    sudo python3 bench/run.py --smoke    # seconds: tiny sizes, what CI runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "bench"
RESULTS = REPO / "bench" / "results"
# BASELINE.md medians, used when a peer is not installed here (marked "baseline").
BASELINE = {
    "auth_lines_per_s": {"fail2ban": 39_500, "sshguard": 577_000},
    "mail_lines_per_s": {"fail2ban": 85_000, "sshguard": 727_000},
    "latency_p50_ms": {"fail2ban": 343.0, "sshguard": 3.0},
    "latency_p95_ms": {"fail2ban": 930.0, "sshguard": 5.0},
    "burst_all_banned_s": {"fail2ban": 53.0, "sshguard": 26.0},
    "unban_cli_ms": {"fail2ban": 47.0},
    # fail2ban-server with pyinotify; sshguard's 7 processes together
    "rss_idle_mib": {"fail2ban": 38.0, "sshguard": 10.0},
    "rss_burst_mib": {"fail2ban": 60.0, "sshguard": 14.0},
}
TARGETS = {"auth_lines_per_s": 1_000_000, "mail_lines_per_s": 1_000_000,
           "latency_p50_ms": 3.0, "latency_p95_ms": 6.0, "burst_all_banned_s": 1.0,
           "burst_cpu_ms_per_ban": 0.2, "unban_cli_ms": 30.0, "restart_open_s": 0.0,
           "restart_ready_s": 1.0, "rss_idle_mib": 30.0, "rss_burst_mib": 40.0}


def generate(data: Path, kind: str, lines: int) -> Path:
    out = data / f"{kind}-{lines}.log"
    if not out.exists():
        subprocess.run([sys.executable, str(SHARED / "gen_authlog.py"), "--kind", kind,
                        "--lines", str(lines), "--seed", "1", "--start-date",
                        "2026-11-19T10:00:00", "-o", str(out)], check=True)
    return out


def throughput(log: Path, filt: str, presets: list[str], runs: int,
               data: Path) -> dict[str, float]:
    out = data / f"throughput-{log.stem}.json"
    out.unlink(missing_ok=True)
    cmd = f"tailban={sys.executable} -m tailban replay --json --filter {filt} {{log}}"
    argv = [sys.executable, str(SHARED / "throughput.py"), "--log", str(log), "--runs",
            str(runs), "--warmup", "1" if runs > 1 else "0", "--cmd", cmd,
            "--count-regex", 'tailban="summary".*"failures": (\\d+)', "--json", str(out)]
    for preset in presets:
        argv += ["--preset", preset]
    subprocess.run(argv, check=True, env=dict(os.environ, TZ="UTC"))
    rows = json.loads(out.read_text())
    return {str(r["tool"]): float(r["lines_per_s"]["median"]) for r in rows}


def e2e(data: Path, latency: int, burst: int) -> dict[str, float]:
    out = data / "e2e-tailban.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "e2e_tailban.py"), "--data",
                    str(data / "e2e"), "--latency-ips", str(latency), "--burst-ips",
                    str(burst), "--json", str(out)], check=True)
    raw = json.loads(out.read_text())
    result = raw if isinstance(raw, dict) else raw[0]
    s = result["scenarios"]
    lat = s["latency"].get("latency_by_event_s") or s["latency"]["latency_s"]
    return {"latency_p50_ms": lat["p50"] * 1000, "latency_p95_ms": lat["p95"] * 1000,
            "burst_all_banned_s": s["burst"]["t100_s"],
            "burst_cpu_ms_per_ban": s["burst"]["cpu_ms_per_ban"],
            "restart_left_in_kernel": s["restart"]["left_in_firewall_after_stop"],
            "restart_expected": s["restart"]["expected"],
            "restart_ready_s": s["restart"]["ready_s"],
            "unban_cli_ms": s["unban"]["cli_wall_s"]["p50"] * 1000,
            "rss_idle_mib": s["latency"]["rss_mib"], "rss_burst_mib": s["burst"]["rss_mib_end"]}


def storm_control(data: Path, storm: int) -> dict[str, float]:
    """``status`` and ``unban`` round trips while a storm of ``storm`` addresses is banned."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "storm_control.py"), "--work",
                          str(data / "storm"), "--storm", str(storm)], check=True,
                         capture_output=True, text=True).stdout
    raw = json.loads(out)
    return {f"storm_{what}_{stat}_ms": float(raw[what][f"{stat}_ms"])
            for what in ("status", "unban") for stat in ("p50", "p95", "max")}


def history_writes(data: Path, rows: int, storm: int) -> dict[str, float]:
    """Seconds to store a storm's failures on a store already holding ``rows`` of them."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "history_writes.py"), "--work",
                          str(data / "history"), "--rows", str(rows), "--storm", str(storm),
                          "--json"], check=True, capture_output=True, text=True).stdout
    raw = json.loads(out)
    return {"history_rows": float(rows), "history_storm_failures": float(storm),
            "history_store_storm_s": float(raw["store_storm_s"]),
            "history_store_storm_with_address_index_s":
                float(raw["store_storm_with_address_index_s"]),
            "history_incident_s": float(raw["incident_s"]),
            "history_incident_with_address_index_s": float(raw["incident_with_address_index_s"])}


def peers_present() -> dict[str, bool]:
    return {"fail2ban": shutil.which("fail2ban-regex") is not None,
            "sshguard": Path("/usr/libexec/sshguard/sshg-parser").exists()}


def markdown(result: dict[str, object]) -> str:
    """The table, with how many times better (>1) or worse (<1) tailban is than each peer."""
    fig = result["figures"]
    peers_by_key = result["peers"]
    assert isinstance(fig, dict) and isinstance(peers_by_key, dict)
    lines = ["| figure | tailban | target | fail2ban | x fail2ban | sshguard | x sshguard |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key, target in TARGETS.items():
        if key not in fig:
            continue
        cells = []
        for peer in ("fail2ban", "sshguard"):
            value = peers_by_key.get(key, {}).get(peer)
            if value is None:
                cells += ["-", "-"]
                continue
            ours = float(fig[key])
            higher_better = key.endswith("per_s")
            ratio = (ours / value[0] if higher_better else value[0] / ours) if ours else 0.0
            cells += [f"{value[0]:,.1f} ({value[1]})", f"{ratio:,.1f}" if ours else "inf"]
        ours_text = f"{fig[key]:,.2f}" if abs(fig[key]) < 10 else f"{fig[key]:,.1f}"
        lines.append(f"| {key} | {ours_text} | {target:,} | {' | '.join(cells)} |")
    storm = {k: v for k, v in fig.items() if k.startswith("storm_")}
    if storm:
        lines += ["", "Control socket while the burst's addresses are banned "
                  "(bench/storm_control.py; no peer figure):", "",
                  "| command | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|"]
        for what in ("status", "unban"):
            lines.append(f"| {what} | " + " | ".join(
                f"{storm.get(f'storm_{what}_{stat}_ms', float('nan')):,.1f}"
                for stat in ("p50", "p95", "max")) + " |")
    if "history_store_storm_s" in fig:
        lines += ["", f"Storing the burst's {fig['history_storm_failures']:,.0f} failures on a "
                  f"store holding {fig['history_rows']:,.0f} raw failures "
                  "(bench/history_writes.py): "
                  f"{fig['history_store_storm_s']:.3f} s; with the address index schema "
                  f"step 9 dropped: {fig['history_store_storm_with_address_index_s']:.3f} s. "
                  "The incident evidence of an address seen all month on that store: "
                  f"{fig['history_incident_s']:.3f} s "
                  f"({fig['history_incident_with_address_index_s']:.3f} s with the index)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one run (CI)")
    ap.add_argument("--data", default=os.environ.get("DATA", "/var/tmp/tbbench/run"))
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    auth_lines, mail_lines, latency, burst, runs = (
        (20_000, 5_000, 5, 200, 1) if args.smoke else (1_000_000, 200_000, 50, 10_000, 3))
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    present = peers_present()
    started = time.time()
    auth = generate(data, "auth", auth_lines)
    mail = generate(data, "mail", mail_lines)
    auth_presets = ([] if args.smoke else
                    [p for p, peer in (("f2b-sshd", "fail2ban"), ("sshg-parser", "sshguard"))
                     if present[peer]])
    mail_presets = [] if args.smoke or not present["fail2ban"] else ["f2b-postfix-sasl"]
    auth_rates = throughput(auth, "sshd", auth_presets, runs, data)
    mail_rates = throughput(mail, "postfix[mode=auth]", mail_presets, runs, data)
    figures: dict[str, float] = {"auth_lines_per_s": auth_rates["tailban"],
                                 "mail_lines_per_s": mail_rates["tailban"]}
    if not args.skip_e2e:
        figures.update(e2e(data, latency, burst))
        figures["restart_open_s"] = 0.0 if (
            figures["restart_left_in_kernel"] == figures["restart_expected"]) else float("nan")
        figures.update(storm_control(data, burst))
    figures.update(history_writes(data, 20_000 if args.smoke else 3_000_000, burst * 3))
    peers: dict[str, dict[str, tuple[float, str]]] = {}
    for key, values in BASELINE.items():
        peers[key] = {peer: (value, "baseline") for peer, value in values.items()}
    for rates, key in ((auth_rates, "auth_lines_per_s"), (mail_rates, "mail_lines_per_s")):
        for tool, rate in rates.items():
            for peer in ("fail2ban", "sshguard"):
                if tool != "tailban" and (peer[:3] in tool or tool.startswith(peer[:4])):
                    peers[key][peer] = (rate, "this run")
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": args.smoke,
              "seconds": round(time.time() - started, 1), "sizes": {
                  "auth_lines": auth_lines, "mail_lines": mail_lines, "latency_ips": latency,
                  "burst_ips": burst, "runs": runs},
              "figures": figures, "peers": peers, "targets": TARGETS,
              "peers_installed": present}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "smoke" if args.smoke else "latest"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    table = markdown(result)
    (out / f"{name}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
