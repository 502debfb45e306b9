"""``tailban``: the daemon's subcommands and the client side of every control command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from typing import Any

from tailban import __version__
from tailban.config.errors import ConfigError
from tailban.config.load import load_config, load_daemon_settings
from tailban.control.client import CommandFailed, DaemonUnavailable, call
from tailban.core.durations import format_duration
from tailban.defaults import DEFAULT_CONFDIR

EX_UNAVAILABLE = 69
EX_CONFIG = 78


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailban", description="Follow authentication logs and ban brute-force sources.")
    parser.add_argument("-c", "--conf", default=os.environ.get("TAILBAN_CONF", DEFAULT_CONFDIR),
                        help="configuration directory (default %(default)s)")
    parser.add_argument("-s", "--socket", help="control socket (default: from tailban.conf)")
    parser.add_argument("-V", "--version", action="version", version=f"tailban {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, json_flag: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = add("run", "run the daemon in the foreground (systemd, containers)")
    p.add_argument("--from-start", action="store_true",
                   help="read log files never seen before from their start, not their end")
    p = add("start", "start the daemon in the background (python-daemon, pidfile)")
    p.add_argument("--from-start", action="store_true")
    p = add("stop", "stop the daemon; bans stay in the kernel unless --flush")
    p.add_argument("--flush", action="store_true",
                   help="also remove tailban's firewall table (fail2ban's behaviour)")
    add("reload", "re-read the configuration; a broken one is refused, the old one kept")
    add("ping", "check that the daemon answers")
    p = add("status", "jails, counters and firewall state", json_flag=True)
    p.add_argument("jail", nargs="?")
    p = add("banned", "list current bans", json_flag=True)
    p.add_argument("jail", nargs="?")
    p = add("ban", "ban an address by hand")
    p.add_argument("jail")
    p.add_argument("ip")
    p.add_argument("--bantime", help="override the jail's bantime (e.g. 1h, 1d, -1)")
    p = add("unban", "lift the ban of an address (from every jail unless --jail)")
    p.add_argument("ip")
    p.add_argument("--jail")
    p.add_argument("--fleet", action="store_true",
                   help="also lift it on every host of the fleet (published to the fleet store)")
    p = add("show", "all that is known about an address: bans, failures, country, network, "
            "names, DNSBL listings, whois", json_flag=True)
    p.add_argument("ip")
    p.add_argument("--wait", type=float, default=10.0,
                   help="seconds to wait for a lookup not done yet (default 10)")
    p = add("report", "attack statistics from the database: text, HTML with charts, JSON, CSV")
    p.add_argument("--since", default="30d", help="30d, 1y or a date (default 30d)")
    p.add_argument("--until", help="a duration ago or a date (default now)")
    p.add_argument("--jail", action="append", help="only these jails (repeatable)")
    p.add_argument("--format", choices=("text", "html", "json", "csv"), default="text")
    p.add_argument("--out", help="write to this file instead of standard output")
    p.add_argument("--until-country", metavar="CC",
                   help="extend the top countries list until this country appears")
    p.add_argument("--db", help="the database (default: dbfile from tailban.conf)")
    p.add_argument("--mail", action="store_true", help="ask the daemon to mail the scheduled "
                   "report now (HTML with a plain-text part)")
    p = add("alerts", "anomaly alerts: unusual logins, attack waves, distributed attacks; "
            "`alerts ack ID [--learn]` marks one as expected", json_flag=True)
    p.add_argument("action", nargs="?", choices=("ack",))
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--learn", action="store_true",
                   help="with ack: the login model takes this login as normal from now on")
    p.add_argument("--since", default="30d", help="30d, 1y or a date (default 30d)")
    p.add_argument("--db", help="the database (default: dbfile from tailban.conf)")
    p = add("incident", "an incident report about an address, for a CERT or an abuse desk")
    p.add_argument("ip")
    p.add_argument("--since", default="30d", help="period of the evidence (default 30d)")
    p.add_argument("--template", choices=("jpcert", "abuse", "xarf"),
                   help="default: [incident] template (abuse)")
    p.add_argument("--to", default="me", help="me (the administrators, for review; default), "
                   "abuse (the whois abuse contact) or an e-mail address")
    p.add_argument("--send", action="store_true",
                   help="send it; without this the mail is printed for review")
    p.add_argument("--db", help="the database (default: dbfile from tailban.conf)")
    p = add("fleet", "the shared fleet store: create its tables, list fleet-wide bans",
            json_flag=True)
    p.add_argument("action", choices=("init", "banned", "grants"),
                   help="init: create or upgrade the fleet tables (as the database owner); "
                   "banned: active bans of the whole fleet, one line per address; "
                   "grants: print the SQL that gives a host role least privilege")
    p.add_argument("--store", help="override [fleet] store (e.g. an owner's URL for init)")
    p.add_argument("--role", default="tailban_host", help="role name for grants")
    add("reconcile", "rewrite tailban's firewall objects from the ban database")
    p = add("replay", "run log files through the jails offline; prints what would be banned",
            json_flag=True)
    p.add_argument("logs", nargs="+", metavar="LOG", help="log files ('-' for stdin)")
    p.add_argument("--jail", action="append", help="jail(s) from the configuration to use "
                   "(default: the enabled jails)")
    p.add_argument("--filter", help="a filter instead of jails, e.g. sshd or postfix[mode=auth]")
    p.add_argument("--maxretry", type=int, help="override the jails' maxretry")
    p.add_argument("--findtime", help="override the jails' findtime")
    p.add_argument("--bantime", help="override the jails' bantime")
    p.add_argument("--store", metavar="DB", help="also record failures, logins and bans into "
                   "this SQLite file, as the daemon does (for `tailban report --db DB`)")
    p = add("check", "validate the configuration without starting", json_flag=True)
    p = add("test-filter", "show what a filter finds in a log (like fail2ban-regex)",
            json_flag=True)
    p.add_argument("log", metavar="LOG", help="log file ('-' for stdin)")
    p.add_argument("filter", metavar="FILTER",
                   help="sshd, sshd[mode=normal], postfix[mode=auth], a jail name, a "
                   "filter of CONFDIR/filter.d, or a filter file's path (fail2ban format)")
    p.add_argument("--mode", help="filter mode, e.g. normal or auth")
    p.add_argument("--since", help="only failures at or after this time (ISO 8601)")
    p.add_argument("--until", help="only failures at or before this time (ISO 8601)")
    p.add_argument("--bans", action="store_true", help="also replay the jail's decisions")
    p.add_argument("--maxretry", type=int, default=5)
    p.add_argument("--findtime", default="10m")
    p.add_argument("--bantime", default="10m")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"tailban: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except DaemonUnavailable as exc:
        print(f"tailban: {exc} (is the daemon running?)", file=sys.stderr)
        return EX_UNAVAILABLE
    except CommandFailed as exc:
        print(f"tailban: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _socket(args: argparse.Namespace) -> str:
    return str(args.socket or load_daemon_settings(args.conf).socket)


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command in ("run", "start", "check"):
        config = load_config(args.conf)
        if args.socket:
            from dataclasses import replace
            config = replace(config, daemon=replace(config.daemon, socket=args.socket))
        for warning in config.warnings:
            print(f"tailban: warning: {warning}", file=sys.stderr)
        if command == "check":
            return _check(config, args.json)
        from tailban.daemon.runtime import daemonise, run_foreground, setup_logging
        if command == "run":
            setup_logging(config.daemon.logtarget, config.daemon.loglevel)
            return run_foreground(config, from_start=args.from_start)
        return _start(config, args.from_start, daemonise)
    if command == "replay":
        return _replay(args)
    if command == "test-filter":
        return _test_filter(args)
    if command == "report" and args.mail:
        result = call(_socket(args), "mail-report", timeout=120.0)
        print("report queued for mail" + (f"; next scheduled {_time(result['next'])}"
                                          if result.get("next") else ""))
        return 0
    if command == "report":
        from tailban.tools.report import report_command
        return report_command(args.conf, args.db, args.since, args.until, args.jail,
                              args.format, args.out, args.until_country)
    if command == "alerts" and args.action == "ack":
        if args.id is None:
            print("tailban: alerts ack needs an alert id", file=sys.stderr)
            return 2
        result = call(_socket(args), "alert-ack", id=args.id, learn=args.learn)
        print(f"alert {result['id']} acknowledged"
              + ("; the login model learned it as normal" if result["learned"] else ""))
        return 0
    if command == "alerts":
        from tailban.tools.report import alerts_command
        return alerts_command(args.conf, args.db, args.since, args.json)
    if command == "incident":
        from tailban.tools.report import incident_command
        return incident_command(args.conf, args.db, args.ip, args.since, args.template,
                                args.to, args.send)
    if command == "fleet":
        from tailban.tools.fleet_admin import fleet_command
        return fleet_command(args.conf, args.action, args.store, args.role, args.json)
    sock = _socket(args)
    if command == "stop":
        return _stop(args, sock)
    if command == "ping":
        print(call(sock, "ping", timeout=5.0))
        return 0
    if command == "reload":
        result = call(sock, "reload")
        for warning in result.get("warnings", []):
            print(f"warning: {warning}")
        print(f"reloaded: jails {', '.join(result['jails']) or 'none'}")
        return 0
    if command == "status":
        return _print(call(sock, "status", jail=args.jail), args.json, _format_status)
    if command == "banned":
        return _print(call(sock, "banned", jail=args.jail), args.json, _format_banned)
    if command == "ban":
        result = call(sock, "ban", jail=args.jail, ip=args.ip, bantime=args.bantime)
        until = "forever" if result["expires_at"] is None else _time(result["expires_at"])
        print(f"banned {result['ip']} in {result['jail']} until {until}")
        if not result["applied"]:
            print(f"warning: not yet in the firewall (retrying): {result['error']}")
        return 0
    if command == "unban":
        result = call(sock, "unban", ip=args.ip, jail=args.jail, fleet=args.fleet)
        jails = ", ".join(result["jails"]) or "no local jail"
        print(f"unbanned {result['ip']} from {jails}"
              + ("; the unban is published to the fleet" if result.get("fleet") else ""))
        return 0
    if command == "show":
        result = call(sock, "show", ip=args.ip, wait=args.wait, timeout=args.wait + 5)
        return _print(result, args.json, _format_show)
    if command == "reconcile":
        result = call(sock, "reconcile")
        print(f"firewall rewritten with {result['bans']} bans")
        return 0
    raise AssertionError(command)


def _replay(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tailban.core.addresses import IgnoreList
    from tailban.core.durations import parse_duration
    from tailban.filters.builtin import UnknownFilter
    from tailban.filters.factory import resolve as resolve_filter_ref
    from tailban.tools.replay import ProgressBar, replay, write_report

    if args.filter:
        try:  # built in, shipped (vsftpd, apache-auth, ...) or CONFDIR/filter.d
            spec = resolve_filter_ref(args.filter, None, args.conf)
        except (UnknownFilter, ValueError, ConfigError) as exc:
            print(f"tailban: {exc}", file=sys.stderr)
            return 2
        from tailban.config.model import JailConfig
        jails = [JailConfig(name=spec.name, enabled=True, filter_ref=args.filter, filter=spec,
                            logpaths=(), backend="auto", maxretry=5, findtime=600.0,
                            bantime=600.0, ignoreip=IgnoreList.parse("127.0.0.0/8 ::1"),
                            ports=(), protocol="tcp", banaction="nftables", allports=True,
                            blocktype="drop", usedns="no")]
    else:
        config = load_config(args.conf)
        chosen = args.jail or [j.name for j in config.enabled_jails]
        unknown = [name for name in chosen if name not in config.jails]
        if unknown:
            print(f"tailban: no jail {', '.join(unknown)} in {args.conf}", file=sys.stderr)
            return 2
        jails = [config.jails[name] for name in chosen]
    try:
        overrides: dict[str, Any] = {}
        if args.maxretry is not None:
            overrides["maxretry"] = max(1, args.maxretry)
        if args.findtime is not None:
            overrides["findtime"] = parse_duration(args.findtime)
        if args.bantime is not None:
            overrides["bantime"] = parse_duration(args.bantime, allow_forever=True)
    except ValueError as exc:
        print(f"tailban: {exc}", file=sys.stderr)
        return 2
    jails = [replace(j, **overrides) for j in jails]
    # a bar on a terminal; quiet (machine-readable output only) when piped or with --json
    bar = ProgressBar(args.logs, sys.stderr) if sys.stdout.isatty() and not args.json \
        else None
    store = None
    if args.store:
        from tailban.stores.sqlite import SqliteStore
        store = SqliteStore(args.store)
    try:
        result = replay(args.logs, jails, progress=bar, store=store)
    except OSError as exc:
        print(f"tailban: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
        if store is not None:
            store.close()
    write_report(result, sys.stdout, args.json)
    return 0


def _test_filter(args: argparse.Namespace) -> int:
    from tailban.core.durations import parse_duration
    from tailban.filters.builtin import UnknownFilter
    from tailban.filters.factory import resolve as resolve_filter_ref
    from tailban.tools.test_filter import BanRule, run_filter, write_json, write_text

    ref = args.filter
    rule = None
    try:
        try:
            # a built-in name, CONFDIR/filter.d/NAME.conf|.local, or a filter file's path
            spec = resolve_filter_ref(ref, args.mode, args.conf)
        except UnknownFilter:
            try:
                config = load_config(args.conf)  # maybe a jail name
            except ConfigError:
                raise UnknownFilter(f"{ref!r} is neither a built-in filter nor a jail of "
                                    f"{args.conf}") from None
            if ref not in config.jails:
                raise
            jail = config.jails[ref]
            spec = jail.filter
            rule = BanRule(jail.maxretry, jail.findtime, jail.bantime)
        if args.bans and rule is None:
            rule = BanRule(max(1, args.maxretry), parse_duration(args.findtime),
                           parse_duration(args.bantime, allow_forever=True))
        since = _when(args.since)
        until = _when(args.until)
    except (UnknownFilter, ValueError, ConfigError) as exc:  # ConfigError: in a filter file
        print(f"tailban: {exc}", file=sys.stderr)
        return 2
    try:
        report = run_filter(args.log, spec, time.time(), since=since, until=until,
                            bans=rule if args.bans else None)
    except OSError as exc:
        print(f"tailban: {exc}", file=sys.stderr)
        return 1
    (write_json if args.json else write_text)(report, sys.stdout, args.bans)
    return 0


def _when(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    return stamp.timestamp()


def _check(config: Any, as_json: bool) -> int:
    jails = {j.name: {"enabled": j.enabled, "filter": j.filter_ref, "logpath": list(j.logpaths),
                      "maxretry": j.maxretry, "findtime": j.findtime, "bantime": j.bantime,
                      "port": list(j.ports) or "all", "banaction": j.banaction}
             for j in config.jails.values()}
    if as_json:
        print(json.dumps({"ok": True, "files": list(config.files), "jails": jails}, indent=2))
    else:
        print(f"configuration OK ({len(config.files)} files)")
        for name, info in jails.items():
            state = "enabled" if info["enabled"] else "disabled"
            print(f"  {name}: {state}, filter {info['filter']}, "
                  f"{info['maxretry']} in {format_duration(info['findtime'])} -> "
                  f"{format_duration(info['bantime'])}")
    return 0


def _start(config: Any, from_start: bool, daemonise: Any) -> int:
    sock = config.daemon.socket
    try:
        call(sock, "ping", timeout=2.0)
        print("tailban is already running", file=sys.stderr)
        return 0
    except (DaemonUnavailable, CommandFailed):
        pass
    pid = os.fork()
    if pid == 0:
        try:
            daemonise(config, from_start=from_start)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        try:
            call(sock, "ping", timeout=2.0)
            print(f"tailban started (pidfile {config.daemon.pidfile})")
            return 0
        except (DaemonUnavailable, CommandFailed):
            time.sleep(0.05)
    print("tailban: the daemon did not answer within 15 s; see its log", file=sys.stderr)
    return 1


def _stop(args: argparse.Namespace, sock: str) -> int:
    try:
        result = call(sock, "stop", flush=args.flush)
    except DaemonUnavailable:
        if not args.flush:
            raise
        _flush_without_daemon(args.conf)
        print("tailban was not running; firewall table removed")
        return 0
    pid = int(result["pid"])
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            break
        if not os.path.exists(sock):
            break
        time.sleep(0.02)
    print("tailban stopped" + (" and firewall flushed" if result["flush"] else
                               " (bans stay in the firewall)"))
    return 0


def _flush_without_daemon(confdir: str) -> None:
    """Remove every backend's objects for the configured jails (nftables table at least)."""
    from tailban.daemon.server import build_backend, firewall_jails
    config = load_config(confdir)
    backend = build_backend(config)
    backend.backend("nftables")  # always clean tailban's nftables table too
    backend.start(firewall_jails(config.enabled_jails))
    backend.stop(flush=True)


def _print(result: Any, as_json: bool, formatter: Any) -> int:
    if as_json:
        print(_json_text(result))
    else:
        print(formatter(result))
    return 0


def _json_text(result: Any) -> str:
    """A list one element per line (100,000 bans: indenting took 2 s, and a line per ban
    greps); anything else indented."""
    if isinstance(result, list):
        if not result:
            return "[]"
        return "[\n" + ",\n".join(json.dumps(item, sort_keys=True) for item in result) + "\n]"
    return json.dumps(result, indent=2, sort_keys=True)


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _format_status(status: dict[str, Any]) -> str:
    fw = status["firewall"]
    lines = [f"tailban {status['version']} (pid {status['pid']}, up {status['uptime']:.0f}s)",
             f"firewall: {fw['backend']}, {fw['transactions']} transactions, "
             f"{fw['pending']} pending" + (f", ERROR: {fw['last_error']}"
                                            if fw["last_error"] else "")]
    fleet = status.get("fleet")
    if fleet:
        pub, sub = fleet["publisher"], fleet["subscriber"]
        lines.append(
            f"fleet: host {fleet['host']} on {fleet['store']}; publish "
            f"{'up' if pub['connected'] else 'DOWN'} ({pub['published']} sent, "
            f"{pub['outbox']} waiting){', ' + pub['error'] if pub['error'] else ''}; "
            f"subscribe {'up' if sub['connected'] else 'DOWN'} (id {sub['last_id']}, "
            f"{sub['applied']} applied, {sub['rejected']} rejected, lag "
            f"{'-' if sub['lag'] is None else str(sub['lag']) + ' s'})"
            f"{', ' + sub['error'] if sub['error'] else ''}")
    enrich = status.get("enrichment")
    if enrich:
        worker = enrich["worker"]
        lines.append(f"enrichment: {worker['done']} done, {worker['pending']} waiting, median "
                     f"{worker['median_ms']} ms" + (f", {enrich['dnsbl_bans']} DNSBL bans"
                                                   if enrich["dnsbl_bans"] else ""))
        mail = enrich.get("mail")
        if mail:
            lines.append(f"mail: {mail['sent']} sent, {mail['queued']} queued, "
                         f"{mail['failed']} failed" + (f", ERROR: {mail['last_error']}"
                                                       if mail["last_error"] else ""))
    for name, jail in status["jails"].items():
        lines.append(f"jail {name} (filter {jail['filter']}): "
                     f"{jail['currently_banned']} banned ({jail['total_banned']} total), "
                     f"{jail['currently_failing']} failing, {jail['total_failures']} failures")
        if jail.get("backend") == "systemd":
            lines.append(f"  reads the journal ({jail.get('backend_reason', '')})")
        for path in jail["files"]:
            error = jail["file_errors"].get(path)
            lines.append(f"  {path}" + (f"  [{error}]" if error else ""))
    return "\n".join(lines)


def _safe(value: object) -> str:
    """Whois, PTR and log text are attacker-controlled: never let them drive the terminal."""
    text = str(value)
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _format_show(info: dict[str, Any]) -> str:
    lines = [f"{info['ip']}"]
    for ban in info["banned"]:
        until = "forever" if ban["expires_at"] is None else _time(ban["expires_at"])
        lines.append(f"  banned in {ban['jail']} since {_time(ban['banned_at'])} until {until}"
                     f" ({ban['source']}, {ban['failures']} failures)")
    if not info["banned"]:
        lines.append("  not banned now")
    for jail, count in info["failing"].items():
        lines.append(f"  failing in {jail}: {count} failures in the window")
    if info["bans_total"]:
        lines.append(f"  bans so far: {info['bans_total']} in {', '.join(info['jails'])}; first "
                     f"{_time(info['first_banned'])}, last {_time(info['last_banned'])}")
    facts = info.get("enrichment")
    if facts:
        country = facts.get("country_iso")
        if country:
            lines.append(f"  country: {_safe(country)} {_safe(facts.get('country_name') or '')}"
                         f" (from {facts.get('country_source')})"
                         + (f", city {_safe(facts['city'])}" if facts.get("city") else ""))
        if facts.get("asn") is not None:
            lines.append(f"  AS{facts['asn']} {_safe(facts.get('as_org') or '')}")
        for name in facts.get("rdns") or []:
            confirmed = name in (facts.get("rdns_confirmed") or [])
            lines.append(f"  name: {_safe(name)}"
                         + ("" if confirmed else " (NOT forward-confirmed)"))
        listings = facts.get("dnsbl") or []
        for listing in listings:
            lines.append(f"  DNSBL {_safe(listing.get('zone'))}: "
                         f"{_safe(', '.join(listing.get('meanings') or []))}")
        if not listings and facts.get("dnsbl_checked"):
            lines.append(f"  DNSBL: not listed in {_safe(', '.join(facts['dnsbl_checked']))}")
        whois = facts.get("whois") or {}
        for key in ("network", "netname", "org", "country", "abuse", "error"):
            if whois.get(key):
                lines.append(f"  whois {key}: {_safe(whois[key])}")
        for note in facts.get("notes") or []:
            lines.append(f"  note: {_safe(note)}")
        lines.append(f"  (looked up {_time(facts['fetched_at'])})")
    if info.get("enrichment_note"):
        lines.append(f"  {info['enrichment_note']}")
    return "\n".join(lines)


def _format_banned(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no bans"
    out = []
    for row in rows:
        until = "forever" if row["expires_at"] is None else _time(row["expires_at"])
        where = f" {_safe(row['country'])}" if row.get("country") else ""
        out.append(f"{row['jail']:<16} {row['ip']:<39} until {until}  "
                   f"({row['failures']} failures, {row['source']}){where}")
    return "\n".join(out)
