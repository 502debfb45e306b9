"""Real DNS, whois and SMTP servers inside a network namespace, for daemon tests.

A daemon under test runs in its own namespace and sees only that namespace's 127.0.0.1, so
the servers must run there too: ``ip netns exec NS python tests/ns_services.py SPEC OUT``.
SPEC (JSON) holds DNS records, names that never answer, and whois answers by query. The
script prints one JSON line with the ports, then serves until SIGTERM. Every mail received
is written to OUT/mail-N.eml and every whois query appended to OUT/whois.log, so the test
reads what arrived from files.
"""

from __future__ import annotations

import json
import signal
import socketserver
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dns_server import DnsTestServer  # noqa: E402
from smtp_server import SMTPTestServer  # noqa: E402


class WhoisHandler(socketserver.StreamRequestHandler):
    server: WhoisServer

    def handle(self) -> None:
        query = self.rfile.readline(512).decode("utf-8", "replace").strip()
        with self.server.lock, (self.server.out / "whois.log").open("a") as f:
            f.write(query + "\n")
        answer = self.server.answers.get(query)
        if answer is None:
            answer = self.server.answers.get("*")
        if answer == "DEAD":
            self.server.stopped.wait(60)
            return
        if answer is not None:
            self.wfile.write(answer.encode("utf-8"))


class WhoisServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answers: dict[str, str], out: Path) -> None:
        super().__init__(("127.0.0.1", 0), WhoisHandler)
        self.answers = answers
        self.out = out
        self.lock = threading.Lock()
        self.stopped = threading.Event()


def main() -> int:
    spec: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    dns = DnsTestServer(dead=spec.get("dns_dead", ()))
    for name, rtype, value in spec.get("dns", ()):
        dns.add(name, rtype, value)
    dns.start()
    whois = WhoisServer(spec.get("whois", {}), out)
    threading.Thread(target=whois.serve_forever, daemon=True).start()
    smtp = SMTPTestServer()
    smtp.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(json.dumps({"dns": dns.port, "whois": whois.server_address[1], "smtp": smtp.port}),
          flush=True)
    written = 0
    while not done.wait(0.05):
        mails = list(smtp.messages)
        for mail in mails[written:]:
            written += 1
            (out / f"mail-{written}.eml.part").write_bytes(mail.data)
            (out / f"mail-{written}.eml.part").rename(out / f"mail-{written}.eml")
    whois.stopped.set()
    whois.shutdown()
    dns.stop()
    smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
