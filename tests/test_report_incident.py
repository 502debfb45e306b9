"""Incident reports (JPCERT/CC, abuse desk, X-ARF) sent through a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta, timezone
from email.message import EmailMessage, MIMEPart

import pytest

from smtp_server import HOST, ReceivedMail, SMTPTestServer
from tailban import __version__
from tailban.notify.mail import BODY_MAX, MailSender, MailSettings
from tailban.reports.incident import (
    LINE_CHARS,
    LINES_MAX,
    SCHEMA_URL,
    Incident,
    Reporter,
    _yaml_string,
    abuse_message,
    dedupe_key,
    jpcert_message,
    xarf_message,
)

JPCERT = "info@jpcert.example.jp"
DESK = "abuse@example.net"
SENDER = "tailban@gw.example.jp"
FIRST = 1704067201.0  # 2024-01-01 00:00:01 UTC = 09:00:01 JST
LAST = 1704067500.0  # 09:05:00 JST
LINES = (
    "Jan  1 09:00:01 gw sshd[101]: Failed password for root from 203.0.113.5 port 40001 ssh2",
    "Jan  1 09:00:03 gw sshd[101]: Failed password for invalid user <b>admin</b> from"
    " 203.0.113.5 port 40002 ssh2",
    "Jan  1 09:05:00 gw sshd[102]: Failed password for oracle from 203.0.113.5 port 40003 ssh2",
)
REPORTER = Reporter(
    name="山田 太郎", organisation="例示ネットワーク株式会社", email="noc@example.jp",
    phone="+81-3-1234-5678", host="gw.example.jp", timezone="JST",
)
Builder = Callable[[MailSettings, Reporter, Incident, str], EmailMessage]
BUILDERS: tuple[Builder, ...] = (jpcert_message, abuse_message, xarf_message)
HEADERS = {"from", "to", "reply-to", "date", "message-id", "auto-submitted", "x-mailer",
           "subject", "content-type", "content-transfer-encoding", "mime-version"}


@pytest.fixture(scope="module")
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as smtp:
        yield smtp


def settings_for(server: SMTPTestServer, to: str) -> MailSettings:
    return MailSettings(destination=(to,), sender=SENDER, smtp_host=HOST,
                        smtp_port=server.port, timeout=5.0)


def deliver(server: SMTPTestServer, msg: EmailMessage, to: str) -> ReceivedMail:
    before = len(server.messages)
    MailSender(settings_for(server, to)).send(msg)
    return server.wait_for(before + 1)[before]


def make_incident(**overrides: object) -> Incident:
    values: dict[str, object] = {
        "ip": "203.0.113.5", "hostname": "host5.example.net", "first_seen": FIRST,
        "last_seen": LAST, "timezone": "Asia/Tokyo", "jails": (("sshd", 6),),
        "lines": LINES, "country": "NL", "asn": "AS64500 Example Hosting",
        "abuse": "abuse@example.net", "bans": 2,
    }
    values.update(overrides)
    return Incident(**values)  # type: ignore[arg-type]


def build(builder: Builder, server: SMTPTestServer, incident: Incident, to: str) -> EmailMessage:
    return builder(settings_for(server, to), REPORTER, incident, to)


def text_of(part: MIMEPart) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content


# -------------------------------------------------------------------- a tiny YAML reader

_ESCAPES = {"\\": "\\", '"': '"', "/": "/", " ": " ", "0": "\0", "a": "\a", "b": "\b",
            "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", "e": "\x1b",
            "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}


def yaml_scalar(raw: str) -> object:
    """A double-quoted scalar that must end the line, or a bare number."""
    if not raw.startswith('"'):
        assert re.fullmatch(r"\d+(?:\.\d+)?", raw), f"bare non-number {raw!r}"
        return float(raw) if "." in raw else int(raw)
    out: list[str] = []
    i = 1
    while True:
        assert i < len(raw), f"unterminated {raw!r}"
        char = raw[i]
        if char == '"':
            assert i == len(raw) - 1, f"text after the closing quote in {raw!r}"
            return "".join(out)
        if char == "\\":
            esc = raw[i + 1]
            width = {"x": 2, "u": 4, "U": 8}.get(esc)
            if width:
                out.append(chr(int(raw[i + 2:i + 2 + width], 16)))
                i += 2 + width
                continue
            out.append(_ESCAPES[esc])
            i += 2
            continue
        out.append(char)
        i += 1


def parse_report(text: str) -> dict[str, object]:
    lines = text.splitlines()
    assert lines[0] == "---"
    result: dict[str, object] = {}
    for line in lines[1:]:
        if not line:
            continue
        match = re.fullmatch(r"([A-Z][A-Za-z-]*): (.+)", line)
        assert match, f"not a key: value line: {line!r}"
        key, raw = match.groups()
        assert key not in result, f"duplicate key {key}"
        result[key] = yaml_scalar(raw)
    return result


# -------------------------------------------------------------------- JPCERT/CC


def test_jpcert_report_arrives_in_iso_2022_jp(server: SMTPTestServer) -> None:
    got = deliver(server, build(jpcert_message, server, make_incident(), JPCERT), JPCERT)
    assert got.rcpt_tos == (JPCERT,)
    assert b'charset="iso-2022-jp"' in got.data
    assert b"Content-Transfer-Encoding: 7bit" in got.data
    assert b"\x1b$B" in got.data and b"\x1b(B" in got.data
    assert max(got.data) < 0x80
    assert b"=?iso-2022-jp?" in got.data.split(b"\r\n\r\n", 1)[0]

    msg = got.message
    assert msg["To"] == JPCERT and msg["From"] == SENDER and msg["Reply-To"] == REPORTER.email
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "インシデント報告: SSH に対するブルートフォース攻撃 (203.0.113.5)"
    assert msg.get_content_charset() == "iso-2022-jp"
    body = text_of(msg)
    for expected in (
        "JPCERT/CC 御中", "不正アクセス: SSH に対するブルートフォース攻撃", "ブロック済み",
        "関係サイトへの連絡を希望", "203.0.113.5", "host5.example.net (逆引き)",
        "開始日時     : 2024-01-01 09:00:01 +0900 (JST)",
        "終了日時     : 2024-01-01 09:05:00 +0900 (JST)", "JST (UTC+09:00)",
        "合計 6 回", "SSH (22/tcp)  6 回 [sshd]", "遮断回数: 2 回", "gw.example.jp",
        "山田 太郎", "例示ネットワーク株式会社", "noc@example.jp", "+81-3-1234-5678",
        "abuse@example.net", "AS64500 Example Hosting", *LINES,
    ):
        assert expected in body, expected


def test_jpcert_accepts_a_tzinfo_as_well_as_a_zone_name(server: SMTPTestServer) -> None:
    jst = timezone(timedelta(hours=9), "JST")
    by_name = text_of(build(jpcert_message, server, make_incident(), JPCERT))
    by_tz = text_of(build(jpcert_message, server, make_incident(timezone=jst), JPCERT))
    assert by_name == by_tz
    utc = text_of(build(abuse_message, server, make_incident(timezone="UTC"), DESK))
    assert "2024-01-01 00:00:01 +0000 (UTC)" in utc


def test_jpcert_replaces_what_iso_2022_jp_cannot_carry(server: SMTPTestServer) -> None:
    incident = make_incident(
        hostname="☃.example.net",
        lines=("Jan  1 09:00:01 gw sshd[1]: Failed password for 😀user from 203.0.113.5",),
        jails=(("sshd", 3), ("postfix-sasl", 1)),
        services=(("postfix-sasl", "smtp auth 😀", 587),),
    )
    got = deliver(server, build(jpcert_message, server, incident, JPCERT), JPCERT)
    assert max(got.data) < 0x80
    body = text_of(got.message)
    assert "? .example.net" not in body and "?.example.net" in body
    assert "Failed password for ?user" in body
    assert "SMTP AUTH ? (587/tcp)  1 回 [postfix-sasl]" in body


# -------------------------------------------------------------------- abuse desk


def test_abuse_report_in_plain_english(server: SMTPTestServer) -> None:
    incident = make_incident(jails=(("postfix-sasl", 2), ("sshd", 6)),
                             services=(("postfix-sasl", "smtp auth", 587),))
    got = deliver(server, build(abuse_message, server, incident, DESK), DESK)
    msg = got.message
    assert got.rcpt_tos == (DESK,)
    assert msg["Subject"] == "Abuse report: SSH brute force from 203.0.113.5"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Reply-To"] == REPORTER.email and msg["To"] == DESK
    body = text_of(msg)
    for expected in (
        "Dear abuse team,", "Source address:  203.0.113.5", "Reverse DNS:     host5.example.net",
        "First seen:      2024-01-01 09:00:01 +0900 (JST)",
        "Last seen:       2024-01-01 09:05:00 +0900 (JST)",
        "Service:         SSH (22/tcp): 6 failed logins [sshd]",
        "Service:         SMTP AUTH (587/tcp): 2 failed logins [postfix-sasl]",
        "Total failures:  8", "Times blocked:   2", "Name:          山田 太郎",
        f"tailban {__version__}", *LINES,
    ):
        assert expected in body, expected
    assert "for invalid user <b>admin</b> from" in body  # text, not markup


# -------------------------------------------------------------------- X-ARF


def test_xarf_report_structure(server: SMTPTestServer) -> None:
    incident = make_incident()
    got = deliver(server, build(xarf_message, server, incident, DESK), DESK)
    msg = got.message
    assert got.rcpt_tos == (DESK,)
    assert msg["X-ARF"] == "YES"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "abuse report about 203.0.113.5 - Mon, 01 Jan 2024 09:00:01 +0900"
    assert msg.get_content_type() == "multipart/mixed"
    human, report, logfile = parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain"] * 3
    assert human.get_param("name") is None
    assert report.get_param("name") == "report.txt"
    assert logfile.get_param("name") == "logfile.log"

    assert "203.0.113.5" in text_of(human) and "X-ARF" in text_of(human)
    fields = parse_report(text_of(report))
    assert fields == {
        "Reported-From": REPORTER.email,
        "Category": "abuse",
        "Report-Type": "login-attack",
        "Report-ID": f"{dedupe_key(incident)}@gw.example.jp",
        "Service": "ssh",
        "Port": 22,
        "User-Agent": f"tailban {__version__}",
        "Date": "Mon, 01 Jan 2024 09:00:01 +0900",
        "Source": "203.0.113.5",
        "Source-Type": "ipv4",
        "Occurrences": 6,
        "Attachment": "text/plain",
        "Schema-URL": SCHEMA_URL,
        "Version": 0.2,
    }
    assert text_of(logfile).splitlines() == list(LINES)


def test_xarf_ipv6_source(server: SMTPTestServer) -> None:
    incident = make_incident(ip="2001:DB8:0:0::5", hostname="")
    msg = deliver(server, build(xarf_message, server, incident, DESK), DESK).message
    assert msg["Subject"].startswith("abuse report about 2001:db8::5 - ")
    report = list(msg.iter_parts())[1]
    fields = parse_report(text_of(report))
    assert fields["Source"] == "2001:db8::5" and fields["Source-Type"] == "ipv6"


def test_xarf_destination_only_for_an_address() -> None:
    settings = MailSettings(destination=(DESK,), sender=SENDER)
    by_ip = Reporter(name="NOC", organisation="", email="noc@example.jp", host="192.0.2.1")
    report = list(xarf_message(settings, by_ip, make_incident(), DESK).iter_parts())[1]
    fields = parse_report(text_of(report))
    assert fields["Destination"] == "192.0.2.1" and fields["Destination-Type"] == "ipv4"


# -------------------------------------------------------------------- hostile values

HOSTILE_HOST = "evil.example\r\nBcc: victim@example.org\r\nCategory: fraud"
HOSTILE_LINES = (
    "Jan  1 09:00:01 gw sshd[1]: Failed password for x\r\nBcc: victim@example.org from"
    " 203.0.113.5",
    "Jan  1 09:00:02 gw sshd[1]: Invalid user <b>adm\x00in</b>\x1b[2J\x07\x7f\u2028\u202e"
    " from 203.0.113.5",
    "\r\n\r\n",
    "Subject: owned\nTo: victim@example.org",
)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]")


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_hostile_values_arrive_inert(server: SMTPTestServer, builder: Builder) -> None:
    incident = make_incident(
        hostname=HOSTILE_HOST, lines=HOSTILE_LINES,
        asn="AS1\r\nBcc: victim@example.org", country="X\nY", abuse="a@b.example\r\nCc: c@d",
        services=(("sshd", 'ssh\nCategory: fraud: x "#', 22),),
    )
    got = deliver(server, build(builder, server, incident, DESK), DESK)
    msg = got.message
    assert got.rcpt_tos == (DESK,)
    names = {name.lower() for name in msg}
    assert names <= HEADERS | {"x-arf"}, names
    assert msg.get_all("Bcc") is None and msg.get_all("Cc") is None
    assert msg["To"] == DESK and msg["Subject"] and "victim" not in str(msg["Subject"])
    header_block = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"victim" not in header_block
    assert not re.search(rb"^(Category|Subject: owned)", header_block, re.MULTILINE)
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", got.data) is None  # no bare CR or LF

    texts = [text_of(p) for p in msg.walk() if not p.is_multipart()]
    assert all(p.get_content_type() != "text/html" for p in msg.walk())
    joined = "\n".join(texts)
    for text in texts:
        assert not _CONTROLS.search(text)
        # What followed a CR/LF stays on its line (a log line may itself start "Subject:").
        assert not any(line.startswith(("Bcc:", "To:")) for line in text.splitlines())
    assert "evil.exampleBcc: victim@example.orgCategory: fraud" in joined
    assert "<b>admin</b>" in joined  # literal, the NUL removed

    if builder is xarf_message:
        report = parse_report(texts[1])
        assert report["Category"] == "abuse"
        assert report["Service"] == 'sshCategory: fraud: x "#'
        assert list(report) == ["Reported-From", "Category", "Report-Type", "Report-ID",
                                "Service", "Port", "User-Agent", "Date", "Source",
                                "Source-Type", "Occurrences", "Attachment", "Schema-URL",
                                "Version"]


@pytest.mark.parametrize("value", [
    "evil\nCategory: fraud", ": x", "- item", '"quoted" \\ back\\"', "a: b # c",
    "\x00\x07\x1b\x7f\x85\xa0\u2028\u2029\ufeff", "日本語のホスト名", "😀", "",
    "\r\n---\nSource: 198.51.100.1",
])
def test_yaml_strings_cannot_change_the_structure(value: str) -> None:
    quoted = _yaml_string(value)
    assert quoted.isascii() and quoted.isprintable() and "\n" not in quoted
    assert quoted.startswith('"') and quoted.endswith('"')
    assert yaml_scalar(quoted) == value
    assert parse_report(f"---\nService: {quoted}\nPort: 22\n") == {"Service": value, "Port": 22}


def test_yaml_string_replaces_lone_surrogates() -> None:
    assert yaml_scalar(_yaml_string("a\ud800b")) == "a\ufffdb"


# -------------------------------------------------------------------- validation


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("to", [
    "", "abuse@example.net, victim@example.org", "abuse@example.net\r\nBcc: v@example.org",
    "Abuse <abuse@example.net>", "abuse", "a@b@example.net",
])
def test_recipient_must_be_a_plain_address(builder: Builder, to: str) -> None:
    settings = MailSettings(destination=(DESK,), sender=SENDER)
    with pytest.raises(ValueError, match="recipient"):
        builder(settings, REPORTER, make_incident(), to)


@pytest.mark.parametrize("overrides", [
    {"ip": "999.1.1.1"}, {"ip": "fe80::1%eth0\nBcc: x"}, {"ip": "host.example"},
    {"last_seen": FIRST - 1}, {"first_seen": float("nan")}, {"jails": ()},
    {"jails": (("sshd", -1),)}, {"timezone": "Mars/Olympus"}, {"bans": True},
    {"services": (("sshd", "ssh", 70000),)},
])
def test_incident_refuses_nonsense(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_incident(**overrides)


def test_reporter_needs_a_plain_address_and_a_name() -> None:
    with pytest.raises(ValueError, match="email"):
        Reporter(name="NOC", organisation="", email="noc@example.jp\r\nBcc: x@example.org")
    with pytest.raises(ValueError, match="name"):
        Reporter(name="\r\n", organisation="", email="noc@example.jp")
    cleaned = Reporter(name="NOC\r\nX", organisation="Org\x00", email="noc@example.jp",
                       phone="  ")
    assert (cleaned.name, cleaned.organisation, cleaned.phone) == ("NOCX", "Org", None)


def test_lines_are_cleaned_and_capped(server: SMTPTestServer) -> None:
    many = tuple(f"line {n} " + "x" * 5000 for n in range(500))
    incident = make_incident(lines=("a\tb\x00c", "", "\r\n", *many))
    assert len(incident.lines) == LINES_MAX
    assert incident.lines[0] == "a bc"
    assert all(len(line) <= LINE_CHARS for line in incident.lines)
    assert incident.lines[1].endswith("...")
    assert incident.omitted == 500 - (LINES_MAX - 1)
    for builder, note in ((abuse_message, r"\[\.\.\. (\d+) more lines not shown\]"),
                          (jpcert_message, r"\(ほか (\d+) 行省略\)")):
        got = deliver(server, build(builder, server, incident, DESK), DESK)
        assert len(got.data) < BODY_MAX * 2  # the mail stays mail-sized
        body = text_of(got.message)
        assert "truncated by tailban" not in body  # the log was fitted, not cut
        match = re.search(note, body)
        assert match, builder.__name__
        shown = [line for line in body.splitlines() if line.startswith("  line ")]
        assert 10 < len(shown) < LINES_MAX
        assert len(shown) + 1 + int(match.group(1)) == 500 + 1  # every line is accounted for


def test_dedupe_key_names_the_incident() -> None:
    one = make_incident(jails=(("sshd", 3), ("dropbear", 1)))
    same = make_incident(jails=(("dropbear", 9), ("sshd", 1)), last_seen=LAST + 60,
                         lines=(), hostname="")
    assert dedupe_key(one) == dedupe_key(same)
    assert dedupe_key(one) != dedupe_key(make_incident(ip="203.0.113.6"))
    assert dedupe_key(one) != dedupe_key(make_incident(first_seen=FIRST + 1))
    assert re.fullmatch(r"[0-9a-f]{32}", dedupe_key(one))
