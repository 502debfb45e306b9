"""Configuration: fail2ban's files and habits, and errors that say file, line and option."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailban.cli import main
from tailban.config.errors import ConfigError
from tailban.config.load import load_config

REPO_ETC = Path(__file__).resolve().parents[1] / "etc" / "tailban"


def confdir(tmp_path: Path, jail: str, local: str | None = None,
            dropins: dict[str, str] | None = None, daemon: str | None = None) -> Path:
    (tmp_path / "jail.conf").write_text(jail)
    if local is not None:
        (tmp_path / "jail.local").write_text(local)
    if dropins:
        (tmp_path / "jail.d").mkdir()
        for name, text in dropins.items():
            (tmp_path / "jail.d" / name).write_text(text)
    if daemon is not None:
        (tmp_path / "tailban.conf").write_text(daemon)
    return tmp_path


BASE = """[DEFAULT]
bantime = 10m
maxretry = 5

[sshd]
enabled = true
port = ssh
logpath = /var/log/auth.log
"""


def test_shipped_configuration_is_valid() -> None:
    config = load_config(str(REPO_ETC))
    assert [j.name for j in config.enabled_jails] == ["sshd"]
    sshd = config.jails["sshd"]
    assert sshd.ports == ("22",) and sshd.logpaths == ("/var/log/auth.log",)
    assert "127.0.0.1" in sshd.ignoreip and "::1" in sshd.ignoreip
    assert config.jails["postfix-sasl"].filter.name == "postfix"
    assert not config.jails["dovecot"].enabled
    assert config.daemon.dbfile == "/var/lib/tailban/tailban.sqlite3"


def test_override_order_conf_local_dropins(tmp_path: Path) -> None:
    d = confdir(tmp_path, BASE, local="[sshd]\nmaxretry = 4\n", dropins={
        "a.conf": "[sshd]\nmaxretry = 3\nbantime = 1h\n",
        "b.local": "[sshd]\nmaxretry = 2\n",
        "c.conf": "[sshd]\nfindtime = 1d\n"})
    sshd = load_config(str(d)).jails["sshd"]
    assert sshd.maxretry == 2          # jail.d/*.local last
    assert sshd.bantime == 3600        # from jail.d/a.conf
    assert sshd.findtime == 86400
    assert sshd.ignoreip.networks      # ignoreself default adds loopback


def test_values_interpolation_and_multiline_logpath(tmp_path: Path) -> None:
    d = confdir(tmp_path, """[DEFAULT]
logdir = /var/log
bantime = -1
ignoreip = 10.0.0.0/8, 2001:db8::/32 192.0.2.1

[sshd]
enabled = true
port = ssh,2222, 3000:3010
logpath = %(logdir)s/auth.log
          %(logdir)s/secure* tail
banaction = nftables-allports
blocktype = reject
""")
    sshd = load_config(str(d)).jails["sshd"]
    assert sshd.logpaths == ("/var/log/auth.log", "/var/log/secure*")
    assert sshd.bantime < 0
    assert sshd.allports and sshd.ports == ()
    assert sshd.blocktype == "reject"
    assert "10.1.2.3" in sshd.ignoreip and "2001:db8::5" in sshd.ignoreip
    assert "192.0.2.1" in sshd.ignoreip and "192.0.2.2" not in sshd.ignoreip


def test_port_list(tmp_path: Path) -> None:
    d = confdir(tmp_path, "[sshd]\nenabled = true\nport = ssh,2222, 3000:3010\n"
                          "logpath = /var/log/auth.log\n")
    assert load_config(str(d)).jails["sshd"].ports == ("22", "2222", "3000-3010")


@pytest.mark.parametrize(("text", "line", "option", "needle"), [
    ("[sshd]\nenabled = true\nlogpath = /x\nbantime = 10 parsecs\n", 4, "bantime", "unit"),
    ("[sshd]\nenabled = true\nlogpath = /x\nmaxretry = 0\n", 4, "maxretry", "at least 1"),
    ("[sshd]\nenabled = true\nlogpath = /x\nfilter = nosuch\n", 4, "filter", "unknown filter"),
    ("[sshd]\nenabled = true\nlogpath = /x\nmaxretyr = 3\n", 4, "maxretyr", "unknown option"),
    ("[sshd]\nenabled = true\nlogpath = /x\nport = 70000\n", 4, "port", "out of range"),
    ("[sshd]\nenabled = true\nlogpath = /x\nport = nosuchservice\n", 4, "port", "unknown"),
    ("[sshd]\nenabled = maybe\nlogpath = /x\n", 2, "enabled", "true or false"),
    ("[sshd]\nenabled = true\nlogpath = relative.log\n", 3, "logpath", "absolute"),
    ("[sshd]\nenabled = true\nlogpath = /x\nignoreip = 1.2.3.4 nonsense\n", 4, "ignoreip",
     "nonsense"),
    ("[sshd]\nenabled = true\nlogpath = /x\nbanaction = shorewall\n", 4, "banaction",
     "unknown banaction"),
    ("[sshd]\nenabled = true\nlogpath = /x\nbackend = systemd[journalpath=rel]\n", 4, "backend",
     "absolute"),
])
def test_errors_name_file_line_option(tmp_path: Path, text: str, line: int, option: str,
                                      needle: str) -> None:
    d = confdir(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(d))
    err = info.value
    assert err.file == str(d / "jail.conf")
    assert err.line == line
    assert err.option == option
    assert needle in str(err)
    assert str(err).startswith(f"{d / 'jail.conf'}:{line}: [sshd] {option}: ")


def test_missing_logpath_is_an_error(tmp_path: Path) -> None:
    d = confdir(tmp_path, "[sshd]\nenabled = true\n")
    with pytest.raises(ConfigError, match="no logpath"):
        load_config(str(d))


def test_broken_syntax_and_bad_jail_name(tmp_path: Path) -> None:
    d = confdir(tmp_path, BASE, local="[sshd]\nthis line is not an option\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(d))
    assert info.value.file == str(d / "jail.local") and info.value.line == 2
    d2 = tmp_path / "two"
    d2.mkdir()
    confdir(d2, "[9lives]\nenabled = false\n")
    with pytest.raises(ConfigError, match="start with a letter"):
        load_config(str(d2))


def test_fail2ban_only_options_warn_not_fail(tmp_path: Path) -> None:
    d = confdir(tmp_path, BASE + "chain = INPUT\nmta = sendmail\n")
    config = load_config(str(d))
    assert any("chain" in w and "ignored" in w for w in config.warnings)
    assert any("mta" in w and "ignored" in w for w in config.warnings)


@pytest.mark.parametrize("action, mail", [
    ("%(action_mwl)s", "mail-whois-lines"), ("%(action_mw)s", "mail-whois"),
    ("%(action_)s", "none"), ("iptables-multiport[name=ssh]\n  sendmail-whois[name=ssh]",
                             "mail-whois"),
    ("mail", "mail"), ("sendmail[name=x]", "mail"), ("nftables-multiport", "none"),
])
def test_fail2ban_mail_actions_choose_the_ban_mail(tmp_path: Path, action: str,
                                                   mail: str) -> None:
    d = confdir(tmp_path, BASE + f"action = {action}\ndestemail = root@localhost\n"
                "sender = fail2ban@example.org\n")
    config = load_config(str(d))
    assert config.jails["sshd"].mail == mail
    if mail == "none":
        return
    assert config.daemon.mail is not None
    assert config.daemon.mail.destination == ("root@localhost",)
    assert config.daemon.mail.sender == "fail2ban@example.org"


def test_a_mailing_jail_without_a_destination_is_an_error(tmp_path: Path) -> None:
    d = confdir(tmp_path, BASE + "action = %(action_mw)s\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(d))
    assert info.value.option == "action" and "destination" in str(info.value)


def test_mail_section_values_are_checked(tmp_path: Path) -> None:
    d = confdir(tmp_path, BASE, daemon="[Definition]\n[mail]\ndestination = root@localhost\n"
                "charset = latin-1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(d))
    assert info.value.option == "charset" and info.value.line == 4
    (tmp_path / "tailban.conf").write_text("[mail]\ndestination = a@b.example, bad\n"
                                           "digest = 5m\n")
    with pytest.raises(ConfigError, match="destination"):
        load_config(str(d))
    (tmp_path / "tailban.conf").write_text("[mail]\ndestination = a@b.example\ndigest = 5m\n"
                                           "charset = iso-2022-jp\nsubject = $$ip $ip\n")
    mail = load_config(str(d)).daemon.mail
    assert mail is not None and mail.digest == 300 and mail.charset == "iso-2022-jp"


def test_daemon_settings_validated(tmp_path: Path) -> None:
    d = confdir(tmp_path, BASE, daemon="[Definition]\nsocket = /tmp/x.sock\nloglevel = LOUD\n")
    with pytest.raises(ConfigError, match="loglevel"):
        load_config(str(d))
    (tmp_path / "tailban.conf").write_text("[Definition]\nsockett = /tmp/x\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(d))
    assert info.value.line == 2 and info.value.option == "sockett"


def test_check_command_reports_error_and_exit_code(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = confdir(tmp_path, BASE + "bantime = soon\n")
    assert main(["-c", str(d), "check"]) == 78
    err = capsys.readouterr().err
    assert f"{d / 'jail.conf'}:9: [sshd] bantime:" in err
    assert main(["-c", str(REPO_ETC), "check"]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_disabled_jail_with_unknown_filter_is_skipped(tmp_path: Path) -> None:
    d = confdir(tmp_path, BASE + "\n[monit]\nenabled = false\nport = 2812\n"
                "logpath = /var/log/monit.log\n")
    config = load_config(str(d))
    assert "monit" not in config.jails
    assert any("monit" in w and "skipped" in w for w in config.warnings)
    d2 = tmp_path / "enabled"
    d2.mkdir()
    confdir(d2, "[monit]\nenabled = true\nlogpath = /x\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(d2))
    assert info.value.line == 1 and info.value.option == "filter"


def test_bantime_increment_options(tmp_path: Path) -> None:
    d = confdir(tmp_path, BASE + "bantime.increment = true\nbantime.factor = 2\n"
                "bantime.maxtime = 1w\nbantime.rndtime = 5m\nbantime.overalljails = true\n"
                "bantime.multipliers = 1 2 4\n")
    inc = load_config(str(d)).jails["sshd"].increment
    assert inc.enabled and inc.factor == 2 and inc.maxtime == 604800 and inc.rndtime == 300
    assert inc.overalljails and inc.multipliers == (1, 2, 4)
    (tmp_path / "jail.local").write_text("[sshd]\nbantime.formula = ban.Time * 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(d))
    assert info.value.option == "bantime.formula" and "evaluates no code" in str(info.value)


def test_banprefix_and_banlist_validation(tmp_path: Path) -> None:
    banlist = tmp_path / "banlist.txt"
    banlist.write_text("192.0.2.0/24\n# comment\n\n2001:db8::/32\nbad entry\n")
    d = confdir(tmp_path, BASE + f"banprefix6 = 64\nbanlist = {banlist}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(d))
    assert info.value.file == str(banlist) and info.value.line == 5
    banlist.write_text("192.0.2.0/24\n")
    sshd = load_config(str(d)).jails["sshd"]
    assert sshd.banprefix6 == 64 and sshd.banprefix4 == 32 and sshd.banlist == str(banlist)
    (tmp_path / "jail.local").write_text("[sshd]\nbanprefix4 = 40\n")
    with pytest.raises(ConfigError, match="8..32"):
        load_config(str(d))
