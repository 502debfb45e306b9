"""[fleet] settings and the per-jail sharing options: values checked at load, errors located."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailban.config.errors import ConfigError
from tailban.config.load import load_config

JAILS = "[sshd]\nenabled = true\nlogpath = /var/log/auth.log\n{extra}"


def load(tmp_path: Path, fleet: str, extra: str = "") -> object:
    (tmp_path / "jail.conf").write_text(JAILS.format(extra=extra))
    (tmp_path / "tailban.conf").write_text("[Definition]\nloglevel = INFO\n\n" + fleet)
    return load_config(str(tmp_path))


def test_fleet_settings_are_read(tmp_path: Path) -> None:
    config = load(tmp_path, "[fleet]\nstore = postgresql://tb@db.example.org/tailban\n"
                  "host = web1\ngroup = web\ntrust = web2 group:mail\nkeep = 2d\n"
                  "sslmode = verify-full\nsslrootcert = /etc/tailban/ca.pem\nmigrate = no\n",
                  "share = publish\nfleet_bantime = 1d\nfleet_trust = web3\n")
    fleet = config.daemon.fleet  # type: ignore[attr-defined]
    assert fleet.enabled and fleet.host == "web1" and fleet.group == "web"
    assert fleet.trust == ("web2", "group:mail") and fleet.keep == 172800 and not fleet.migrate
    assert dict(fleet.tls) == {"sslmode": "verify-full", "sslrootcert": "/etc/tailban/ca.pem"}
    jail = config.jails["sshd"]  # type: ignore[attr-defined]
    assert (jail.share, jail.fleet_bantime, jail.fleet_trust) == ("publish", 86400, ("web3",))


def test_no_fleet_section_means_no_fleet(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert not config.daemon.fleet.enabled  # type: ignore[attr-defined]
    assert config.jails["sshd"].share == "both"  # type: ignore[attr-defined]


@pytest.mark.parametrize("fleet, extra, option, words", [
    ("[fleet]\nstore = postgresql://tb:secret@db/tailban\n", "", "store", "password"),
    ("[fleet]\nstore = mysql://db/tailban\n", "", "store", "postgresql://"),
    ("[fleet]\nstore = sqlite:///x\nhost = web 1\n", "", "host", "letters"),
    ("[fleet]\nstore = sqlite:///x\ntrust = web1 group:\n", "", "trust", "group:NAME"),
    ("[fleet]\nstore = sqlite:///x\nsslmode = maybe\n", "", "sslmode", "verify-full"),
    ("[fleet]\nstore = sqlite:///x\npassword_file = fleet.pw\n", "", "password_file",
     "absolute"),
    ("[fleet]\nstore = sqlite:///x\nshare = both\n", "", "share", "unknown option"),
    ("", "share = sometimes\n", "share", "publish, subscribe"),
    ("", "fleet_bantime = soon\n", "fleet_bantime", ""),
])
def test_bad_values_name_file_line_and_option(tmp_path: Path, fleet: str, extra: str,
                                              option: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, fleet, extra)
    message = str(caught.value)
    assert f"{option}:" in message and words in message
    assert ".conf:" in message  # file:line
