"""Reading ``/etc/tailban``: tailban.conf(.local), jail.conf, jail.local, jail.d/*.conf|local.

Every value is validated here, at the edge, and a mistake raises ConfigError with file,
line and option. The result is one frozen Config so a reload either fully applies or not.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shlex
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tailban.config.errors import ConfigError
from tailban.config.ini import IniDocument, Value
from tailban.config.model import Config, DaemonSettings, JailConfig, JournalOptions
from tailban.config.sections import (
    SECTIONS,
    anomaly_settings,
    enrich_settings,
    fleet_settings,
    history_settings,
    mail_settings,
    parse_bool,
    parse_trust,
)
from tailban.core.addresses import IgnoreList, normalise_target
from tailban.core.bantime import BantimeIncrement, parse_multipliers
from tailban.core.durations import parse_duration
from tailban.defaults import DEFAULT_CONFDIR
from tailban.filters.builtin import UnknownFilter
from tailban.filters.factory import resolve as resolve_filter_ref
from tailban.filters.fail2ban_file import UserFilter
from tailban.filters.model import FilterSpec
from tailban.firewall.registry import banaction as banaction_kind
from tailban.fleet.policy import SHARE_MODES

T = TypeVar("T")

_JAIL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
_TRUE = {"1", "yes", "true", "on"}
_BACKENDS = {"auto": "auto", "watchdog": "watchdog", "inotify": "watchdog",
             "pyinotify": "watchdog", "polling": "polling"}
# journalctl matches of the built-in filters (fail2ban's filter.d journalmatch, with the
# unit names Debian uses); "+" separates alternatives.
JOURNAL_MATCHES = {
    "sshd": "_SYSTEMD_UNIT=ssh.service + _SYSTEMD_UNIT=sshd.service + _COMM=sshd"
            " + _COMM=sshd-session",
    "postfix": "_SYSTEMD_UNIT=postfix.service + _SYSTEMD_UNIT=postfix@-.service",
    "dovecot": "_SYSTEMD_UNIT=dovecot.service",
    "dropbear": "_SYSTEMD_UNIT=dropbear.service + _COMM=dropbear",
}
_JOURNAL_FIELD = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_BACKEND_OPTION = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*=\s*(\"[^\"]*\"|'[^']*'|[^,]*?)\s*(?:,|$)")
_PROTOCOLS = ("tcp", "udp", "sctp", "dccp", "all")
_DAEMON_KEYS = {"socket", "pidfile", "dbfile", "logtarget", "loglevel", "dbpurgeage",
                "flushonstop", "table", "checkinterval", "dbmaxmatches", "allowipv6",
                "syslogsocket"}
_JAIL_KEYS = {"enabled", "filter", "mode", "logpath", "backend", "maxretry", "findtime",
              "bantime", "ignoreip", "ignoreself", "port", "protocol", "banaction",
              "banaction_allports", "blocktype", "usedns", "logencoding",
              "bantime.increment", "bantime.factor", "bantime.formula", "bantime.multipliers",
              "bantime.maxtime", "bantime.rndtime", "bantime.overalljails",
              "banprefix4", "banprefix6", "banlist", "account_maxretry", "account_findtime",
              "account_action", "reset_on_success", "share", "fleet_bantime", "fleet_trust",
              "action", "dnsbl_action", "destemail", "sender", "anomaly_action",
              "netban_action", "wave_alerts", "journalmatch", "expand_repeats",
              "count_summaries", "legacy_tags"}
# per-jail opt-outs of what the built-in filters count beyond fail2ban (all on by default)
_BEYOND_FAIL2BAN = ("expand_repeats", "count_summaries", "legacy_tags")
# fail2ban options that mean nothing here yet: accepted with a warning so a fail2ban
# jail.local keeps loading instead of failing on its first line.
_FAIL2BAN_IGNORED = {"chain", "mta", "ignorecommand",
                     "before", "after", "datepattern", "maxlines",
                     "maxmatches", "mode_default", "action_", "action_mw", "action_mwl",
                     "action_xarf", "action_cf_mwl", "action_blocklist_de", "action_abuseipdb",
                     "action_badips", "action_badips_report", "banaction_type", "prefregex",
                     "ignorecache", "failregex", "ignoreregex",
                     "logtimezone", "fail2ban_agent", "dbfile", "dbpurgeage"}
_INTERP_REF = re.compile(r"%\(([^)]+)\)s")


def config_files(confdir: str, base: str) -> list[str]:
    """fail2ban's reading order: base.conf, base.local, base.d/*.conf, base.d/*.local."""
    root = Path(confdir)
    files = [root / f"{base}.conf", root / f"{base}.local"]
    drop_in = root / f"{base}.d"
    files += sorted(drop_in.glob("*.conf")) + sorted(drop_in.glob("*.local"))
    return [str(f) for f in files if f.is_file()]


def read_documents(paths: list[str]) -> IniDocument:
    doc = IniDocument()
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", file=path) from None
        doc.merge_text(text, path)
    return doc


def load_daemon_settings(confdir: str = DEFAULT_CONFDIR) -> DaemonSettings:
    """Only tailban.conf: what the CLI needs to find the socket."""
    files = config_files(confdir, "tailban")
    return _daemon_settings(read_documents(files)) if files else DaemonSettings()


def load_config(confdir: str = DEFAULT_CONFDIR) -> Config:
    """The whole validated configuration, or ConfigError naming the first mistake."""
    if not Path(confdir).is_dir():
        raise ConfigError(f"configuration directory {confdir} does not exist")
    daemon_files = config_files(confdir, "tailban")
    daemon_doc = read_documents(daemon_files)
    daemon = _daemon_settings(daemon_doc) if daemon_files else DaemonSettings()
    jail_files = config_files(confdir, "jail")
    if not jail_files:
        raise ConfigError(f"no jail.conf or jail.local in {confdir}")
    doc = read_documents(jail_files)
    warnings: list[str] = []

    jails: dict[str, JailConfig] = {}
    referenced = {ref for section in doc.sections.values() for value in section.values()
                  for ref in _INTERP_REF.findall(value.text)}
    _check_keys(doc, "DEFAULT", referenced, warnings)
    for name in doc.sections:
        if name in ("DEFAULT", "INCLUDES"):
            continue
        origin_file, origin_line = doc.section_origin[name]
        if not _JAIL_NAME.match(name):
            raise ConfigError("jail names start with a letter, then letters, digits, "
                              "'.', '_' or '-' (max 32)",
                              file=origin_file, line=origin_line, section=name)
        _check_keys(doc, name, referenced, warnings)
        try:
            jails[name] = _jail(doc, name, origin_file, origin_line, confdir)
            if jails[name].enabled and jails[name].banlist:
                read_banlist(str(jails[name].banlist))  # a bad entry refuses the config
        except ConfigError as exc:
            enabled = doc.resolve(name, "enabled", {"__name__": name})
            is_enabled = enabled is not None and _is_true(enabled.text)
            if is_enabled or exc.option != "filter":
                raise
            # fail2ban's jail.conf lists dozens of disabled jails: keep loading.
            warnings.append(f"{exc}; the jail is disabled, so it is skipped")
    # fail2ban keeps destemail/sender in jail.local: the first mailing jail's values serve
    # when tailban.conf's [mail] names no destination.
    mailing = [j.name for j in jails.values() if j.enabled and j.mail != "none"]
    source = mailing[0] if mailing else "DEFAULT"
    destemail, sender = (doc.resolve(source, key, {"__name__": source})
                         for key in ("destemail", "sender"))
    mail, startstop = mail_settings(daemon_doc, destemail.text if destemail else "",
                                    sender.text if sender else "")
    daemon = dataclasses.replace(daemon, mail=mail, mail_startstop=startstop)
    for jail in jails.values():
        if jail.enabled and jail.mail != "none" and mail is None:
            where = doc.get(jail.name, "action")
            raise ConfigError("the jail's action sends mail but no address is configured: set "
                              "destination in [mail] of tailban.conf (or destemail)",
                              file=where.file if where else jail.source_file,
                              line=where.line if where else None, section=jail.name,
                              option="action")
    return Config(confdir, daemon, jails, tuple(warnings), tuple(daemon_files + jail_files))


def _check_keys(doc: IniDocument, section: str, referenced: set[str],
                warnings: list[str]) -> None:
    for key in doc.keys(section):
        if key in _JAIL_KEYS:
            continue
        found = doc.sections[section][key]
        if key in _FAIL2BAN_IGNORED or key.startswith("action_"):
            warnings.append(f"{found.file}:{found.line}: [{section}] {key}: fail2ban option "
                            "not used by tailban, ignored")
            continue
        if section == "DEFAULT" and (key in referenced or key.startswith("_")):
            continue  # a helper variable for %(name)s interpolation
        known = ", ".join(sorted(_JAIL_KEYS))
        raise ConfigError(f"unknown option (known: {known})", file=found.file,
                          line=found.line, section=section, option=key)


def _daemon_settings(doc: IniDocument) -> DaemonSettings:
    section = "Definition"
    for name in doc.sections:
        if name not in ("Definition", "DEFAULT", *SECTIONS):
            file, line = doc.section_origin[name]
            raise ConfigError("unknown section (tailban.conf has [Definition], "
                              f"{', '.join(f'[{s}]' for s in SECTIONS)})",
                              file=file, line=line, section=name)
    for key, value in doc.sections.get(section, {}).items():
        if key not in _DAEMON_KEYS:
            raise ConfigError(f"unknown option (known: {', '.join(sorted(_DAEMON_KEYS))})",
                              file=value.file, line=value.line, section=section, option=key)
    base = DaemonSettings()

    def text(key: str, default: str) -> str:
        value = doc.resolve(section, key)
        return value.text if value is not None and value.text else default

    def typed(key: str, parse: Callable[[str], T], default: T) -> T:
        value = doc.resolve(section, key)
        return _typed(value, section, key, parse) if value is not None else default

    loglevel = text("loglevel", base.loglevel).upper()
    if loglevel not in ("CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"):
        where = doc.get(section, "loglevel")
        raise ConfigError("must be one of CRITICAL ERROR WARNING NOTICE INFO DEBUG",
                          file=where.file if where else None, line=where.line if where else None,
                          section=section, option="loglevel")
    table = text("table", base.table)
    if not _JAIL_NAME.match(table):
        raise ConfigError("table name must be letters, digits, '.', '_' or '-'",
                          section=section, option="table")
    return DaemonSettings(
        socket=text("socket", base.socket), pidfile=text("pidfile", base.pidfile),
        dbfile=text("dbfile", base.dbfile), logtarget=text("logtarget", base.logtarget),
        loglevel="INFO" if loglevel == "NOTICE" else loglevel,
        dbpurgeage=typed("dbpurgeage", parse_duration, base.dbpurgeage),
        flushonstop=typed("flushonstop", parse_bool, base.flushonstop), table=table,
        checkinterval=typed("checkinterval", parse_duration, base.checkinterval),
        fleet=fleet_settings(doc), enrich=enrich_settings(doc),
        history=history_settings(doc), anomaly=anomaly_settings(doc))


def _jail(doc: IniDocument, name: str, origin: str, origin_line: int,
         confdir: str | None = None) -> JailConfig:
    extra = {"__name__": name}

    def raw(key: str) -> Value | None:
        return doc.resolve(name, key, extra)

    def typed(key: str, parse: Callable[[str], T], default: T) -> T:
        value = raw(key)
        return _typed(value, name, key, parse) if value is not None else default

    enabled = typed("enabled", parse_bool, False)
    action_value = doc.get(name, "action")
    mail = _mail_action(action_value.text) if action_value is not None else "none"
    filter_value = raw("filter")
    filter_ref = filter_value.text if filter_value and filter_value.text else name
    mode_value = raw("mode")
    mode = mode_value.text if mode_value and mode_value.text else None
    try:
        # built in, or filter.d/NAME.conf|.local in fail2ban's format, or a path to one
        spec = resolve_filter_ref(filter_ref, mode, confdir, jail=name)
    except (UnknownFilter, ValueError) as exc:
        where = filter_value or mode_value
        raise ConfigError(str(exc), file=where.file if where else origin,
                          line=where.line if where else origin_line, section=name,
                          option="filter") from None
    except ConfigError as exc:  # a mistake in the filter file, located there
        if enabled:
            raise
        raise ConfigError(str(exc), option="filter") from None  # skipped: the jail is off
    backend, journal = typed("backend", _backend, ("auto", JournalOptions()))
    default_match = (" ".join(spec.journalmatch) if isinstance(spec, UserFilter)
                     else JOURNAL_MATCHES.get(spec.name, ""))
    journal = dataclasses.replace(journal, match=typed(
        "journalmatch", _journalmatch, _journalmatch(default_match)))
    logpath = raw("logpath")
    logpaths = tuple(_logpaths(logpath.text)) if logpath else ()
    if enabled and not logpaths and spec.name != "recidive" and backend != "systemd":
        raise ConfigError("enabled jail has no logpath", file=logpath.file if logpath else origin,
                          line=logpath.line if logpath else origin_line, section=name,
                          option="logpath")
    for path in logpaths:
        if not os.path.isabs(path):
            assert logpath is not None
            raise ConfigError(f"logpath must be absolute: {path!r}", file=logpath.file,
                              line=logpath.line, section=name, option="logpath")
    maxretry = typed("maxretry", _int_at_least(1), 5)
    findtime = typed("findtime", parse_duration, 600.0)
    bantime = typed("bantime", lambda t: parse_duration(t, allow_forever=True), 600.0)
    ignoreself = typed("ignoreself", parse_bool, True)
    ignoreip = typed("ignoreip", IgnoreList.parse, IgnoreList.parse("127.0.0.1/8 ::1"))
    if ignoreself:
        ignoreip = IgnoreList((*ignoreip.networks,
                               *IgnoreList.parse("127.0.0.0/8 ::1").networks))
    protocol = typed("protocol", _protocol, "tcp")
    no_ports: tuple[str, ...] = ()
    ports = typed("port", lambda t: _ports(t, protocol), no_ports)
    banaction, allports = typed("banaction", banaction_kind, ("nftables", False))
    blocktype = typed("blocktype", _blocktype, "drop")
    usedns = typed("usedns", _usedns, "warn")
    repeats, summaries, legacy = (typed(key, parse_bool, True) for key in _BEYOND_FAIL2BAN)
    if isinstance(spec, FilterSpec) and not (repeats and summaries and legacy):
        spec = dataclasses.replace(spec, expand_repeats=repeats, count_summaries=summaries,
                                   legacy_tags=legacy)
    typed("bantime.formula", _formula, None)
    no_multipliers: tuple[float, ...] = ()
    no_limit: float | None = None
    increment = BantimeIncrement(
        enabled=typed("bantime.increment", parse_bool, False),
        factor=typed("bantime.factor", _positive_float, 1.0),
        multipliers=typed("bantime.multipliers", parse_multipliers, no_multipliers),
        maxtime=typed("bantime.maxtime", parse_duration, no_limit),
        rndtime=typed("bantime.rndtime", parse_duration, no_limit),
        overalljails=typed("bantime.overalljails", parse_bool, False))
    return JailConfig(
        name=name, enabled=enabled, filter_ref=filter_ref, filter=spec, logpaths=logpaths,
        backend=backend, maxretry=maxretry, findtime=findtime, bantime=bantime,
        ignoreip=ignoreip, ports=() if allports else ports, protocol=protocol,
        banaction=banaction, allports=allports or not ports, blocktype=blocktype,
        usedns=usedns, increment=increment,
        banprefix4=typed("banprefix4", lambda t: _prefix(t, 32), 32),
        banprefix6=typed("banprefix6", lambda t: _prefix(t, 128), 128),
        banlist=typed("banlist", _absolute_path, None),
        account_maxretry=typed("account_maxretry", _int_at_least(0), 0),
        account_findtime=typed("account_findtime", parse_duration, findtime),
        account_action=typed("account_action", _account_action, "alert"),
        reset_on_success=typed("reset_on_success", parse_bool, False),
        share=typed("share", _share, "both"),
        fleet_bantime=typed("fleet_bantime", _fleet_bantime, None),
        fleet_trust=typed("fleet_trust", parse_trust, None), mail=mail,
        dnsbl_action=typed("dnsbl_action", _dnsbl_action, "none"),
        anomaly_action=typed("anomaly_action", _alert_action, "alert"),
        netban_action=typed("netban_action", _alert_action, "alert"),
        wave_alerts=typed("wave_alerts", parse_bool, True), journal=journal,
        source_file=origin)


def _typed(value: Value, section: str, key: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(value.text)
    except ValueError as exc:
        raise ConfigError(f"{exc} (got {value.text!r})", file=value.file, line=value.line,
                          section=section, option=key) from None


def _mail_action(text: str) -> str:
    """What of fail2ban's ``action`` tailban honours: whether and how bans are mailed.

    Firewall actions are ``banaction``'s job; ``%(action_mw)s``, ``%(action_mwl)s``,
    ``sendmail-whois``, ``mail-whois-lines``, ``mail`` ... choose the ban mail.
    """
    lowered = text.lower()
    if re.search(r"action_mwl|mail-whois-lines|mail-buffered", lowered):
        return "mail-whois-lines"
    if re.search(r"action_mw\b|mail-whois", lowered):
        return "mail-whois"
    if re.search(r"(?<![\w-])(?:send)?mail(?![\w-])", lowered):
        return "mail"
    return "none"


def _alert_action(text: str) -> str:
    key = text.strip().lower()
    if key not in ("alert", "ban", "none"):
        raise ValueError("expected alert, ban or none")
    return key


def _dnsbl_action(text: str) -> str:
    key = text.strip().lower()
    if key not in ("none", "tag", "ban"):
        raise ValueError("dnsbl_action is none, tag or ban")
    return key


def _is_true(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError:
        return False


def _share(text: str) -> str:
    key = text.strip().lower()
    if key not in SHARE_MODES:
        raise ValueError(f"share is one of {', '.join(SHARE_MODES)}")
    return key


def _fleet_bantime(text: str) -> float | None:
    return parse_duration(text, allow_forever=True) if text.strip() else None


def _account_action(text: str) -> str:
    key = text.strip().lower()
    if key not in ("alert", "ban"):
        raise ValueError("account_action is alert or ban")
    return key


def _prefix(text: str, bits: int) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError("expected a prefix length") from None
    if not 8 <= number <= bits:
        raise ValueError(f"prefix length must be 8..{bits}")
    return number


def _absolute_path(text: str) -> str | None:
    path = text.strip()
    if not path:
        return None
    if not os.path.isabs(path):
        raise ValueError("must be an absolute path")
    return path


def read_banlist(path: str) -> list[str]:
    """Addresses and networks, one per line, ``#`` comments; a bad line names file:line."""
    targets: list[str] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read ban list: {exc}", file=path) from None
    for number, raw in enumerate(text.splitlines(), start=1):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        target = normalise_target(item)
        if target is None:
            raise ConfigError(f"not an address or network: {item!r}", file=path, line=number,
                              option="banlist")
        targets.append(target)
    return list(dict.fromkeys(targets))


def _positive_float(text: str) -> float:
    try:
        number = float(text.strip())
    except ValueError:
        raise ValueError("expected a number") from None
    if number <= 0:
        raise ValueError("must be positive")
    return number


def _formula(text: str) -> None:
    """fail2ban evaluates Python here; tailban runs no configured code."""
    raise ValueError("custom formulas are not supported (tailban evaluates no code): the "
                     "default formula is built in; use bantime.factor or bantime.multipliers")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """A parser for whole numbers >= minimum (0 for options where 0 means off)."""

    def parse(text: str) -> int:
        try:
            number = int(text.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}" + (" (0 = off)" if minimum == 0
                                                              else ""))
        return number

    return parse


def _logpaths(text: str) -> list[str]:
    paths: list[str] = []
    for line in text.splitlines():
        item = line.strip()
        for suffix in (" tail", " head"):
            if item.endswith(suffix):
                item = item[: -len(suffix)].rstrip()
        if item:
            paths.append(item)
    return paths


def _backend(text: str) -> tuple[str, JournalOptions]:
    """``auto``, file backends, ``systemd`` or ``systemd[journalpath=DIR]``,
    ``systemd[journalfiles="/a.journal /b.journal"]``, ``systemd[journalflags=N]``."""
    key = text.strip()
    systemd = re.fullmatch(r"systemd\s*(?:\[(?P<opts>.*)\])?", key, re.IGNORECASE | re.DOTALL)
    if systemd is not None:
        return "systemd", _journal_options(systemd.group("opts") or "")
    if key.lower() not in _BACKENDS:
        raise ValueError(f"unknown backend (known: {', '.join(sorted(_BACKENDS))}, systemd)")
    return _BACKENDS[key.lower()], JournalOptions()


def _journal_options(text: str) -> JournalOptions:
    options: dict[str, str] = {}
    text = text.strip()
    pos = 0
    while pos < len(text):
        found = _BACKEND_OPTION.match(text, pos)
        if found is None or found.end() == pos:
            raise ValueError(f"cannot read backend options at {text[pos:]!r} "
                             "(expected name=value, name=value)")
        name, value = found.group(1).lower(), found.group(2)
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        if name not in ("journalpath", "journalfiles", "journalflags"):
            raise ValueError(f"unknown systemd backend option {name!r} (known: journalpath, "
                             "journalfiles, journalflags)")
        if name in options:
            raise ValueError(f"systemd backend option {name!r} given twice")
        options[name] = value.strip()
        pos = found.end()
    path = options.get("journalpath") or None
    files = tuple(f for f in re.split(r"[\s,]+", options.get("journalfiles", "")) if f)
    for item in (path, *files):
        if item is not None and not os.path.isabs(item):
            raise ValueError(f"journal paths must be absolute: {item!r}")
    if path and files:
        raise ValueError("journalpath and journalfiles cannot be used together")
    if "journalfiles" in options and not files:
        raise ValueError("journalfiles names no file")
    system = True
    if "journalflags" in options:
        flags = options["journalflags"]
        if flags not in ("0", "4"):
            raise ValueError(f"journalflags {flags!r} is not supported: 4 (system journal, the "
                             "default) or 0 (every local journal); use journalpath or "
                             "journalfiles for others")
        system = flags == "4"
    return JournalOptions(path=path, files=files, system=system)


def _journalmatch(text: str) -> tuple[str, ...]:
    """fail2ban's ``journalmatch``: ``FIELD=value`` words, ``+`` between alternatives,
    each line one more alternative; shell quoting for values with spaces."""
    tokens: list[str] = []
    for line in text.splitlines():
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise ValueError(f"cannot split journalmatch: {exc}") from None
        if not words:
            continue
        if tokens:
            tokens.append("+")
        tokens.extend(words)
    for index, token in enumerate(tokens):
        if token == "+":
            if index == 0 or index == len(tokens) - 1 or tokens[index - 1] == "+":
                raise ValueError("'+' must stand between two matches")
            continue
        field, eq, _ = token.partition("=")
        if not eq or not _JOURNAL_FIELD.fullmatch(field):
            raise ValueError(f"not a journal match {token!r}: expected FIELD=value with FIELD "
                             "in capitals, digits and '_' (e.g. _SYSTEMD_UNIT=ssh.service)")
    return tuple(tokens)


def _protocol(text: str) -> str:
    key = text.strip().lower()
    if key not in _PROTOCOLS:
        raise ValueError(f"unknown protocol (known: {', '.join(_PROTOCOLS)})")
    return key


def _ports(text: str, protocol: str) -> tuple[str, ...]:
    """Port numbers, ranges (``1000:2000`` or ``1000-2000``) and service names -> numbers."""
    result: list[str] = []
    for item in text.replace(",", " ").split():
        if item.lower() in ("all", "any", "0:65535", "1:65535"):
            return ()
        low, sep, high = item.replace(":", "-").partition("-")
        numbers = [_port_number(part, protocol) for part in ((low, high) if sep else (low,))]
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            raise ValueError(f"port range {item!r} runs backwards")
        result.append("-".join(str(n) for n in numbers))
    return tuple(dict.fromkeys(result))


def _port_number(part: str, protocol: str) -> int:
    if part.isdigit():
        number = int(part)
        if not 0 < number < 65536:
            raise ValueError(f"port {part} out of range 1-65535")
        return number
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", part):
        raise ValueError(f"not a port or service name: {part!r}")
    for proto in (protocol if protocol != "all" else "tcp", "tcp", "udp"):
        try:
            return socket.getservbyname(part, proto)
        except OSError:
            continue
    raise ValueError(f"unknown service name {part!r} (not in /etc/services)")


def _blocktype(text: str) -> str:
    key = text.strip().lower()
    if key not in ("drop", "reject"):
        raise ValueError("blocktype is drop or reject")
    return key


def _usedns(text: str) -> str:
    key = text.strip().lower()
    if key not in ("yes", "warn", "no", "raw"):
        raise ValueError("usedns is yes, warn, no or raw")
    return key


def expand_logpaths(patterns: tuple[str, ...]) -> list[str]:
    """Concrete files for a jail's logpath globs (a missing plain path is kept: it may come)."""
    files: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            files.extend(sorted(glob.glob(pattern)))
        else:
            files.append(pattern)
    return list(dict.fromkeys(files))
