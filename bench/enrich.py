#!/usr/bin/env python3
"""Time enrichment per address against the tests' own servers on 127.0.0.1 (no root).

    python3 bench/enrich.py --addresses 200

A dnslib DNS server (PTR, forward A, two DNSBL zones, every third address listed), a whois
server answering every address with a RIPE-style record, and real GeoIP2 country and ASN
databases. Runs tailban's Enricher as the daemon's worker does, with the whois per-network
cache off (one query per address: the cold case) and on (addresses in 10 networks).
"""

from __future__ import annotations

import argparse
import socketserver
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from dns_server import DnsTestServer  # noqa: E402
from mmdb_fixtures import write_asn_db, write_country_db  # noqa: E402
from tailban.config.model import EnrichSettings  # noqa: E402
from tailban.enrich.service import Enricher, Wants  # noqa: E402

ANSWER = ("inetnum: {net}.0.0 - {net}.255.255\nnetname: NET-{net}\ndescr: Example\n"
          "country: NL\nabuse-mailbox: abuse@example.net\n")


class Whois(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        query = self.rfile.readline(256).decode().strip()
        net = ".".join(query.split(".")[:2])
        self.wfile.write(ANSWER.format(net=net).encode())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--addresses", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tailban-enrich-"))
    country, asn = tmp / "c.mmdb", tmp / "a.mmdb"
    write_country_db(country, {"45.0.0.0/8": ("US", "United States")})
    write_asn_db(asn, {"45.0.0.0/8": (64500, "EXAMPLE")})
    ips = [f"45.{10 + i % 10}.{i // 250}.{i % 250 + 1}" for i in range(args.addresses)]
    dns = DnsTestServer()
    for n, ip in enumerate(ips):
        rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        dns.add(rev, "PTR", f"host{n}.example.net")
        dns.add(f"host{n}.example.net", "A", ip)
        if n % 3 == 0:
            dns.add(".".join(reversed(ip.split("."))) + ".zen.example.org", "A", "127.0.0.2")
    dns.start()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Whois)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for label, ttl in (("whois cache off (cold)", 0.001), ("whois cache on", 86400.0)):
            settings = EnrichSettings(
                enabled=True, ttl=ttl, whois_server="127.0.0.1", whois_port=port,
                whois_rate=1e9, country_db=str(country), asn_db=str(asn),
                nameservers=("127.0.0.1",), dns_port=dns.port,
                dnsbl_zones=("zen.example.org", "bl.example.org"))
            enricher = Enricher(settings, Wants(geoip=True, rdns=True, dnsbl=True, whois=True))
            times = []
            for ip in ips:
                start = time.perf_counter()
                facts = enricher.gather(ip, time.time())
                times.append(time.perf_counter() - start)
                assert facts.country_iso == "US" and facts.rdns_confirmed, facts
            enricher.close()
            times.sort()
            print(f"{label}: {len(ips)} addresses, median "
                  f"{statistics.median(times) * 1000:.1f} ms, p95 "
                  f"{times[int(0.95 * len(times))] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms")
    finally:
        dns.stop()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
