"""Attacker-controlled text never chooses the address that gets counted.

User names, PAM's ruser/user, Dovecot's user and logged password, the client's disconnect
message, key info and ident text are written by the client. A failure must name the real
peer, or there must be no failure; never an address that only the attacker's text holds.

1. fail2ban's crafted sample lines (``debian-1.0.2`` and upstream): alone, and completing
   a failure that waits for its connection's address.
2. A property test: generated attacker text in the sshd, postfix and Dovecot templates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from filterutil import F2B_LOGS, require_shared
from tailban.core.addresses import normalise_ip
from tailban.core.events import Failure
from tailban.filters.builtin import resolve_filter
from tailban.filters.matcher import ChunkMatcher

NOW = 1_800_000_000.0
STAMP = "Jan  7 10:00:00"

# ----------------------------------------------------------------- fail2ban's crafted lines

#: the one crafted line tailban reads differently from fail2ban (see
#: test_filters_conformance.DEVIATIONS): the address sshd wrote is the last one
AUTH_INFO_LINE = re.compile(r"ssh2: from 10\.10\.1\.2 port 55555 ssh2$")


Crafted = tuple[str, str, str, str]  # id, filter reference, syslog line, real peer


def _crafted() -> list[Crafted]:
    """Every crafted injection line of the samples (fed to the normal modes), once."""
    found: dict[str, Crafted] = {}
    for path in (F2B_LOGS / "debian-1.0.2" / "expectations.jsonl",
                 F2B_LOGS / "expectations.jsonl"):
        if not path.exists():
            continue
        for raw in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(raw)
            desc = (record.get("desc") or "").lower()
            line = record["line"]
            crafted = "inject" in desc or "ruser=rhost=" in line
            if not crafted or record["filter"] not in ("sshd", "dovecot", "postfix"):
                continue
            if record["logtype"] == "journal":
                line = f"{STAMP} {line}"  # journal text has no syslog time: give it one
            ref = {"postfix": "postfix[mode=auth]"}.get(record["filter"], record["filter"])
            key = f"{path.parent.name}/{record['file']}:{record['line_no']}"
            found.setdefault(line, (key, ref, line, record["host"]))
    return list(found.values())


CRAFTED = _crafted()


@pytest.mark.parametrize("case", CRAFTED or [("missing", "", "", "")],
                         ids=[c[0] for c in CRAFTED] or ["corpus-missing"])
def test_crafted_line_yields_only_the_peer(case: Crafted) -> None:
    require_shared(F2B_LOGS)
    _, ref, line, peer = case
    if AUTH_INFO_LINE.search(line):
        peer = "10.10.1.2"  # documented deviation: the address sshd itself wrote
    want = normalise_ip(peer)
    assert want is not None
    alone = _failures(ref, [line])
    conn = re.search(r" (\S+\[\d+\]): ", line)
    scenarios = [alone]
    if conn is not None and ref == "sshd":
        # A failure waiting for this connection's address: the crafted line completes it.
        prefix = line[:conn.end()]
        waiting = prefix + "Disconnecting: Too many authentication failures [preauth]"
        scenarios.append(_failures(ref, [waiting, line]))
    for failures in scenarios:
        assert all(f.ip == want for f in failures), f"{line!r}: {failures}"
    assert alone or "[preauth]" in line or "Bad protocol" in line, (
        f"{line!r}: a normal-mode failure line gave nothing")


def _failures(ref: str, lines: list[str]) -> list[Failure]:
    matcher = ChunkMatcher(resolve_filter(ref))
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    return [e for e in matcher.scan(data, NOW) if isinstance(e, Failure)]


# ----------------------------------------------------------------- property test

PEERS = ("203.0.113.7", "2001:db8:1::7", "198.18.0.77")
DECOYS = ("6.6.6.6", "192.0.2.66", "10.10.1.2", "::ffff:6.6.6.6", "2001:db8:bad::1",
          "evil.example.org", "127.0.0.1")
FRAGMENTS = (
    " ", "  ", "from ", " from ", "port ", " port 22", " port 1", "ssh2", " ssh2", " ssh1",
    ":", ": ", "[preauth]", " [preauth]", "invalid user ", "user ", "rhost=", " rhost=",
    "ruser=", "user=", "  user=", "rip=", ", rip=", "lip=", ", lip=", ", ", ",", "<", ">",
    ">, ", "(", ")", "[", "]", "\r", "\t", "@", "via ", " via x", "RSA SHA256:x", "3: ",
    ": Auth fail", "auth failed, 1 attempts", "): ", "method=PLAIN, ", "sasl_username=",
    " not allowed because not listed in AllowUsers", "Password mismatch", "unknown user",
    "message repeated 2 times: [ ", "last message repeated 2 times", *DECOYS,
)
#: the daemons' own tails around an address, to forge in attacker text ({} = a decoy)
FAKE_TAILS = (
    " from {} port 22 ssh2", " from {} port 22 ssh2: ", " from {}", " from {} port 22",
    " from {} port 22 ssh1: ruser ", ": RSA SHA256:x from {} port 22 ssh2", " from {} via x",
    " {} port 22", " {} port 22: Too many authentication failures",
    " {} port 22: Change of username or service not allowed: (x", " {} port 22 [preauth]",
    " rhost={}", " rhost={}  user=", "x rhost={} ", ">, rip={}, lip=192.0.2.9, ",
    ">, method=PLAIN, rip={}", ">, rip={}", ",{}): unknown user", ",{}): Password mismatch",
    ",{},<s>): Password mismatch (given password: ", "[{}]: SASL LOGIN authentication failed: ",
    " ({})", "@x ({})", " from {} not allowed because not listed in AllowUsers",
    " {}: 3: x: Auth fail", ", sasl_username={}",
    # another rule's text: read as that rule, the forged address would come first
    " (auth failed, 1 attempts): user=<x>, rip={}, lip=192.0.2.9, ",
    " {} port 22: Change of username or service not allowed: (x,ssh-connection) -> (y",
)
forged = st.builds(str.format, st.sampled_from(FAKE_TAILS), st.sampled_from(DECOYS))
attacker_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), forged,
              st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                      max_size=6)),
    max_size=8).map("".join)
plain_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", max_size=12)
host_name = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,18}[a-z0-9])?", fullmatch=True)

Template = Callable[[str, str, str, str], list[str]]  # (A, B, name, peer) -> messages

SSHD: dict[str, Template] = {
    "failed-password-invalid": lambda a, b, n, p: [
        f"Failed password for invalid user {a} from {p} port 50022 ssh2"],
    "failed-password": lambda a, b, n, p: [f"Failed password for {a} from {p} port 50022 ssh2"],
    "invalid-user": lambda a, b, n, p: [f"Invalid user {a} from {p} port 50022"],
    "failed-ssh1-ruser": lambda a, b, n, p: [
        f"Failed rhosts-rsa for {a} from {p} port 1022 ssh1: ruser {b}"],
    "failed-publickey-invalid": lambda a, b, n, p: [
        f"Failed publickey for invalid user {a} from {p} port 50022 ssh2: RSA SHA256:{b}"],
    "failed-hostbased": lambda a, b, n, p: [
        f"Failed hostbased for {a} from {p} port 50022 ssh2: ED25519 SHA256:x, "
        f'client user "{b}", client host "{a}"'],
    "pam-auth-failure": lambda a, b, n, p: [f"error: PAM: Authentication failure for {a} from {p}"],
    "max-attempts": lambda a, b, n, p: [
        f"error: maximum authentication attempts exceeded for invalid user {a} from {p} "
        "port 50022 ssh2 [preauth]"],
    "change-user": lambda a, b, n, p: [
        f"Disconnecting invalid user {a} {p} port 50022: Change of username or service not "
        f"allowed: ({a},ssh-connection) -> ({b},ssh-connection) [preauth]"],
    "pam-unix-switch": lambda a, b, n, p: [
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
        f"ruser={a} rhost={p}  user={b}",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
        f"ruser={b} rhost={p}  user={a}x"],
    "disconnect-auth-fail": lambda a, b, n, p: [
        f"Received disconnect from {p} port 50022:3: {a}: Auth fail [preauth]"],
    "closed-completes": lambda a, b, n, p: [
        "Disconnecting: Too many authentication failures [preauth]",
        f"Connection closed by authenticating user {a} {p} port 50022 [preauth]"],
    "disconnected-completes": lambda a, b, n, p: [
        "User root not allowed because account is locked",
        f"Disconnected from invalid user {a} {p} port 50022 [preauth]"],
    "too-many-for-user": lambda a, b, n, p: [
        f"Disconnecting: Too many authentication failures for {a} [preauth]",
        f"Connection closed by {p} port 50022 [preauth]"],
    "not-allowed": lambda a, b, n, p: [
        f"User {a} from {p} not allowed because not listed in AllowUsers"],
    "refused-connect-ident": lambda a, b, n, p: [f"refused connect from {a}@{n} ({p})"],
    "failed-then-too-many": lambda a, b, n, p: [
        f"Failed password for invalid user {a} from {p} port 50022 ssh2",
        f"Disconnecting invalid user {a} {p} port 50022: Too many authentication failures "
        "[preauth]"],
}
POSTFIX: dict[str, Template] = {
    "sasl-username": lambda a, b, n, p: [
        f"warning: unknown[{p}]: SASL LOGIN authentication failed: {b}, sasl_username={a}"],
    "sasl-reason": lambda a, b, n, p: [
        f"warning: {n}[{p}]: SASL PLAIN authentication failed: {a}"],
}
DOVECOT: dict[str, Template] = {
    "login-user": lambda a, b, n, p: [
        f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{a}>, "
        f"method=PLAIN, rip={p}, lip=192.0.2.1, TLS, session=<{b}>"],
    "login-disabled": lambda a, b, n, p: [
        f"pop3-login: Aborted login (tried to use disabled plaintext auth): user=<{a}>, "
        f"rip={p}, lip=192.0.2.1"],
    # the session id after the address is dovecot's own (base64), not the client's
    "passdb-pam": lambda a, b, n, p: [
        f"auth-worker(123): pam({a},{p},<n4JLdHNVngZGpV2j>): pam_authenticate() failed: "
        "Authentication failure (password mismatch?)"],
    "passdb-given-password": lambda a, b, n, p: [
        f"auth: passwd-file({a},{p}): Password mismatch (given password: {b})"],
    "pam-unix": lambda a, b, n, p: [
        "auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 "
        f"tty=dovecot ruser={a} rhost={p}  user={b}"],
}
FAMILIES = {"sshd": ("sshd", "sshd[4242]", SSHD),
            "postfix": ("postfix[mode=auth]", "postfix/smtpd[999]", POSTFIX),
            "dovecot": ("dovecot", "dovecot", DOVECOT)}


def _run(family: str, template: str, a: str, b: str, name: str, peer: str) -> list[Failure]:
    ref, tag, templates = FAMILIES[family]
    messages = templates[template](a, b, name, peer)
    return _failures(ref, [f"{STAMP} bench {tag}: {msg}" for msg in messages])


def _check(family: str, template: str, a: str, b: str, name: str, peer: str) -> None:
    failures = _run(family, template, a, b, name, peer)
    want = normalise_ip(peer)
    wrong = [f for f in failures if f.ip != want]
    assert not wrong, f"{family}/{template} A={a!r} B={b!r}: counted {wrong}, peer {peer}"


CASES = [(family, template) for family, (_, _, templates) in FAMILIES.items()
         for template in templates]


@pytest.mark.parametrize(("family", "template"), CASES, ids=[f"{f}-{t}" for f, t in CASES])
def test_plain_text_counts_the_peer(family: str, template: str) -> None:
    """Without tricks every template is a failure of the peer (the property is not void)."""
    for peer in PEERS:
        failures = _run(family, template, "alice", "bob", "mail.example.net", peer)
        assert [f.ip for f in failures] == [normalise_ip(peer)], (family, template, failures)


_SETTINGS = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(template=st.sampled_from(sorted(SSHD)), a=attacker_text, b=attacker_text,
       name=host_name, peer=st.sampled_from(PEERS))
# Found by this test: the user name forges a change-of-user line ahead of the real
# "Too many authentication failures" tail, so another rule reads the forged address.
@example(template="failed-then-too-many",
         a=" 6.6.6.6 port 22: Change of username or service not allowed: (x", b="",
         name="x", peer="203.0.113.7")
@example(template="failed-password-invalid", a="x from 6.6.6.6 port 1 ssh2:", b="",
         name="x", peer="203.0.113.7")
@example(template="failed-hostbased", a="", b=" from 6.6.6.6 port 22 ssh2: ", name="x",
         peer="203.0.113.7")
def test_sshd_attacker_text_never_picks_the_address(template: str, a: str, b: str,
                                                    name: str, peer: str) -> None:
    _check("sshd", template, a, b, name, peer)


@_SETTINGS
@given(template=st.sampled_from(sorted(POSTFIX)), a=attacker_text, b=attacker_text,
       name=host_name, peer=st.sampled_from(PEERS))
def test_postfix_attacker_text_never_picks_the_address(template: str, a: str, b: str,
                                                       name: str, peer: str) -> None:
    _check("postfix", template, a, b, name, peer)


@_SETTINGS
@given(template=st.sampled_from(sorted(DOVECOT)), a=attacker_text, b=attacker_text,
       name=host_name, peer=st.sampled_from(PEERS))
@example(template="login-user", a="", b=">, rip=6.6.6.6, lip=192.0.2.9, ", name="x",
         peer="203.0.113.7")
@example(template="login-disabled", a=" (auth failed, 1 attempts): user=<x>, rip=6.6.6.6, ",
         b="", name="x", peer="203.0.113.7")
@example(template="passdb-given-password", a="x,6.6.6.6): unknown user (given password: ",
         b="", name="x", peer="203.0.113.7")
def test_dovecot_attacker_text_never_picks_the_address(template: str, a: str, b: str,
                                                       name: str, peer: str) -> None:
    _check("dovecot", template, a, b, name, peer)


@settings(max_examples=200, deadline=None)
@given(template=st.sampled_from(CASES), a=plain_text, b=plain_text, peer=st.sampled_from(PEERS))
def test_plain_names_are_counted(template: tuple[str, str], a: str, b: str, peer: str) -> None:
    """Ordinary user names (letters, digits, ``_``, even empty) always count the peer."""
    family, name = template
    failures = _run(family, name, a, b + "q", "mail.example.net", peer)
    assert [f.ip for f in failures] == [normalise_ip(peer)], (family, name, a, b, failures)
