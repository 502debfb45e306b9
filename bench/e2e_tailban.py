#!/usr/bin/env python3
"""Run the shared end-to-end harness (../shared/bench/e2e.py) against tailban.

It writes a private configuration under DATA (default /var/tmp/tbbench/tailban), then lets
the harness start ``tailban run`` inside a network namespace it creates and deletes, and
measures ban latency, a burst of N addresses, restart and unban. Needs root.

    python3 bench/e2e_tailban.py --latency-ips 50 --burst-ips 10000
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"


def enrich_config(data: Path) -> str:
    """[enrich] on, with databases written here and servers that never answer."""
    sys.path.insert(0, str(REPO / "tests"))
    from mmdb_fixtures import write_asn_db, write_country_db

    country, asn = data / "country.mmdb", data / "asn.mmdb"
    write_country_db(country, {"0.0.0.0/1": ("NL", "Netherlands"),
                               "128.0.0.0/1": ("JP", "Japan")})
    write_asn_db(asn, {"0.0.0.0/0": (64500, "EXAMPLE")})
    return (f"\n[enrich]\nenabled = yes\n[geoip]\ncountry_db = {country}\nasn_db = {asn}\n"
            "[whois]\nserver = 127.0.0.1\ntimeout = 2\n"
            "[dns]\nnameservers = 127.0.0.1\ntimeout = 1\n"
            "[dnsbl]\nzones = zen.spamhaus.org bl.spamcop.net\n"
            "[mail]\ndestination = root@localhost\nsmtp_host = 127.0.0.1\ndigest = 1m\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("DATA", "/var/tmp/tbbench/tailban"))
    ap.add_argument("--latency-ips", type=int, default=50)
    ap.add_argument("--burst-ips", type=int, default=10000)
    ap.add_argument("--scenarios", default="latency,burst,restart,unban")
    ap.add_argument("--json", default=None, help="results file (default DATA/e2e.json)")
    ap.add_argument("--conf", default="", help="extra tailban.conf text, e.g. "
                    "'[anomaly]\\nenabled = no' (\\n for new lines)")
    ap.add_argument("--enrich", action="store_true",
                    help="run with enrichment and ban mails on: real GeoIP2 databases, DNS, "
                    "DNSBL, whois and SMTP pointed at the namespace's loopback where nothing "
                    "answers (the worst case for the ban path: every lookup waits for its "
                    "timeout)")
    args = ap.parse_args()
    harness = SHARED_BENCH / "e2e.py"
    if not harness.exists():
        print(f"the shared harness {harness} is missing", file=sys.stderr)
        return 2
    data = Path(args.data)
    if data.exists():
        shutil.rmtree(data)
    conf = data / "conf"
    conf.mkdir(parents=True)
    (conf / "tailban.conf").write_text(
        f"[Definition]\nsocket = {data}/tailban.sock\npidfile = {data}/tailban.pid\n"
        f"dbfile = {data}/tailban.sqlite3\nloglevel = WARNING\n")
    log = data / "auth.log"
    log.write_text("")
    (conf / "jail.conf").write_text(
        f"[sshd]\nenabled = true\nport = 22\nlogpath = {log}\nmaxretry = 3\n"
        "findtime = 10m\nbantime = 1h\n" + ("action = %(action_mwl)s\n" if args.enrich else ""))
    if args.enrich:
        with (conf / "tailban.conf").open("a") as f:
            f.write(enrich_config(data))
    if args.conf:
        with (conf / "tailban.conf").open("a") as f:
            f.write("\n" + args.conf.replace("\\n", "\n") + "\n")
    # the installed command, as administrators run it (python -m adds runpy's imports)
    script = Path(sys.prefix) / "bin" / "tailban"
    tailban = ([str(script)] if script.exists() else [sys.executable, "-m", "tailban"]) + [
        "-c", str(conf)]
    cli = " ".join(shlex.quote(part) for part in tailban)
    out = args.json or str(data / "e2e.json")
    # Bytecode as an installed package has it (pip compiles at install; an editable install
    # under PYTHONDONTWRITEBYTECODE would compile every module at each start: +3-4 MiB RSS).
    import tailban

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(tailban.__file__).parent)],
                   check=False)
    argv = [sys.executable, str(harness), "--netns", "--name", "tailban",
            "--start", f"{cli} run", "--stop", f"{cli} stop", "--log", str(log),
            "--probe", "nft list ruleset", "--monitor", "nft -a monitor",
            "--unban", f"{cli} unban {{ip}}", "--ready", f"{cli} ping",
            "--scenarios", args.scenarios, "--latency-ips", str(args.latency_ips),
            "--burst-ips", str(args.burst_ips), "--json", out]
    return subprocess.call(argv)


if __name__ == "__main__":
    raise SystemExit(main())
