"""``tailban replay`` on real logs: the daemon's pipeline offline, against fail2ban's oracle."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import require

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "real"
SSHD_LOGS = ["loghub_OpenSSH_2k.log", "teliten-log.plemma_auth.log",
             "binayakpg-authlogs_secure.head5000.log", "loghub_Linux_2k.log",
             "andykng-Guacamole_auth.log.1.log"]
MAIL_LOGS = ["NoLE-MailLog_mail.log", "StarshipEngineer-email-setup_mail.log"]
# Addresses tailban bans and fail2ban 1.0.2 does not, each with its reason (corpus README,
# caveat 2): `message repeated 5 times: [ Failed password ...]` stands for 5 failures.
EXTRA_BANS = {
    "loghub_OpenSSH_2k.log": {"106.5.5.195": "rsyslog repeat (line 285, 5 failures)",
                              "5.36.59.76": "rsyslog repeat (line 30, 5 failures)"},
}

# Logs whose only ssh failures are in old formats fail2ban does not read (README caveat 1):
# every address banned must be named by at least maxretry such lines.
LEGACY_BANS = {"loghub_Linux_2k.log": re.compile(
    r"(?:sshd\(pam_unix\)\[\d+\]: authentication failure;.* rhost=(\S+)"
    r"|klogind\[\d+\]: Authentication failed from \S+ \(([^)]+)\))")}


def _legacy_explained(log: str, extra: set[str], maxretry: int) -> set[str]:
    """The extra bans that old-format lines account for."""
    pattern = LEGACY_BANS[log]
    named = Counter(next(g for g in m.groups() if g)
                    for m in pattern.finditer((REAL / log).read_text(errors="replace")))
    return {ip for ip in extra if named[ip] >= maxretry}


def replay_json(log: Path, filt: str, maxretry: int, findtime: int,
                bantime: int) -> tuple[list[dict[str, object]], dict[str, object]]:
    env = dict(os.environ, TZ="UTC")
    out = subprocess.run(
        [sys.executable, "-m", "tailban", "replay", "--json", "--filter", filt,
         "--maxretry", str(maxretry), "--findtime", str(findtime), "--bantime", str(bantime),
         str(log)], capture_output=True, text=True, check=True, env=env, timeout=120).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    return rows[:-1], rows[-1]["summary"]


def oracle(log: str, run: str, setting: str) -> dict[str, object]:
    data = json.loads((REAL / f"{log}.{run}.bans.json").read_text())
    for entry in data["settings"]:
        if entry["name"] == setting:
            return dict(entry["sliding_window"])
    raise KeyError(setting)


@pytest.mark.parametrize(("log", "run", "filt", "setting"), [
    *[(log, "sshd.normal", "sshd", "ssh-3-in-1800") for log in SSHD_LOGS],
    *[(log, "sshd.normal", "sshd", "fail2ban-default") for log in SSHD_LOGS],
    *[(log, "postfix.auth", "postfix[mode=auth]", "postfix-sasl-2-in-5400")
      for log in MAIL_LOGS],
])
def test_replay_bans_every_address_fail2ban_bans(log: str, run: str, filt: str,
                                                 setting: str) -> None:
    require(REAL.is_dir(), f"the shared corpus {REAL} is absent")
    expected = oracle(log, run, setting)
    data = json.loads((REAL / f"{log}.{run}.bans.json").read_text())
    entry = next(e for e in data["settings"] if e["name"] == setting)
    bans, summary = replay_json(REAL / log, filt, entry["maxretry"], entry["findtime"],
                                entry["bantime"])
    ours = {str(b["ban"]) for b in bans}
    theirs = set(expected["banned_ips"])  # type: ignore[arg-type]
    assert theirs <= ours, f"fail2ban bans {sorted(theirs - ours)} that tailban misses"
    assert not any(ip.startswith("127.") or ip == "::1" for ip in ours)
    if log in LEGACY_BANS:
        extra = ours - theirs
        assert extra and _legacy_explained(log, extra, entry["maxretry"]) == extra
    else:
        assert ours - theirs == set(EXTRA_BANS.get(log, {}))
    assert summary["lines"] == len((REAL / log).read_bytes().splitlines())


def _replay_cli(log: Path, *, tty: bool) -> tuple[str, str]:
    """``tailban replay LOG`` with stdout a terminal (a pty) or a pipe: (stdout, stderr)."""
    import pty

    argv = [sys.executable, "-m", "tailban", "replay", "--filter", "sshd", str(log)]
    env = dict(os.environ, TZ="UTC", COLUMNS="100")
    if not tty:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr
    main, sub = pty.openpty()
    try:
        child = subprocess.Popen(argv, stdout=sub, stderr=subprocess.PIPE, env=env)
        os.close(sub)
        shown = bytearray()
        while True:
            try:
                got = os.read(main, 65536)
            except OSError:  # the pty closes with the child
                break
            if not got:
                break
            shown += got
        err = child.stderr.read().decode() if child.stderr else ""
        assert child.wait(60) == 0, err
        return shown.decode(), err
    finally:
        os.close(main)


def test_replay_shows_a_bar_on_a_terminal_and_is_quiet_in_a_pipe(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("".join(f"Jan  7 10:00:{n % 60:02d} h sshd[{n}]: Failed password for root "
                           f"from 192.0.2.{n % 7} port 4000 ssh2\n" for n in range(3000)))
    out, err = _replay_cli(log, tty=True)
    assert "100%" in err and "3,000 lines" in err and "lines/s" in err and "7 bans" in err
    assert "ban 192.0.2.0" in out
    piped_out, piped_err = _replay_cli(log, tty=False)
    assert piped_err == "" and "lines/s" in piped_out.splitlines()[-1]
    assert [ln for ln in piped_out.splitlines() if " ban " in ln] == \
        [ln.strip() for ln in out.splitlines() if " ban " in ln]
