"""A small authoritative DNS server for tests, on 127.0.0.1, UDP and TCP on the same port.

    with DnsTestServer() as server:
        server.add("host.example", "A", "192.0.2.1")
        server.add("1.2.0.192.in-addr.arpa", "PTR", "host.example")
        server.dead.add("slow.example")          # this name and every name under it
        ... query 127.0.0.1:server.port ...
        assert server.count("host.example", "A") == 1

Names are matched lower case without the trailing dot. A name with records of another type
gets NOERROR with no answer; an unknown name gets NXDOMAIN. CNAMEs are followed inside the
server. ``dead`` names never get a reply; ``delays`` hold a reply back; ``rcodes`` answer with
a fixed error. All four tables may be changed while the server runs.

A handler that holds a reply back waits on an event that ``stop()`` sets, so stopping takes
milliseconds even with queries still hanging.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from dnslib import (
    AAAA,
    CNAME,
    MX,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RR,
    TXT,
    A,
    DNSError,
    DNSHeader,
    DNSRecord,
)
from dnslib.server import DNSHandler, DNSServer

Value = Any  # a text value (see _rdata) or a ready dnslib RD object


def _norm(name: object) -> str:
    return str(name).rstrip(".").lower()


def _rdata(rtype: str, value: Value) -> Any:
    """Text to dnslib rdata. TXT text longer than 255 bytes is split into several strings."""
    if not isinstance(value, str):
        return value
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "PTR":
        return PTR(value)
    if rtype == "CNAME":
        return CNAME(value)
    if rtype == "NS":
        return NS(value)
    if rtype == "MX":
        preference, _, host = value.partition(" ")
        return MX(host, int(preference))
    if rtype == "TXT":
        data = value.encode()
        return TXT([data[i : i + 255] for i in range(0, len(data), 255)] or [b""])
    raise ValueError(f"no text form for {rtype} records; pass a dnslib RD object")


class _QuietLogger:
    """dnslib's default logger prints every query to stdout."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


class _Handler(DNSHandler):  # type: ignore[misc]  # dnslib has no type hints
    """Truncates like a real server: TC set, question kept.

    dnslib's own truncation drops the question, which dnspython rightly refuses as a possible
    forgery.
    """

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        wire = bytes(reply.pack())
        if self.protocol == "udp" and len(wire) > self.server.resolver.owner.udp_limit:
            header = DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap)
            truncated = DNSRecord(header, q=reply.q)
            truncated.header.tc = 1
            wire = bytes(truncated.pack())
        return wire


class _Resolver:
    def __init__(self, owner: DnsTestServer) -> None:
        self.owner = owner

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        owner = self.owner
        qname = _norm(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        owner._record_query(qname, qtype, handler.protocol)
        if owner._matches(owner.dead, qname):
            owner._stopping.wait(owner.hang_seconds)
            raise DNSError("dead name: no reply")  # dnslib's handler logs it and sends nothing
        delay = next((d for s, d in owner.delays.items() if owner._matches((s,), qname)), None)
        if delay is not None and owner._stopping.wait(delay):
            raise DNSError("server stopping")
        reply = request.reply()
        reply.header.aa = 1
        rcode = owner.rcodes.get(qname)
        if rcode is not None:
            reply.header.rcode = getattr(RCODE, rcode)
            return reply
        name = qname
        for _ in range(8):  # follow CNAMEs held by this server, as an authoritative server does
            values = owner.records.get((name, qtype))
            if values is not None:
                for value in values:
                    reply.add_answer(
                        RR(name, getattr(QTYPE, qtype), rdata=_rdata(qtype, value), ttl=60)
                    )
                return reply
            targets = owner.records.get((name, "CNAME"))
            if not targets or qtype == "CNAME":
                break
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=_rdata("CNAME", targets[0]), ttl=60))
            name = _norm(targets[0])
        if not any(key[0] == name for key in owner.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class DnsTestServer:
    """Authoritative server for whatever ``records`` holds; see the module docstring."""

    def __init__(
        self,
        records: dict[tuple[str, str], list[Value]] | None = None,
        dead: Iterable[str] = (),
        *,
        address: str = "127.0.0.1",
        hang_seconds: float = 30.0,
        udp_limit: int = 1232,
    ) -> None:
        self.records: dict[tuple[str, str], list[Value]] = {}
        for (name, rtype), values in (records or {}).items():
            self.add(name, rtype, *values)
        self.dead: set[str] = {_norm(name) for name in dead}
        """Names (and everything under them) that are never answered."""
        self.delays: dict[str, float] = {}
        """Name (and everything under it) -> seconds to wait before answering."""
        self.rcodes: dict[str, str] = {}
        """Exact name -> rcode name such as ``SERVFAIL`` or ``REFUSED``."""
        self.address = address
        self.hang_seconds = hang_seconds
        self.udp_limit = udp_limit
        """Bigger UDP replies go out truncated (TC, no records) so the client must use TCP."""
        self.port = 0
        self.queries: Counter[tuple[str, str]] = Counter()
        """(name, type) -> number of queries received, UDP and TCP, answered or not."""
        self.log: list[tuple[str, str, str]] = []
        """(name, type, "udp" or "tcp") in arrival order."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._servers: list[DNSServer] = []
        self._threads: list[threading.Thread] = []

    def add(self, name: str, rtype: str, *values: Value) -> None:
        self.records.setdefault((_norm(name), rtype.upper()), []).extend(values)

    def count(self, name: str | None = None, rtype: str | None = None) -> int:
        """Queries received, for one name and/or type or in all."""
        with self._lock:
            return sum(
                n
                for (qname, qtype), n in self.queries.items()
                if (name is None or qname == _norm(name)) and (rtype is None or qtype == rtype)
            )

    def names_queried(self) -> list[str]:
        with self._lock:
            return [name for name, _, _ in self.log]

    def reset_counts(self) -> None:
        with self._lock:
            self.queries.clear()
            self.log.clear()

    def start(self) -> DnsTestServer:
        if self._servers:
            raise RuntimeError("already started")
        self._stopping.clear()
        resolver = _Resolver(self)
        for _ in range(20):
            udp = DNSServer(
                resolver, address=self.address, port=0, logger=_QuietLogger(), handler=_Handler
            )
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    resolver, address=self.address, port=port, tcp=True, logger=_QuietLogger(),
                    handler=_Handler,
                )
            except OSError as exc:
                udp.server.server_close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.port = port
        self._servers = [udp, tcp]
        for server in self._servers:
            # The default poll interval of 0.5 s would make every stop() wait that long.
            thread = threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"dns-test-{server.server.socket_type}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Safe to call twice and after a failed start."""
        self._stopping.set()  # releases handlers of dead and delayed names
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.server.shutdown()
            with contextlib.suppress(Exception):
                server.server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._servers = []
        self._threads = []

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record_query(self, name: str, rtype: str, protocol: str) -> None:
        with self._lock:
            self.queries[(name, rtype)] += 1
            self.log.append((name, rtype, protocol))

    @staticmethod
    def _matches(suffixes: Iterable[str], name: str) -> bool:
        wanted = [_norm(s) for s in suffixes]
        return any(name == s or name.endswith("." + s) for s in wanted)

    def nameserver(self) -> tuple[str, int]:
        return self.address, self.port


def free_udp_port() -> int:
    """A port nobody listens on, to test an unreachable nameserver."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
