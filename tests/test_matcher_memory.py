"""What the matcher keeps during a storm of connections that never log their end."""

from __future__ import annotations

from tailban.core.events import Failure
from tailban.filters.builtin import resolve_filter
from tailban.filters.matcher import _MAX_CONNECTIONS, ChunkMatcher

NOW = 1_800_000_000.0


def _chunk(lines: list[str]) -> bytes:
    return "".join(f"Jan  7 10:00:00 host sshd[{pid}]: {msg}\n" for pid, msg in lines).encode()


def _ip(n: int) -> str:
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def test_open_connections_are_bounded_oldest_forgotten() -> None:
    matcher = ChunkMatcher(resolve_filter("sshd", None))
    storm = _MAX_CONNECTIONS + 1000
    events = matcher.scan(_chunk([(1000 + n, f"Failed password for root from {_ip(n)} "
                                              f"port 4000 ssh2") for n in range(storm)]), NOW)
    assert len(events) == storm
    # A line without an address takes the connection's: known for the newest connections,
    # forgotten (no failure, never another address) for the oldest.
    newest, oldest = 1000 + storm - 1, 1000
    later = matcher.scan(_chunk([(newest, "Disconnecting: Too many authentication failures"),
                                 (oldest, "Disconnecting: Too many authentication failures")]),
                         NOW)
    assert [(e.ip, e.rule) for e in later if isinstance(e, Failure)] == \
        [(_ip(storm - 1), "sshd:too-many")]


def test_repeated_names_and_addresses_share_one_string() -> None:
    matcher = ChunkMatcher(resolve_filter("sshd", None))
    lines = [(pid, f"Failed password for root from 192.0.2.{pid % 200} port 4000 ssh2")
             for pid in range(100, 110) for _ in range(3)]
    events = [e for e in matcher.scan(_chunk(lines), NOW) if isinstance(e, Failure)]
    assert len(events) == 30
    assert all(e.user is events[0].user for e in events)
    for first in range(0, 30, 3):
        assert events[first].ip is events[first + 1].ip is events[first + 2].ip
    # attacker-chosen names beyond the table are still reported, just not shared
    junk = [(200 + n, f"Failed password for u{n:04d} from 198.51.100.1 port 1 ssh2")
            for n in range(2000)]
    assert [e.user for e in matcher.scan(_chunk(junk), NOW)] == [f"u{n:04d}" for n in range(2000)]
