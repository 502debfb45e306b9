"""The chunk scan's short cuts read every line as the line-by-line path does.

``ChunkMatcher.scan`` tries only the rules whose literals its chunk search saw (plus those
that may hide inside a seen literal), and skips a rule's two-way check when the message
holds the address' separator once. ``match_line`` does neither: it looks for every literal
in the message and always checks. Generated messages made of the filters' own literals,
separators, addresses and attacker text must give the same events both ways.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailban.filters.builtin import resolve_filter
from tailban.filters.matcher import ChunkMatcher, Event

NOW = 1_800_000_000.0
FILTERS = {"sshd": "sshd", "sshd[mode=aggressive]": "sshd", "dovecot": "dovecot",
           "postfix": "postfix"}


def _literals(ref: str) -> list[str]:
    name, _, mode = ref.partition("[mode=")
    spec = resolve_filter(name, mode.rstrip("]") or None)
    return sorted({lit for rule in spec.rules for lit in (rule.literal, *rule.also)})


def _fragments(ref: str) -> list[str]:
    return [*_literals(ref), " from ", "rhost=", "rip=", " port 22 ssh2", " [preauth]",
            "192.0.2.7", "198.51.100.9", "2001:db8::5", "root", "invalid user ", "user=",
            ", ", "; ", " ", "ssh2", "logname= uid=0 euid=0 tty=ssh ruser=",
            "message repeated 2 times: [ ", " ]", "é", "\t", "LOGIN REFUSED"]


def _by_line(matcher: ChunkMatcher, lines: list[str]) -> list[Event]:
    events: list[Event] = []
    for line in lines:
        events.extend(matcher.match_line(line, NOW))
    return events


def _line(tag: str, pid: int, msg: str) -> str:
    return f"Jan  7 10:00:{pid % 60:02d} host {tag}[{pid}]: {msg}"


@pytest.mark.parametrize("ref", list(FILTERS))
def test_generated_messages_read_the_same_both_ways(ref: str) -> None:
    frags = _fragments(ref)
    tag = FILTERS[ref]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(1, 4), st.lists(st.sampled_from(frags),
                                                         min_size=1, max_size=8)),
                    min_size=1, max_size=12))
    def check(messages: list[tuple[int, list[str]]]) -> None:
        lines = [_line(tag, pid, "".join(parts)) for pid, parts in messages]
        name, _, mode = ref.partition("[mode=")
        spec = resolve_filter(name, mode.rstrip("]") or None)
        chunk = ("\n".join(lines) + "\n").encode()
        scanned = ChunkMatcher(spec).scan(chunk, NOW)
        assert scanned == _by_line(ChunkMatcher(spec), lines)

    check()


def test_a_literal_hidden_inside_another_is_still_tried() -> None:
    # "authentication failure;" can start inside "more authentication failure" (the search
    # resumes after the latter and cannot see it): its rules are kept, to be checked
    matcher = ChunkMatcher(resolve_filter("sshd"))
    _, steps = matcher._plan(b"more authentication failure")
    checked = {compiled.name: checks for compiled, checks in steps}
    assert checked["sshd:pam-more"] == ()
    assert checked["sshd:pam-unix"] == ("authentication failure;",)
    # a literal that cannot overlap the seen one is not tried at all
    assert "sshd:failed-password" not in checked
    # longer literals starting with a seen one are found by the search itself
    _, steps = matcher._plan(b"Failed ")
    assert {compiled.name for compiled, _ in steps} == {"sshd:failed-password"}


def test_two_separators_still_get_the_two_way_check() -> None:
    # ssh1's ruser after the address makes " from ADDR" readable in two places: the
    # line yields nothing rather than an address the client may have written
    spec = resolve_filter("sshd")
    line = _line("sshd", 9, "Failed password for x from 198.51.100.9 port 1 ssh1: ruser from "
                 "192.0.2.7 port 22 ssh2")
    assert ChunkMatcher(spec).scan((line + "\n").encode(), NOW) == []
    # with one separator the same message shape is counted for its one address
    single = _line("sshd", 9, "Failed password for x from 192.0.2.7 port 22 ssh2")
    [failure] = ChunkMatcher(spec).scan((single + "\n").encode(), NOW)
    assert failure.ip == "192.0.2.7"


def test_literals_in_any_order_or_number_share_one_plan() -> None:
    # attacker text can repeat literals at will: the cache keeps one plan per set of them
    matcher = ChunkMatcher(resolve_filter("sshd"))
    users = ["Failed x nvalid user y", "nvalid user y Failed x Failed z",
             "Failed nvalid user Failed nvalid user Failed "]
    chunk = "".join(_line("sshd", 5 + i, f"Connection closed by authenticating user {u} "
                          "192.0.2.7 port 22 [preauth]") + "\n"
                    for i, u in enumerate(users)).encode()
    matcher.scan(chunk, NOW)
    several = [key for key in matcher._plans if not isinstance(key, bytes)]
    assert several == [frozenset({b"Connection closed by ", b"Failed ", b"nvalid user "})]
