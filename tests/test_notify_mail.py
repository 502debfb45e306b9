"""Ban mails through a real SMTP server (aiosmtpd): content, charsets, hostile values, digests."""

from __future__ import annotations

import re
import shutil
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from smtp_server import HOST, SMTPTestServer, free_port
from tailban.notify.digest import MailDigest
from tailban.notify.mail import (
    BODY_MAX,
    LINE_MAX,
    MATCHES_MAX,
    BanMailFacts,
    MailError,
    MailSender,
    MailSettings,
    ban_message,
    digest_message,
    lifecycle_message,
    template_values,
)

DEST = ("root@example.net", "ops@example.net")


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as smtp:
        yield smtp


def settings_for(server: SMTPTestServer, **overrides: object) -> MailSettings:
    values: dict[str, object] = {
        "destination": DEST,
        "sender": "tailban@gw.example.net",
        "smtp_host": HOST,
        "smtp_port": server.port,
        "timeout": 5.0,
    }
    values.update(overrides)
    return MailSettings(**values)  # type: ignore[arg-type]


def sample_facts(**overrides: object) -> BanMailFacts:
    values: dict[str, object] = {
        "ip": "203.0.113.7",
        "jail": "sshd",
        "failures": 5,
        "matches": (
            "Jan  1 00:00:01 gw sshd[1]: Failed password for root from 203.0.113.7",
            "Jan  1 00:00:02 gw sshd[1]: Failed password for admin from 203.0.113.7",
        ),
        "country": "NL",
        "asn": "AS64500",
        "org": "Example Hosting B.V.",
        "rdns": "host7.example.com",
        "dnsbl": "zen.spamhaus.org",
        "whois": "netname: EXAMPLE-NET | country: NL",
        "abuse": "abuse@example.com",
        "bantime": "10m",
        "expires": "2024-01-01T00:10:02+00:00",
        "hostname": "gw.example.net",
    }
    values.update(overrides)
    return BanMailFacts(**values)  # type: ignore[arg-type]


def body_of(message: EmailMessage) -> str:
    content = message.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")  # base64/qp bodies carry CRLF inside


# --- a ban mail, end to end ----------------------------------------------------------------


def test_ban_mail_arrives_with_expected_headers_and_body(server: SMTPTestServer) -> None:
    settings = settings_for(server)
    MailSender(settings).send(ban_message(settings, sample_facts()))

    [mail] = server.wait_for(1)
    assert mail.mail_from == "tailban@gw.example.net"
    assert mail.rcpt_tos == DEST
    msg = mail.message
    assert msg["Subject"] == "[tailban] sshd: banned 203.0.113.7 (NL) after 5 failures"
    assert msg["From"] == "tailban@gw.example.net"
    assert msg["To"] == "root@example.net, ops@example.net"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] and msg["Message-ID"]
    body = body_of(msg)
    for expected in ("203.0.113.7", "sshd", "after 5 failures", "AS64500",
                     "Example Hosting B.V.", "host7.example.com", "zen.spamhaus.org",
                     "netname: EXAMPLE-NET | country: NL", "abuse@example.com", "10m",
                     "2024-01-01T00:10:02+00:00", "gw.example.net",
                     "Failed password for root from 203.0.113.7\nJan  1 00:00:02"):
        assert expected in body


def test_missing_values_show_a_placeholder() -> None:
    values = template_values(BanMailFacts(ip="198.51.100.1", jail="sshd", failures=3,
                                          hostname="h"))
    assert values["country"] == "-"
    assert values["matches"] == "-"
    assert values["expires"] == "never"


def test_custom_templates_and_dollar_values_are_not_expanded_twice(
        server: SMTPTestServer) -> None:
    settings = settings_for(server, subject_template="$ip in $jail costs $$5",
                            body_template="rdns=$rdns\n")
    facts = sample_facts(rdns="$jail ${ip}")
    MailSender(settings).send(ban_message(settings, facts))
    [mail] = server.wait_for(1)
    assert mail.message["Subject"] == "203.0.113.7 in sshd costs $5"
    assert body_of(mail.message) == "rdns=$jail ${ip}\n"


# --- iso-2022-jp -----------------------------------------------------------------------------


def test_iso_2022_jp_mail_decodes_back_to_japanese(server: SMTPTestServer) -> None:
    settings = settings_for(
        server,
        charset="iso-2022-jp",
        subject_template="不正アクセス $ip を遮断しました",
        body_template="不正アクセス $ip を遮断しました。\n国: $country\n組織: $org\n",
    )
    facts = sample_facts(org="株式会社テスト")
    MailSender(settings).send(ban_message(settings, facts))

    [mail] = server.wait_for(1)
    assert mail.message["Subject"] == "不正アクセス 203.0.113.7 を遮断しました"
    assert body_of(mail.message) == (
        "不正アクセス 203.0.113.7 を遮断しました。\n国: NL\n組織: 株式会社テスト\n"
    )
    assert b'charset="iso-2022-jp"' in mail.data
    assert b"=?iso-2022-jp?b?" in mail.data.lower()
    assert mail.data.isascii()  # JIS is 7-bit: no 8-bit octet went over the wire


def test_iso_2022_jp_replaces_characters_it_cannot_encode(server: SMTPTestServer) -> None:
    settings = settings_for(server, charset="iso-2022-jp",
                            subject_template="遮断 $ip $org", body_template="組織: $org\n")
    facts = sample_facts(org="ｱ😀 Ünïcode 株式会社")
    MailSender(settings).send(ban_message(settings, facts))
    [mail] = server.wait_for(1)
    assert mail.message["Subject"] == "遮断 203.0.113.7 ?? ?n?code 株式会社"
    assert body_of(mail.message) == "組織: ?? ?n?code 株式会社\n"


def test_iso_2022_jp_long_lines_stay_within_smtp_limits(server: SMTPTestServer) -> None:
    settings = settings_for(server, charset="iso-2022-jp", body_template="$rdns\n$whois\n")
    facts = sample_facts(rdns="あa" * 400, whois="漢字" * 400)
    MailSender(settings).send(ban_message(settings, facts))
    [mail] = server.wait_for(1)
    assert max(len(line) for line in mail.data.splitlines()) <= 998
    assert body_of(mail.message).replace("\n", "").startswith("あa" * 240)


# --- hostile values ---------------------------------------------------------------------------

HEADERS = {"From", "To", "Date", "Message-ID", "Auto-Submitted", "X-Mailer", "Subject",
           "Content-Type", "Content-Transfer-Encoding", "MIME-Version"}
HOSTILE = "$(reboot) `id` ; rm -rf / \r\nBcc: victim@example.org\r\n\r\nforged body"
MEGABYTE = "A" * 1_000_000


def hostile_facts() -> BanMailFacts:
    return sample_facts(
        rdns=HOSTILE,
        whois=HOSTILE + "\n" + MEGABYTE,
        org=MEGABYTE,
        country="NL\r\nBcc: victim@example.org",
        matches=(HOSTILE, MEGABYTE, *(f"line {i}" for i in range(1000))),
    )


def test_hostile_values_arrive_inert(server: SMTPTestServer) -> None:
    settings = settings_for(
        server, subject_template="[tailban] $ip $rdns $country $whois $matches"
    )
    MailSender(settings).send(ban_message(settings, hostile_facts()))

    [mail] = server.wait_for(1)
    assert mail.rcpt_tos == DEST  # no extra envelope recipient
    msg = mail.message
    assert msg["Bcc"] is None
    assert set(msg.keys()) == HEADERS
    header_block = mail.data.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc") for line in header_block.split(b"\r\n"))
    subject = str(msg["Subject"])
    assert "\n" not in subject and "\r" not in subject
    assert len(subject) <= LINE_MAX
    assert subject.startswith("[tailban] 203.0.113.7 $(reboot) `id` ; rm -rf / Bcc: victim")
    body = body_of(msg)
    assert "$(reboot) `id` ; rm -rf / Bcc: victim@example.org" in body  # literal, one line
    assert "\nBcc:" not in body
    assert len(body.encode()) <= BODY_MAX
    assert len(mail.data) < 2 * BODY_MAX
    assert all(len(line) <= LINE_MAX + len("  Reverse DNS: ") for line in body.splitlines())


@pytest.mark.parametrize("charset", ["utf-8", "iso-2022-jp"])
def test_whole_body_is_capped(server: SMTPTestServer, charset: str) -> None:
    settings = settings_for(server, charset=charset, body_template="$matches\n" * 20)
    facts = sample_facts(matches=tuple("漢" * 1000 for _ in range(100)))
    MailSender(settings).send(ban_message(settings, facts))
    [mail] = server.wait_for(1)
    body = body_of(mail.message)
    assert body.endswith("[... truncated by tailban]\n")
    assert BODY_MAX - 1000 < len(body.encode(charset)) <= BODY_MAX


def test_template_values_are_clean_single_lines_and_capped() -> None:
    values = template_values(hostile_facts())
    for name, value in values.items():
        if name not in ("matches", "whois"):
            assert "\n" not in value and "\r" not in value, name
        assert all(len(line) <= LINE_MAX for line in value.split("\n")), name
    matches = values["matches"].split("\n")
    assert len(matches) == MATCHES_MAX
    assert matches[-1] == "[... 953 more lines not shown]"
    assert matches[0] == "$(reboot) `id` ; rm -rf / Bcc: victim@example.orgforged body"
    assert values["country"] == "NLBcc: victim@example.org"
    single = template_values(hostile_facts(), single_line=True)
    assert all("\n" not in v and len(v) <= LINE_MAX for v in single.values())


def test_control_and_invisible_characters_are_removed() -> None:
    facts = sample_facts(rdns="a\x00b\x1b[31mc\u202ed\u2028e\x85f\tg\ud800h")
    assert template_values(facts)["rdns"] == "ab[31mcdef gh"


def test_email_api_refuses_a_raw_line_break_in_a_header() -> None:
    # The second line of defence the module relies on: even an uncleaned value could not
    # start a new header through the API.
    msg = EmailMessage()
    with pytest.raises(ValueError):
        msg["Subject"] = "hi\r\nBcc: victim@example.org"


# --- settings validation ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    "root@example.net\r\nBcc: victim@example.org",
    "root@example.net, victim@example.org",
    "Root <root@example.net>",
    "no-at-sign",
    "root@@example.net",
    "root@-bad-.example",
    "",
])
def test_settings_reject_a_bad_destination_and_name_it(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        MailSettings(destination=("ok@example.net", bad))
    assert repr(bad) in str(info.value)


def test_settings_reject_a_bad_sender_and_name_it() -> None:
    with pytest.raises(ValueError, match="evil"):
        MailSettings(destination=DEST, sender="x@example.net\nBcc: evil@example.org")


def test_settings_accept_a_comma_separated_destination() -> None:
    settings = MailSettings(destination=" a@example.net,b@example.net ")  # type: ignore[arg-type]
    assert settings.destination == ("a@example.net", "b@example.net")
    assert settings.sender.startswith("tailban@")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"destination": ()}, "at least one"),
    ({"transport": "pigeon"}, "transport"),
    ({"smtp_security": "tls"}, "smtp_security"),
    ({"smtp_port": 0}, "smtp_port"),
    ({"charset": "latin-1"}, "charset"),
    ({"timeout": 0}, "timeout"),
    ({"digest": -1}, "digest"),
    ({"sendmail_path": "sendmail"}, "absolute"),
    ({"smtp_user": "u"}, "smtp_password"),
    ({"smtp_password": "p"}, "smtp_user"),
    ({"subject_template": "ban $ip\nBcc: x"}, "one line"),
    ({"subject_template": "ban $nosuch"}, r"\$nosuch"),
    ({"body_template": "cost: $5"}, "placeholder"),
])
def test_settings_reject_bad_values(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"destination": DEST, **overrides}
    with pytest.raises(ValueError, match=message):
        MailSettings(**values)  # type: ignore[arg-type]


# --- sendmail transport -----------------------------------------------------------------------


def fake_sendmail(tmp_path: Path, status: int = 0) -> Path:
    """A real executable that records what a sendmail binary would receive."""
    script = tmp_path / "sendmail"
    script.write_text(
        "#!/bin/sh\n"
        f'for a in "$0" "$@"; do printf "%s\\n" "$a"; done > "{tmp_path}/argv"\n'
        f'cat > "{tmp_path}/stdin"\n'
        f'[ {status} -eq 0 ] || echo "sendmail: no route to host" >&2\n'
        f"exit {status}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs /bin/sh")
def test_sendmail_gets_exact_argv_and_the_message_on_stdin(tmp_path: Path) -> None:
    script = fake_sendmail(tmp_path)
    settings = MailSettings(destination=DEST, sender="tailban@gw.example.net",
                            transport="sendmail", sendmail_path=str(script))
    msg = ban_message(settings, hostile_facts())
    MailSender(settings).send(msg)

    assert (tmp_path / "argv").read_text().splitlines() == [str(script), "-t", "-oi"]
    raw = (tmp_path / "stdin").read_bytes()
    assert b"\r\n" not in raw  # local MTAs expect LF
    received = message_from_bytes(raw, policy=default_policy)
    assert isinstance(received, EmailMessage)
    assert received["To"] == "root@example.net, ops@example.net"
    assert received["Subject"] == msg["Subject"]
    assert received["Bcc"] is None
    assert body_of(received) == body_of(msg)


def test_sendmail_failure_raises_mail_error_with_stderr(tmp_path: Path) -> None:
    settings = MailSettings(destination=DEST, transport="sendmail",
                            sendmail_path=str(fake_sendmail(tmp_path, status=75)))
    with pytest.raises(MailError, match="status 75: sendmail: no route to host"):
        MailSender(settings).send(ban_message(settings, sample_facts()))


def test_missing_sendmail_raises_mail_error(tmp_path: Path) -> None:
    settings = MailSettings(destination=DEST, transport="sendmail",
                            sendmail_path=str(tmp_path / "absent"))
    with pytest.raises(MailError, match="cannot run"):
        MailSender(settings).send(ban_message(settings, sample_facts()))


# --- digests ----------------------------------------------------------------------------------


def test_a_storm_of_1000_bans_is_one_mail(server: SMTPTestServer) -> None:
    settings = settings_for(server, digest=60)
    digest = MailDigest(settings.digest)
    sender = MailSender(settings)
    t0 = 1_700_000_000.0
    for i in range(1000):
        jail = "postfix" if i % 10 == 0 else "sshd"
        facts = sample_facts(ip=f"198.51.{i // 256}.{i % 256}", jail=jail)
        assert digest.add(facts, now=t0 + i * 0.05) == []
    assert digest.next_due() == t0 + 60
    assert digest.due(t0 + 59.9) == []
    [batch] = digest.due(t0 + 60)
    assert len(batch.facts) == 1000 and (batch.start, batch.end) == (t0, t0 + 60)
    assert digest.next_due() is None and digest.due(t0 + 1000) == []

    sender.send(digest_message(settings, batch.facts, batch.start, batch.end))
    [mail] = server.wait_for(1)
    assert "1000 bans" in mail.message["Subject"]
    body = body_of(mail.message)
    assert "made 1000 bans between" in body
    assert re.search(r"\n  sshd +900\n  postfix +100\n", body)
    assert "198.51.0.0 " in body and "... and 500 more" in body
    assert "198.51.3.231" not in body  # number 999 is past the listed 500
    assert len(server.messages) == 1  # send() returns after the server's 250


def test_digest_period_zero_sends_each_ban_at_once(server: SMTPTestServer) -> None:
    settings = settings_for(server)
    digest = MailDigest(settings.digest)
    [batch] = digest.add(sample_facts(), now=100.0)
    assert batch.facts == (sample_facts(),) and digest.next_due() is None
    MailSender(settings).send(ban_message(settings, batch.facts[0]))
    [mail] = server.wait_for(1)
    assert "banned 203.0.113.7" in mail.message["Subject"]


def test_digest_windows_open_on_the_first_ban_after_a_quiet_time() -> None:
    digest = MailDigest(10)
    a, b, c = (sample_facts(ip=f"192.0.2.{n}") for n in (1, 2, 3))
    assert digest.add(a, now=100) == [] and digest.next_due() == 110
    assert digest.add(b, now=105) == []
    [first] = digest.add(c, now=112)  # the closed window leaves; c opens the next one
    assert first.facts == (a, b) and (first.start, first.end) == (100, 110)
    assert digest.next_due() == 122 and digest.pending == 1
    [rest] = digest.flush(now=115)
    assert rest.facts == (c,) and (rest.start, rest.end) == (112, 115)
    assert digest.flush(now=200) == [] and digest.next_due() is None
    with pytest.raises(ValueError):
        MailDigest(-1)


def test_digest_message_for_one_ban_and_custom_hostname() -> None:
    settings = MailSettings(destination=DEST)
    msg = digest_message(settings, [sample_facts()], 0.0, 60.0, hostname="edge\r\nBcc: x")
    assert msg["Subject"].startswith("[tailban] edgeBcc: x: 1 ban between ")
    assert "more" not in body_of(msg)


# --- lifecycle --------------------------------------------------------------------------------


def test_start_and_stop_mails(server: SMTPTestServer) -> None:
    settings = settings_for(server)
    sender = MailSender(settings)
    sender.send(lifecycle_message(settings, "start", "gw.example.net", ["sshd", "postfix"]))
    sender.send(lifecycle_message(settings, "stop", "gw.example.net", []))
    start, stop = server.wait_for(2)
    assert start.message["Subject"] == "[tailban] started on gw.example.net"
    assert "2 jails:\n  sshd\n  postfix\n" in body_of(start.message)
    assert stop.message["Subject"] == "[tailban] stopped on gw.example.net"
    with pytest.raises(ValueError):
        lifecycle_message(settings, "reload", "h", [])  # type: ignore[arg-type]


# --- transport failures and TLS ---------------------------------------------------------------


def test_smtp_server_down_raises_mail_error() -> None:
    port = free_port()
    settings = MailSettings(destination=DEST, smtp_host=HOST, smtp_port=port, timeout=2)
    with pytest.raises(MailError, match=f"SMTP {HOST}:{port}: connect failed: Connection"):
        MailSender(settings).send(ban_message(settings, sample_facts()))


def test_starttls_refused_by_a_plain_server_is_a_mail_error(server: SMTPTestServer) -> None:
    settings = settings_for(server, smtp_security="starttls")
    with pytest.raises(MailError, match="STARTTLS failed"):
        MailSender(settings).send(ban_message(settings, sample_facts()))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from conftest import require

    require(shutil.which("openssl") is not None,
            "needs the openssl command to make a test certificate (scripts/test.sh installs it)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


def tls_contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    return server_ctx, client_ctx


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_with_login(certificate: tuple[Path, Path], security: str) -> None:
    server_ctx, client_ctx = tls_contexts(certificate)
    with SMTPTestServer(tls_context=server_ctx, implicit_tls=security == "ssl",
                        credentials=("alice", "s3cret")) as smtp:
        settings = settings_for(smtp, smtp_security=security, smtp_user="alice",
                                smtp_password="s3cret")
        MailSender(settings, ssl_context=client_ctx).send(ban_message(settings, sample_facts()))
        [mail] = smtp.wait_for(1)
        assert mail.login == "alice" and mail.rcpt_tos == DEST

        wrong = replace(settings, smtp_password="nope")
        with pytest.raises(MailError, match="login failed"):
            MailSender(wrong, ssl_context=client_ctx).send(ban_message(wrong, sample_facts()))


def test_tls_with_an_untrusted_certificate_fails(certificate: tuple[Path, Path]) -> None:
    server_ctx, _ = tls_contexts(certificate)
    with SMTPTestServer(tls_context=server_ctx) as smtp:
        settings = settings_for(smtp, smtp_security="starttls")
        with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):
            MailSender(settings).send(ban_message(settings, sample_facts()))
