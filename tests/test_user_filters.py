"""Administrators' own filters in fail2ban's format (filter.d/NAME.conf|.local).

The sample filters are written here, in fail2ban's syntax; none depends on /etc/fail2ban.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import REPO, SHARED, require
from tailban.bans.ledger import BanLedger
from tailban.config.errors import ConfigError
from tailban.config.load import load_config
from tailban.core.events import Failure
from tailban.filters.builtin import resolve_filter
from tailban.filters.factory import make_matcher, resolve
from tailban.filters.fail2ban_file import (
    COMMON_CONF,
    FilterFileError,
    UserFilter,
    load_filter,
    load_filter_path,
    parse_ref,
)
from tailban.filters.matcher import ChunkMatcher
from tailban.filters.user_matcher import UserMatcher
from tailban.jails.jail import Jail
from tailban.tools.test_filter import run_filter

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def failures(matcher: UserMatcher | ChunkMatcher, lines: str) -> list[Failure]:
    chunk = textwrap.dedent(lines).lstrip("\n").encode()
    return [e for e in matcher.scan(chunk, NOW) if isinstance(e, Failure)]


def seen(matcher: UserMatcher, lines: str) -> list[tuple[str | None, str, str | None, str]]:
    return [(f.ip, f.host, f.user, f.rule) for f in failures(matcher, lines)]


MYAPP = """
    # a service of our own
    [INCLUDES]
    before = common.conf
    after = myapp-site.local

    [Init]
    mode = normal

    [Definition]
    _daemon = myapp
    _tail = (?: port \\d+)?\\s*$

    mdre-normal =
    mdre-strict = ^%(__prefix_line)sslow login from <HOST>%(_tail)s

    failregex = ^%(__prefix_line)slogin failed for <F-USER>.*</F-USER> from <HOST>%(_tail)s
                ^%(__prefix_line)sbad token from <ADDR>%(_tail)s
                <mdre-<mode>>
    ignoreregex = ^%(__prefix_line)slogin failed for healthcheck from
"""

MYAPP_LOG = """
    Nov 23 10:00:01 web1 myapp[12]: login failed for alice from 192.0.2.1 port 4000
    Nov 23 10:00:02 web1 myapp[12]: bad token from 2001:db8::7
    Nov 23 10:00:03 web1 myapp[12]: slow login from 192.0.2.3
    Nov 23 10:00:04 web1 myapp[12]: login failed for healthcheck from 192.0.2.4
    Nov 23 10:00:05 web1 otherd[13]: login failed for bob from 192.0.2.5
    Nov 23 10:00:06 web1 myapp: login failed for carol from ::ffff:192.0.2.6
"""


def test_includes_common_prefix_and_init_options(tmp_path: Path) -> None:
    filter_d = tmp_path / "filter.d"
    write(filter_d, "myapp.conf", MYAPP)  # no common.conf here: the built-in one serves
    spec = load_filter("myapp", filter_d)
    assert spec.files == (str(filter_d / "myapp.conf"), "<built-in common.conf>")
    assert [rx.engine for rx in spec.failregex] == ["re2", "re2"]
    assert seen(UserMatcher(spec), MYAPP_LOG) == [
        ("192.0.2.1", "192.0.2.1", "alice", "myapp:1"),
        ("2001:db8::7", "2001:db8::7", None, "myapp:2"),
        ("192.0.2.6", "192.0.2.6", "carol", "myapp:1")]
    # filter = myapp[mode=strict] overrides [Init]: the third expression appears
    strict = load_filter("myapp", filter_d, {"mode": "strict"})
    assert len(strict.failregex) == 3
    assert [f[3] for f in seen(UserMatcher(strict), MYAPP_LOG)] == [
        "myapp:1", "myapp:2", "myapp:3", "myapp:1"]
    # the same through a jail's reference
    assert parse_ref('myapp[mode=strict, note="a, b"]') == (
        "myapp", {"mode": "strict", "note": "a, b"})
    assert resolve("myapp[mode=strict]", None, str(tmp_path)) == strict


def test_local_file_and_known_extend_the_filter(tmp_path: Path) -> None:
    filter_d = tmp_path / "filter.d"
    write(filter_d, "myapp.conf", MYAPP)
    write(filter_d, "myapp.local", """
        [Definition]
        failregex = %(known/failregex)s
                    ^%(__prefix_line)sblocked <HOST>$
        ignoreregex =
    """)
    spec = load_filter("myapp", filter_d)
    assert [rx.line for rx in spec.failregex] == [16, 17, 3]
    log = textwrap.dedent(MYAPP_LOG) + "Nov 23 10:00:07 web1 myapp[1]: blocked h1.example\n"
    found = seen(UserMatcher(spec), log)
    assert ("192.0.2.4", "192.0.2.4", "healthcheck", "myapp:1") in found  # ignoreregex emptied
    assert found[-1] == (None, "h1.example", None, "myapp:3")  # a name: ip None


def test_shipped_common_conf_is_the_builtin_one_and_a_local_copy_wins(tmp_path: Path) -> None:
    shipped = REPO / "etc" / "tailban" / "filter.d" / "common.conf"
    assert shipped.read_text() == COMMON_CONF
    filter_d = tmp_path / "filter.d"
    write(filter_d, "myapp.conf", MYAPP)
    write(filter_d, "common.conf", COMMON_CONF.replace(r"__hostname = \S+",
                                                       r"__hostname = web\d"))
    spec = load_filter("myapp", filter_d)
    assert str(filter_d / "common.conf") in spec.files
    found = seen(UserMatcher(spec), "Nov 23 10:00:01 db1 myapp[12]: login failed for x from "
                                    "192.0.2.1\n")
    assert found == []  # db1 is not web\d


def test_interpolation_is_recursive_and_a_loop_is_an_error(tmp_path: Path) -> None:
    filter_d = tmp_path / "filter.d"
    write(filter_d, "deep.conf", """
        [DEFAULT]
        a = %(b)s%(b)s
        b = %(c)s
        c = x%%y
        [Definition]
        failregex = ^<F-USER>%(a)s</F-USER> from <HOST>$
    """)
    spec = load_filter("deep", filter_d)
    assert spec.failregex[0].source == "^<F-USER>x%yx%y</F-USER> from <HOST>$"
    assert seen(UserMatcher(spec), "Nov 23 10:00:00 x%yx%y from 192.0.2.9\n") == []
    assert seen(UserMatcher(spec), "Nov 23 10:00:00x%yx%y from 192.0.2.9\n") == [
        ("192.0.2.9", "192.0.2.9", "x%yx%y", "deep:1")]
    path = write(filter_d, "loop.conf", """
        [Definition]
        a = %(b)s
        b = x%(a)s
        failregex = ^%(a)s <HOST>$
    """)
    with pytest.raises(FilterFileError) as err:
        load_filter("loop", filter_d)
    assert err.value.file == str(path) and err.value.line in (2, 3)
    assert "loop" in str(err.value)
    path = write(filter_d, "undefined.conf", """
        [Definition]
        failregex = ^%(nothere)s <HOST>$
    """)
    with pytest.raises(FilterFileError, match=r"undefined.conf:2: \[Definition\]: "
                                              r"%\(nothere\)s is not defined"):
        load_filter("undefined", filter_d)
    write(filter_d, "tags.conf", """
        [Definition]
        t = <t>
        failregex = ^<t> <HOST>$
    """)
    with pytest.raises(FilterFileError, match="does not end"):
        load_filter("tags", filter_d)


# The time stamp is cut out, the space after it stays (as in fail2ban).
TAGS = """
    [Definition]
    failregex = ^ host <HOST> user <F-USER>\\S+</F-USER>$
                ^ addr <ADDR> alt <F-ALT_USER>\\S*</F-ALT_USER>$
                ^ ip4 <IP4>$
                ^ ip6 <IP6>$
                ^ dns <DNS>$
                ^ id <F-ID>\\S+</F-ID>$
                ^ either (?:user <F-USER>\\S+</F-USER>|alt <F-ALT_USER1>\\S+</F-ALT_USER1>) <HOST>$
                ^ error <F-ERROR>\\w+</F-ERROR> <HOST>$
"""


@pytest.mark.parametrize(("line", "expected"), [
    ("host 192.0.2.1 user bob", ("192.0.2.1", "192.0.2.1", "bob", "tags:1")),
    ("host [2001:db8::1] user bob", ("2001:db8::1", "2001:db8::1", "bob", "tags:1")),
    ("host ::ffff:192.0.2.2 user bob", ("192.0.2.2", "192.0.2.2", "bob", "tags:1")),
    ("host mail.example.org user bob", (None, "mail.example.org", "bob", "tags:1")),
    ("addr 192.0.2.3 alt eve", ("192.0.2.3", "192.0.2.3", "eve", "tags:2")),
    ("addr mail.example.org alt eve", None),  # <ADDR> takes no names
    ("ip4 192.0.2.4", ("192.0.2.4", "192.0.2.4", None, "tags:3")),
    ("ip4 2001:db8::4", None),
    ("ip6 2001:db8::5", ("2001:db8::5", "2001:db8::5", None, "tags:4")),
    ("dns h.example", (None, "h.example", None, "tags:5")),
    ("id 192.0.2.6", ("192.0.2.6", "192.0.2.6", None, "tags:6")),
    ("id someone", None),  # an <F-ID> counts only when it is an address
    ("either user u1 192.0.2.7", ("192.0.2.7", "192.0.2.7", "u1", "tags:7")),
    ("either alt u2 192.0.2.7", ("192.0.2.7", "192.0.2.7", "u2", "tags:7")),
    ("error boom 192.0.2.8", ("192.0.2.8", "192.0.2.8", None, "tags:8")),
    ("host 999.1.1.1 user bob", None),  # not an address, not a name
])
def test_tags(tmp_path: Path, line: str, expected: tuple[str | None, ...] | None) -> None:
    write(tmp_path, "tags.conf", TAGS)
    spec = load_filter("tags", tmp_path)
    found = seen(UserMatcher(spec), f"2026-11-23T10:00:00Z {line}\n")
    assert found == ([expected] if expected else [])


def test_prefregex_content_and_nofail_mlfid_tie_lines(tmp_path: Path) -> None:
    write(tmp_path, "conn.conf", """
        [INCLUDES]
        before = common.conf
        [Definition]
        _daemon = authd
        prefregex = ^<F-MLFID>%(__prefix_line)s</F-MLFID><F-CONTENT>.+</F-CONTENT>$
        failregex = ^<F-NOFAIL>connect from</F-NOFAIL> <HOST>$
                    ^auth failed for <F-USER>\\S+</F-USER>$
                    ^<F-NOFAIL><F-MLFFORGET>closed</F-MLFFORGET></F-NOFAIL>$
                    ^<F-MLFGAINED>login ok</F-MLFGAINED> for <F-USER>\\S+</F-USER>$
                    ^early failure$
    """)
    spec = load_filter("conn", tmp_path)
    matcher = UserMatcher(spec, track_lines=True)
    found = seen(matcher, """
        Nov 23 10:00:01 h authd[1]: connect from 192.0.2.1
        Nov 23 10:00:02 h authd[2]: connect from 192.0.2.2
        Nov 23 10:00:03 h authd[1]: auth failed for alice
        Nov 23 10:00:04 h authd[2]: login ok for bob
        Nov 23 10:00:05 h authd[1]: closed
        Nov 23 10:00:06 h authd[1]: auth failed for mallory
        Nov 23 10:00:07 h authd[3]: early failure
        Nov 23 10:00:08 h authd[3]: connect from 192.0.2.3
        Nov 23 10:00:09 h other[1]: auth failed for alice
    """)
    # the NOFAIL line gives the address; a failure of id [3] waits for it; after "closed"
    # id [1] is forgotten, so its next failure has no address
    assert found == [("192.0.2.1", "192.0.2.1", "alice", "conn:2"),
                     ("192.0.2.3", "192.0.2.3", None, "conn:5")]
    assert matcher.event_lines == [3, 4, 8]  # line 4: bob's login (a Success)
    successes = [e for e in UserMatcher(spec).scan(
        b"Nov 23 10:00:02 h authd[2]: connect from 192.0.2.2\n"
        b"Nov 23 10:00:04 h authd[2]: login ok for bob\n", NOW) if not isinstance(e, Failure)]
    assert [(s.ip, s.user) for s in successes] == [("192.0.2.2", "bob")]


def test_mlfid_state_is_capped(tmp_path: Path) -> None:
    write(tmp_path, "wait.conf", """
        [Definition]
        prefregex = ^ <F-MLFID>c\\d+</F-MLFID> <F-CONTENT>.+</F-CONTENT>$
        failregex = ^fail$
                    ^<F-NOFAIL>from</F-NOFAIL> <HOST>$
    """)
    matcher = UserMatcher(load_filter("wait", tmp_path))
    chunk = "".join(f"Nov 23 10:00:00 c{i} fail\n" for i in range(30000)).encode()
    assert matcher.scan(chunk, NOW) == []
    assert len(matcher._ids) <= 20001


def test_maxlines_and_skiplines(tmp_path: Path) -> None:
    write(tmp_path, "multi.conf", """
        [Definition]
        failregex = ^ conn (?P<c>\\d+) from <HOST><SKIPLINES> conn (?P=c) auth failed$
        maxlines = 4
    """)
    spec = load_filter("multi", tmp_path)
    assert spec.maxlines == 4 and spec.failregex[0].engine == "regex"  # a back-reference
    matcher = UserMatcher(spec, track_lines=True)
    found = seen(matcher, """
        Nov 23 10:00:01 conn 7 from 192.0.2.7
        Nov 23 10:00:02 conn 8 from 192.0.2.8
        Nov 23 10:00:03 noise
        Nov 23 10:00:04 conn 7 auth failed
        Nov 23 10:00:05 conn 9 from 192.0.2.9
        Nov 23 10:00:06 a
        Nov 23 10:00:07 b
        Nov 23 10:00:08 c
        Nov 23 10:00:09 conn 9 auth failed
    """)
    assert found == [("192.0.2.7", "192.0.2.7", None, "multi:1")]  # conn 9: too far apart
    assert matcher.event_lines == [4]
    write(tmp_path, "single.conf", """
        [Definition]
        failregex = ^a<SKIPLINES>b <HOST>$
    """)
    with pytest.raises(FilterFileError, match="<SKIPLINES> needs maxlines"):
        load_filter("single", tmp_path)


@pytest.mark.parametrize(("datepattern", "line", "epoch"), [
    ("", "Nov 23 10:00:01 x from 192.0.2.1", "2026-11-23T10:00:01"),
    ("{^LN-BEG}", "2026-11-23T10:00:02.5+01:00 x from 192.0.2.1", "2026-11-23T09:00:02.5"),
    ("^%%Y/%%m/%%d %%H:%%M:%%S", "2026/11/23 10:00:03 x from 192.0.2.1", "2026-11-23T10:00:03"),
    ("^%Y-%m-%d %H:%M:%S,%f", "2026-11-23 10:00:04,250 x from 192.0.2.1", "2026-11-23T10:00:04.25"),
    ("^\\[%%d/%%b/%%Y:%%H:%%M:%%S %%z\\]", "[23/Nov/2026:11:00:05 +0100] x from 192.0.2.1",
     "2026-11-23T10:00:05"),
    ("{^LN-BEG}%%a %%b %%d %%H:%%M:%%S %%Y", "Mon Nov 23 10:00:06 2026 x from 192.0.2.1",
     "2026-11-23T10:00:06"),
    ("{^LN-BEG}EPOCH", "1795428007 x from 192.0.2.1", "2026-11-23T10:00:07"),
    ("{^LN-BEG}TAI64N", "@4000000069a2dc8800000000 x from 192.0.2.1", "2026-02-28T12:16:08"),
    ("^%%b %%d %%H:%%M:%%S\n    ^%%d.%%m.%%Y %%H:%%M:%%S", "23.11.2026 10:00:09 x from 192.0.2.1",
     "2026-11-23T10:00:09"),
    ("{NONE}", " x from 192.0.2.1", "2026-11-23T12:00:00"),
    ("^%%H:%%M:%%S", "10:00:10 x from 192.0.2.1", "2026-11-23T10:00:10"),
    ("^%%b %%d %%H:%%M:%%S", "Dec 24 10:00:11 x from 192.0.2.1", "2025-12-24T10:00:11"),
])
def test_datepatterns(tmp_path: Path, datepattern: str, line: str, epoch: str) -> None:
    write(tmp_path, "dated.conf", "[Definition]\nfailregex = ^ x from <HOST>$\n"
          + (f"datepattern = {datepattern}\n" if datepattern else ""))
    events = UserMatcher(load_filter("dated", tmp_path), UTC).scan(f"{line}\n".encode(), NOW)
    assert [e.time for e in events] == [datetime.fromisoformat(epoch + "+00:00").timestamp()]


def test_a_stamp_cut_from_the_middle_does_not_hide_a_candidate(tmp_path: Path) -> None:
    # The expression's literal "[] "GET /login" is only whole once the time is cut out.
    write(tmp_path, "web.conf", """
        [Definition]
        failregex = ^<HOST> - \\S+ \\[\\] "POST /login HTTP/\\d\\.\\d" 401
        datepattern = ^[^\\[]*\\[({DATE})
    """)
    spec = load_filter("web", tmp_path)
    assert not UserMatcher(spec).every_line
    found = failures(UserMatcher(spec, UTC), """
        192.0.2.1 - - [23/Nov/2026:10:00:01 +0000] "POST /login HTTP/1.1" 401 12
        192.0.2.2 - - [23/Nov/2026:10:00:02 +0000] "POST /login HTTP/1.1" 200 12
    """)
    assert [(f.ip, f.time) for f in found] == [("192.0.2.1", NOW - 7199)]


BAD = [
    ("failregex = ^<F-FOO>x</F-FOO> <HOST>$", 3, "[Definition] failregex: <F-FOO> is not "
     "supported"),
    ("failregex = ^(unclosed <HOST>$", 3, "[Definition] failregex: does not compile: "
     "missing ), unterminated subpattern"),
    ("failregex = ^user <F-USER>.* <HOST>$", 3, "<F-USER> is not closed"),
    ("failregex = ^no host here$", 3, "failregex needs <HOST>"),
    ("failregex = ^a <SUBNET>$", 3, "<SUBNET> is not supported"),
    ("failregex = ^a <HOST>$\ndatepattern = %%Q", 4, "[Definition] datepattern: %Q is not "
     "supported"),
    ("failregex = ^a <HOST>$\nmaxlines = lots", 4, "[Definition] maxlines: maxlines must be"),
    ("failregex = ^a %(x <HOST>$", 3, "bad interpolation"),
    ("ignoreregex = ^x$", 0, "no failregex"),
    ("failregex = ^a <HOST>$\nprefregex = ^<F-CONTENT>.+$", 4, "<F-CONTENT> is not closed"),
]


@pytest.mark.parametrize(("body", "line", "message"), BAD)
def test_errors_name_file_line_and_construct(tmp_path: Path, body: str, line: int,
                                             message: str) -> None:
    path = write(tmp_path, "myapp.conf", "# my app\n[Definition]\n" + body + "\n")
    with pytest.raises(FilterFileError) as err:
        load_filter("myapp", tmp_path)
    assert isinstance(err.value, ConfigError)
    assert str(err.value).startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert message in str(err.value)


def test_include_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "a.conf", "[INCLUDES]\nbefore = nothere.conf\n[Definition]\n"
                                     "failregex = ^<HOST>$\n")
    with pytest.raises(FilterFileError, match=f"^{path}:2: \\[INCLUDES\\] before: cannot find"):
        load_filter("a", tmp_path)
    write(tmp_path, "b.conf", "[INCLUDES]\nbefore = c.conf\n[Definition]\nfailregex = ^<HOST>$\n")
    write(tmp_path, "c.conf", "[INCLUDES]\nbefore = b.conf\n")
    with pytest.raises(FilterFileError, match="include loop"):
        load_filter("b", tmp_path)
    with pytest.raises(FilterFileError, match="no filter 'zzz'"):
        load_filter("zzz", tmp_path)


def test_a_pathological_expression_cannot_stall_the_matcher(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # fail2ban's old dovecot expression (CVE-2021-32749's cousin): nested quantifiers.
    write(tmp_path, "old-dovecot.conf", """
        [Definition]
        failregex = ^(?:.*?)+user=<(?:[^>]*)+>.*rip=<HOST>
                    ^(a+)+$ <HOST>
    """)
    spec = load_filter("old-dovecot", tmp_path)
    assert [rx.engine for rx in spec.failregex] == ["re2", "re2"]  # linear time
    crafted = "Nov 23 10:00:00 " + "user=<" + "a" * 5000 + "\n"
    started = time.perf_counter()
    assert failures(UserMatcher(spec), crafted * 3) == []
    assert time.perf_counter() - started < 1.0
    # One RE2 refuses (a look-ahead) runs on `regex` with a time bound per line.
    path = write(tmp_path, "lookahead.conf", """
        [Definition]
        failregex = ^ (?=a)(a+)+c <HOST>
                    ^ ok (?=\\S)<HOST>$
    """)
    spec = load_filter("lookahead", tmp_path)
    assert [rx.engine for rx in spec.failregex] == ["regex", "regex"]
    matcher = UserMatcher(spec)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        found = failures(matcher, "Nov 23 10:00:00 " + "a" * 5000 + "b\n"
                         "Nov 23 10:00:01 ok 192.0.2.1\n")
    assert time.perf_counter() - started < 2.0
    assert [f.ip for f in found] == ["192.0.2.1"]  # the next line is still read
    assert matcher.timeouts == 1 and matcher.timeouts_by_place == {f"{path}:2": 1}
    assert f"filter lookahead: the failregex at {path}:2 took longer" in caplog.text


def test_a_user_name_cannot_choose_the_address(tmp_path: Path) -> None:
    write(tmp_path, "pw.conf", """
        [INCLUDES]
        before = common.conf
        [Definition]
        _daemon = sshd
        failregex = ^%(__prefix_line)sFailed password for (?:invalid user )?<F-USER>.*</F-USER> from <HOST> port \\d+ ssh2$
    """)  # noqa: E501
    found = seen(UserMatcher(load_filter("pw", tmp_path)), """
        Nov 23 10:00:00 h sshd[1]: Failed password for invalid user x from 6.6.6.6 port 1 ssh2 from 203.0.113.8 port 52343 ssh2
    """)  # noqa: E501
    assert found == [("203.0.113.8", "203.0.113.8", "x from 6.6.6.6 port 1 ssh2", "pw:1")]


def test_candidate_prefilter(tmp_path: Path) -> None:
    write(tmp_path, "lit.conf", "[Definition]\nfailregex = ^ denied for <HOST>$\n")
    spec = load_filter("lit", tmp_path)
    assert spec.failregex[0].literal == " denied for "
    assert not UserMatcher(spec).every_line
    write(tmp_path, "nolit.conf", "[Definition]\nfailregex = ^ \\w+ <HOST>$\n")
    assert UserMatcher(load_filter("nolit", tmp_path)).every_line


# --------------------------------------------------------------------- the daemon's view

JAIL = """
    [DEFAULT]
    banaction = nftables
    [myapp]
    enabled = true
    filter = myapp[mode=strict]
    logpath = /var/log/myapp.log
    maxretry = 2
    findtime = 1y
"""


def test_a_jail_loads_and_uses_a_filter_file(tmp_path: Path) -> None:
    write(tmp_path / "filter.d", "myapp.conf", MYAPP)
    write(tmp_path, "jail.conf", JAIL)
    config = load_config(str(tmp_path))
    jail_config = config.jails["myapp"]
    assert isinstance(jail_config.filter, UserFilter)
    assert jail_config.filter.name == "myapp" and len(jail_config.filter.failregex) == 3
    jail = Jail(jail_config, BanLedger())
    chunk = textwrap.dedent(MYAPP_LOG).lstrip("\n").encode()
    result = jail.feed(chunk, NOW, replay=True)
    assert [f.ip for f in result.failures] == ["192.0.2.1", "2001:db8::7", "192.0.2.3",
                                               "192.0.2.6"]
    assert [b.ip for b in result.bans] == []  # four addresses, one failure each
    assert load_config(str(tmp_path)).jails["myapp"] == jail_config  # reload: unchanged


def test_a_broken_filter_file_is_a_located_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "filter.d", "myapp.conf", MYAPP.replace("<F-USER>", "<F-USR>"))
    write(tmp_path, "jail.conf", JAIL)
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path))
    assert str(err.value).startswith(f"{path}:16: [Definition] failregex: <F-USR> is not "
                                     "supported")
    # a disabled jail's broken filter only warns
    write(tmp_path, "jail.conf", JAIL.replace("enabled = true", "enabled = false"))
    config = load_config(str(tmp_path))
    assert "myapp" not in config.jails
    assert any(f"{path}:16" in w and "disabled" in w for w in config.warnings)


def test_resolution_order(tmp_path: Path) -> None:
    filter_d = tmp_path / "filter.d"
    write(filter_d, "sshd.conf", "[Definition]\nfailregex = ^ mine <HOST>$\n")
    assert resolve("sshd", None, str(tmp_path)) == resolve_filter("sshd")  # built in wins
    write(filter_d, "sshd.local", "[Definition]\nignoreregex = ^ mine 192\\.0\\.2\\.1$\n")
    custom = resolve("sshd", None, str(tmp_path))
    assert isinstance(custom, UserFilter) and len(custom.ignoreregex) == 1
    other = write(tmp_path / "elsewhere", "x.conf", "[Definition]\nfailregex = ^ x <HOST>$\n")
    by_path = resolve(f"{other}[mode=a]", None, str(tmp_path))
    assert isinstance(by_path, UserFilter) and by_path.options == (("mode", "a"),)
    assert by_path == load_filter_path(other, {"mode": "a"})
    with pytest.raises(ValueError, match="unknown filter 'nosuch'"):
        resolve("nosuch", None, str(tmp_path))
    assert isinstance(make_matcher(custom), UserMatcher)
    assert isinstance(make_matcher(resolve_filter("sshd")), ChunkMatcher)


def test_test_filter_accepts_a_filter_file(tmp_path: Path) -> None:
    path = write(tmp_path / "filter.d", "myapp.conf", MYAPP)
    log = tmp_path / "app.log"
    log.write_text(textwrap.dedent(MYAPP_LOG).lstrip("\n"))
    out = subprocess.run([sys.executable, "-m", "tailban", "-c", str(tmp_path), "test-filter",
                          "--json", str(log), f"{path}[mode=strict]"], capture_output=True,
                         text=True, env=dict(os.environ, TZ="UTC"), timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["line"], r["ip"], r["rule"]) for r in rows if "rule" in r] == [
        (1, "192.0.2.1", "myapp:1"), (2, "2001:db8::7", "myapp:2"),
        (3, "192.0.2.3", "myapp:3"), (6, "192.0.2.6", "myapp:1")]
    by_name = subprocess.run([sys.executable, "-m", "tailban", "-c", str(tmp_path),
                              "test-filter", "--json", str(log), "myapp"],
                             capture_output=True, text=True, timeout=60)
    assert by_name.returncode == 0 and by_name.stdout.count('"rule"') == 3
    path.write_text(path.read_text().replace("<ADDR>", "<ADDR"))
    bad = subprocess.run([sys.executable, "-m", "tailban", "test-filter", str(log), str(path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and f"{path}:" in bad.stderr


SSHD_LIKE = r"""
[INCLUDES]
before = common.conf

[Definition]
_daemon = sshd(?:-session)?
__suff = (?: port \d+)?(?: ssh\d)?(?: \[preauth\])?\s*$

__user_from = (?:invalid user )?<F-USER>.*</F-USER> from <HOST>

failregex = ^%(__prefix_line)s(?:error: )?Failed \S+ for %(__user_from)s%(__suff)s
            ^%(__prefix_line)s[iI](?:llegal|nvalid) user <F-USER>.*</F-USER> from <HOST>%(__suff)s
            ^%(__prefix_line)sUser <F-USER>\S+</F-USER> from <HOST> not allowed because .*$
ignoreregex =
"""

REAL = SHARED / "corpus" / "real"


def test_a_fail2ban_style_sshd_filter_agrees_with_the_builtin(tmp_path: Path) -> None:
    logs = sorted(REAL.glob("*auth*.log")) if REAL.is_dir() else []
    require(bool(logs), f"the shared corpus {REAL} is absent")
    path = write(tmp_path, "my-sshd.conf", SSHD_LIKE)
    spec = load_filter_path(path)
    assert all(rx.engine == "re2" for rx in spec.failregex)
    checked = 0
    for log in logs:
        lines = log.read_bytes().decode("utf-8", "replace").splitlines()
        plain = {n for n, text in enumerate(lines, 1)
                 if "Failed password for" in text and "message repeated" not in text}
        ours = {(n, f.ip) for n, f in run_filter(str(log), spec, NOW).failures if n in plain}
        builtin = {(n, f.ip) for n, f in run_filter(str(log), resolve_filter("sshd"),
                                                    NOW).failures if n in plain}
        assert ours == builtin, (log.name, sorted(ours ^ builtin)[:5])
        checked += len(ours)
    assert checked > 100
