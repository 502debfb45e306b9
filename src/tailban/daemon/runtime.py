"""Running the daemon: logging, the foreground run, and classic daemonising."""

from __future__ import annotations

import logging
import os
import sys

from tailban.daemon.memory import import_asyncio_without_ssl, release_free_memory

import_asyncio_without_ssl()  # first: OpenSSL's memory is not needed (see there)

import asyncio  # noqa: E402

from tailban.config.model import Config  # noqa: E402
from tailban.daemon.server import Daemon  # noqa: E402
from tailban.firewall.base import FirewallError  # noqa: E402

EX_CONFIG = 78  # sysexits: systemd's RestartPreventExitStatus keeps it from looping
# Seconds after the start when the start-up's garbage goes back to the system: reading the
# configuration, restoring bans and, without bytecode files (PYTHONDONTWRITEBYTECODE, an
# editable install), compiling every module leave some MiB free but mapped.
STARTUP_TRIMS = (2.0, 30.0)


def setup_logging(target: str, level: str) -> None:
    """stderr (journald under systemd), syslog, or a file that logrotate may move."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if target in ("stderr", "journal", "STDERR"):
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
            fmt = "%(levelname)s %(name)s: %(message)s"  # journald stamps lines itself
        else:
            fmt = "%(asctime)s tailban[%(process)d]: %(levelname)s %(name)s: %(message)s"
    elif target in ("syslog", "SYSLOG"):
        from logging import handlers  # here: it brings pickle and queue, of no use to stderr

        handler = handlers.SysLogHandler(
            address="/dev/log", facility=handlers.SysLogHandler.LOG_DAEMON)
        fmt = "tailban[%(process)d]: %(levelname)s %(name)s: %(message)s"
    else:
        from logging import handlers

        handler = handlers.WatchedFileHandler(target, encoding="utf-8")
        fmt = "%(asctime)s tailban[%(process)d]: %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Libraries' debug chatter (one line per inotify event) would drown our own log.
    for noisy in ("watchdog", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_foreground(config: Config, *, from_start: bool = False) -> int:
    """``tailban run``: the daemon in this process until SIGTERM/SIGINT or ``stop``."""
    daemon = Daemon(config, from_start=from_start)
    try:
        asyncio.run(_run(daemon))
    except RuntimeError as exc:  # e.g. another daemon on the socket
        logging.getLogger("tailban").error("%s", exc)
        return 1
    except FirewallError as exc:
        logging.getLogger("tailban").error("cannot set up the firewall, not started: %s", exc)
        return 1
    return 0


async def _run(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    for delay in STARTUP_TRIMS:
        loop.call_later(delay, release_free_memory)
    await daemon.run()


def daemonise(config: Config, *, from_start: bool = False) -> None:
    """``tailban start`` for hosts without systemd: python-daemon does the classic steps.

    Called in a child process; never returns to the CLI.
    """
    import daemon as python_daemon
    import daemon.pidfile as pidfile

    settings = config.daemon
    os.makedirs(os.path.dirname(settings.pidfile) or "/", mode=0o750, exist_ok=True)
    target = settings.logtarget
    if target.lower() in ("stderr", "journal"):
        target = "syslog" if os.path.exists("/dev/log") else "/var/log/tailban.log"
    context = python_daemon.DaemonContext(
        working_directory="/",
        umask=0o027,
        pidfile=pidfile.TimeoutPIDLockFile(settings.pidfile, acquire_timeout=1),
        detach_process=True,
    )
    with context:
        setup_logging(target, settings.loglevel)
        code = run_foreground(config, from_start=from_start)
    os._exit(code)
