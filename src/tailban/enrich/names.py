"""usedns: which addresses a host name written in a log line may stand for.

A name in a log line (``rhost=NAME``, ``from NAME``) came from the reverse DNS of the
client's address, a zone the client's network controls. Resolving it forward and banning
every address found, as fail2ban does, lets an attacker who owns ``evil.example`` add a
victim's address to that name's A records and have the victim banned. Here an address
counts only when its own reverse name is the logged name (forward-confirmed reverse DNS):
nobody can set the PTR record of an address they do not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tailban.enrich.dns import ReverseResult

MAX_ADDRESSES = 8  # addresses of one name that are checked (and may be banned)
CACHE_SIZE = 10_000


class DnsLookups(Protocol):
    def forward(self, name: str) -> tuple[str, ...]: ...

    def reverse(self, ip: str) -> ReverseResult: ...


@dataclass(frozen=True, slots=True)
class NameAnswer:
    addresses: tuple[str, ...]  # confirmed: their PTR names the logged name
    refused: tuple[str, ...] = ()  # the name's addresses whose PTR does not name it
    error: str | None = None


def confirm(name: str, dns: DnsLookups) -> NameAnswer:
    """The addresses ``name`` may stand for; () for an invalid or unknown name."""
    from tailban.enrich.dns import normalize_hostname

    host = normalize_hostname(name)
    if host is None:
        return NameAnswer((), error="not a host name")
    found = dns.forward(host)
    if not found:
        return NameAnswer((), error="no address")
    confirmed: list[str] = []
    refused: list[str] = []
    for ip in found[:MAX_ADDRESSES]:
        back = dns.reverse(ip)
        (confirmed if host in back.names else refused).append(ip)
    return NameAnswer(tuple(confirmed), tuple(refused))


class NameCache:
    """Answers kept for ``ttl`` seconds (``negative_ttl`` for names without an address)."""

    def __init__(self, dns: DnsLookups, clock: Callable[[], float], *, ttl: float = 300.0,
                 negative_ttl: float = 60.0) -> None:
        self._dns = dns
        self._clock = clock
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._answers: dict[str, tuple[float, NameAnswer]] = {}
        self.lookups = 0

    def answer(self, name: str) -> NameAnswer:
        key = name.lower().rstrip(".")
        now = self._clock()
        kept = self._answers.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        self.lookups += 1
        answer = confirm(key, self._dns)
        ttl = self._ttl if answer.addresses else self._negative_ttl
        answers = self._answers
        answers.pop(key, None)
        answers[key] = (now + ttl, answer)
        if len(answers) > CACHE_SIZE:
            del answers[next(iter(answers))]
        return answer
