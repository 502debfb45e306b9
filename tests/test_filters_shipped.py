"""The filter files tailban ships in fail2ban's format (``src/tailban/filters/shipped``):
installed with the package, resolved by name (an administrator's ``NAME.local`` read on
top), usable from ``tailban test-filter`` and ``tailban check``, and the recidive jail
reading a log (tailban's own) instead of being fed by the daemon.

Their conformance with fail2ban's sample logs is in ``test_filters_services.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import DaemonHandle, Namespaces, wait_for
from filterutil import F2B_LOGS, require_shared
from tailban.config.errors import ConfigError
from tailban.config.load import load_config
from tailban.filters.builtin import UnknownFilter
from tailban.filters.factory import SHIPPED_DIR, known_names, resolve, shipped_names
from tailban.filters.fail2ban_file import UserFilter
from test_daemon import failures, jail_ini

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("apache-auth", "nginx-http-auth", "proftpd", "recidive", "selinux-ssh", "vsftpd")
MODES = {"apache-auth": ("normal", "aggressive"),
         "nginx-http-auth": ("normal", "auth", "fallback", "aggressive")}


def test_shipped_files_are_package_data() -> None:
    assert tuple(shipped_names()) == SHIPPED
    assert set(SHIPPED) <= set(known_names())
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["tailban.filters"]
    for path in SHIPPED_DIR.iterdir():
        assert any(path.match(f"*/filters/{glob}") for glob in globs), path


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_filter_and_mode_loads_on_re2(name: str) -> None:
    for mode in MODES.get(name, ("normal",)):
        spec = resolve(f"{name}[mode={mode}]")
        assert isinstance(spec, UserFilter) and spec.path == str(SHIPPED_DIR / f"{name}.conf")
        regexes = [*spec.failregex, *spec.ignoreregex,
                   *([spec.prefregex] if spec.prefregex else [])]
        assert regexes and all(rx.engine == "re2" for rx in regexes), name
        # every failregex has literal text, so most lines are never decoded
        assert all(rx.pieces for rx in spec.failregex), name


def test_resolution_of_shipped_names(tmp_path: Path) -> None:
    filter_d = tmp_path / "filter.d"
    filter_d.mkdir()
    conf = str(tmp_path)
    shipped = str(SHIPPED_DIR / "apache-auth.conf")
    assert resolve("apache-auth", None, conf).path == shipped  # type: ignore[union-attr]
    # a copy of fail2ban's apache-auth.conf in filter.d does not replace the shipped one
    (filter_d / "apache-auth.conf").write_text("[Definition]\nfailregex = ^ mine <HOST>$\n")
    assert resolve("apache-auth", None, conf).path == shipped  # type: ignore[union-attr]
    # ... unless the administrator adds a .local: then their pair is the filter
    (filter_d / "apache-auth.local").write_text("[Definition]\nignoreregex =\n")
    mine = resolve("apache-auth", None, conf)
    assert isinstance(mine, UserFilter) and mine.path == str(filter_d / "apache-auth.conf")
    # without their .conf, the .local is read on top of the shipped file, as fail2ban does
    (filter_d / "apache-auth.conf").unlink()
    (filter_d / "apache-auth.local").write_text(
        "[Definition]\nignoreregex = %(known/ignoreregex)s\n"
        "              \\[client 192\\.0\\.2\\.7\\]\n")
    (filter_d / "apache-auth.d").mkdir()
    (filter_d / "apache-auth.d" / "x.local").write_text("[Init]\nmode = aggressive\n")
    layered = resolve("apache-auth", None, conf)
    assert isinstance(layered, UserFilter)
    assert layered.files == (shipped, str(filter_d / "apache-auth.local"),
                             str(filter_d / "apache-auth.d" / "x.local"))
    assert [rx.file for rx in layered.ignoreregex] == [str(filter_d / "apache-auth.local")]
    assert len(layered.failregex) == len(resolve("apache-auth").failregex)  # type: ignore
    with pytest.raises(UnknownFilter, match="nginx-http-auth"):  # the known names
        resolve("nosuch", None, conf)


def test_jails_pass_their_name_to_file_filters(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    (tmp_path / "jail.conf").write_text(
        f"[repeat]\nenabled = true\nfilter = recidive\nlogpath = {log}\n\n"
        f"[recidive]\nenabled = true\n\n"
        f"[other]\nenabled = true\nfilter = recidive[_jailname=sshd]\nlogpath = {log}\n\n"
        f"[web]\nenabled = true\nfilter = nginx-http-auth\nmode = fallback\n"
        f"logpath = {log}\n")
    jails = load_config(str(tmp_path)).jails
    options = {name: dict(jail.filter.options) for name, jail in jails.items()
               if isinstance(jail.filter, UserFilter)}
    assert options == {"repeat": {"_jailname": "repeat"}, "recidive": {"_jailname": "recidive"},
                       "other": {"_jailname": "sshd"},
                       "web": {"_jailname": "web", "mode": "fallback"}}
    # recidive without a logpath is fed by the daemon, with one it reads its log
    assert jails["recidive"].logpaths == () and jails["repeat"].logpaths == (str(log),)


def _tailban(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tailban", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, TZ="UTC"))


@pytest.mark.parametrize("name", SHIPPED)
def test_test_filter_reads_the_sample_log(name: str, tmp_path: Path) -> None:
    """``tailban test-filter SAMPLE NAME`` on fail2ban's sample log of the service: the
    lines of the default option set that fail2ban counts, and none of those it does not."""
    sample = F2B_LOGS / name
    expectations = F2B_LOGS / "expectations.jsonl"
    require_shared(expectations)
    default = '{"mode": "normal"}' if name == "nginx-http-auth" else None
    records = [r for r in map(json.loads, expectations.read_text().splitlines())
               if r["filter"] == name and r["filter_options"] == default]
    assert records
    done = _tailban("-c", str(tmp_path), "test-filter", "--json", str(sample), name)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    lines = {row["line"] for row in rows if "rule" in row}
    assert {r["line_no"] for r in records if r["match"]} <= lines
    assert not {r["line_no"] for r in records if not r["match"]} & lines
    assert all(row["rule"].startswith(f"{name}:") for row in rows if "rule" in row)


def test_check_loads_jails_of_shipped_filters(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    jails = "".join(f"[{jail}]\nenabled = true\nfilter = {ref}\nlogpath = {log}\n\n"
                    for jail, ref in (("vsftpd", "vsftpd"), ("proftpd", "proftpd"),
                                      ("ssh-audit", "selinux-ssh"),
                                      ("nginx", "nginx-http-auth[mode=aggressive]"),
                                      ("apache", "apache-auth[mode=aggressive]"),
                                      ("apache-syslog", "apache-auth[logging=syslog]"),
                                      ("repeat", "recidive")))
    (tmp_path / "jail.conf").write_text(jails + "[recidive]\nenabled = true\n")
    done = _tailban("-c", str(tmp_path), "check", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["jails"]
    assert {name: info["filter"] for name, info in found.items()} == {
        "vsftpd": "vsftpd", "proftpd": "proftpd", "ssh-audit": "selinux-ssh",
        "nginx": "nginx-http-auth[mode=aggressive]", "apache": "apache-auth[mode=aggressive]",
        "apache-syslog": "apache-auth[logging=syslog]", "repeat": "recidive",
        "recidive": "recidive"}
    # an unknown mode is an error naming the filter file's expression
    (tmp_path / "jail.conf").write_text(f"[w]\nenabled = true\nfilter = nginx-http-auth\n"
                                        f"mode = nosuch\nlogpath = {log}\n")
    done = _tailban("-c", str(tmp_path), "check")
    assert done.returncode != 0 and "nginx-http-auth.conf" in done.stderr
    assert "mdre-nosuch" in done.stderr
    with pytest.raises(ConfigError, match="_auth-nosuch"):
        resolve("apache-auth[mode=nosuch]")


def test_recidive_jail_with_a_logpath_reads_tailbans_log(
        netns: Namespaces, make_daemon: Callable[..., DaemonHandle], tmp_path: Path) -> None:
    """A recidive jail with a logpath counts the ban lines of its log (here the daemon's
    own log file), not the bans the daemon hands to a recidive jail without one: each
    sshd ban counts once."""
    ns = netns.add("rl")
    auth = tmp_path / "auth.log"
    auth.write_text("")
    own = tmp_path / "tailban.log"
    own.write_text("")
    daemon = make_daemon(jail_ini(auth, "maxretry = 1\n") + (
        f"\n[repeat]\nenabled = true\nfilter = recidive\nlogpath = {own}\n"
        "maxretry = 2\nfindtime = 1d\nbantime = 1w\n"), ns=ns,
        extra_daemon=f"logtarget = {own}\n")
    daemon.start()

    def jails_of(ip: str) -> set[str]:
        rows = json.loads(daemon.cli("banned", "--json").stdout)
        return {r["jail"] for r in rows if r["ip"] == ip}

    with auth.open("a") as f:
        f.write(failures("192.0.2.99", 1, pid=700))
    assert wait_for(lambda: jails_of("192.0.2.99") == {"sshd"}, 5)
    assert wait_for(lambda: "Ban 192.0.2.99 in sshd" in own.read_text(), 5)
    daemon.cli("unban", "192.0.2.99")
    assert not wait_for(lambda: "repeat" in jails_of("192.0.2.99"), 1)  # one ban: 1 of 2
    with auth.open("a") as f:
        f.write(failures("192.0.2.99", 1, pid=701))
    assert wait_for(lambda: jails_of("192.0.2.99") == {"sshd", "repeat"}, 5), own.read_text()
    # fail2ban's ban lines in the same log count too
    stamp = time.strftime("%Y-%m-%d %H:%M:%S,000")
    with own.open("a") as f:
        for _ in range(2):
            f.write(f"{stamp} fail2ban.actions [1]: NOTICE [sshd] Ban 192.0.2.98\n")
    assert wait_for(lambda: jails_of("192.0.2.98") == {"repeat"}, 5), own.read_text()
