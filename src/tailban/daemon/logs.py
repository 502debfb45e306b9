"""Which files (and journals) are followed, for which jails, and their positions."""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tailban.config.load import expand_logpaths
from tailban.config.model import JailConfig
from tailban.sources.follower import FileFollower, Position
from tailban.sources.journal import SYSTEM_JOURNALS, JournalSource, find_journal, journal_key

log = logging.getLogger("tailban.sources")


@dataclass(slots=True)
class FollowedFile:
    path: str  # a log file, or journal:<jail> for a jail reading the journal
    follower: FileFollower | JournalSource
    jails: list[str] = field(default_factory=list)
    bytes_read: int = 0
    # chunks read but not processed yet: the daemon takes one per loop turn, so the
    # control socket and the firewall transaction of earlier bans run in between
    pending: deque[bytes] = field(default_factory=deque)
    scheduled: bool = False


def choose_backend(jail: JailConfig,
                   journals: Sequence[str] = SYSTEM_JOURNALS) -> tuple[str, str]:
    """("systemd" | "file", why): ``auto`` reads the journal when none of the jail's log
    files exists, a journal does, and the jail knows what to match there (Debian 12
    without rsyslog has no auth.log)."""
    if jail.filter.name == "recidive" and not jail.logpaths:
        return "file", "recidive counts tailban's own bans"
    if jail.backend == "systemd":
        return "systemd", "backend = systemd"
    if jail.backend != "auto" or not jail.logpaths:
        return "file", f"backend = {jail.backend}"
    paths = expand_logpaths(jail.logpaths)
    if any(os.path.exists(path) for path in paths):
        return "file", "backend = auto: the log file exists"
    if not jail.journal.match:
        return "file", "backend = auto: no log file yet, and no journalmatch for this filter"
    found = find_journal(journals)
    if found is None:
        return "file", "backend = auto: no log file yet and no journal"
    return "systemd", (f"backend = auto: {' '.join(jail.logpaths)} does not exist and a "
                       f"journal does ({found})")


class LogSet:
    """Followers keyed by path; rebuilt on reload without losing a file's position.

    A jail reading the journal has one :class:`JournalSource` keyed ``journal:<jail>``;
    ``on_journal(key)`` is called on its reader thread when it has lines.
    """

    def __init__(self, positions: dict[str, Position], from_start: bool,
                 on_journal: Callable[[str], None] | None = None,
                 journals: Sequence[str] = SYSTEM_JOURNALS) -> None:
        self.positions = positions
        self.from_start = from_start
        self.files: dict[str, FollowedFile] = {}
        self.patterns: dict[str, list[str]] = {}  # pattern -> jails, for re-globbing
        self.backends: dict[str, tuple[str, str]] = {}  # jail -> (file | systemd, why)
        self._on_journal = on_journal
        self._journals = tuple(journals)

    def configure(self, jails: list[JailConfig]) -> None:
        wanted: dict[str, list[str]] = {}
        journals: dict[str, JailConfig] = {}
        self.patterns = {}
        for jail in jails:
            kind, why = choose_backend(jail, self._journals)
            if self.backends.get(jail.name) != (kind, why):
                log.info("%s reads %s (%s)", jail.name,
                         "the journal" if kind == "systemd" else "log files", why)
            self.backends[jail.name] = (kind, why)
            if kind == "systemd":
                journals[journal_key(jail.name)] = jail
                continue
            for pattern in jail.logpaths:
                self.patterns.setdefault(pattern, []).append(jail.name)
                for path in expand_logpaths((pattern,)):
                    wanted.setdefault(path, []).append(jail.name)
        for name in set(self.backends) - {jail.name for jail in jails}:
            del self.backends[name]
        for path in list(self.files):
            if path not in wanted and path not in journals:
                entry = self.files.pop(path)
                if entry.follower.position is not None:
                    self.positions[path] = entry.follower.position
                entry.follower.close()
        for path, names in wanted.items():
            existing = self.files.get(path)
            if existing is None:
                follower = FileFollower(path, self.positions.get(path),
                                        from_start=self.from_start)
                existing = self.files[path] = FollowedFile(path, follower)
                log.info("following %s for %s", path, ", ".join(names))
            existing.jails = list(dict.fromkeys(names))
        for key, jail in journals.items():
            self._configure_journal(key, jail)

    def _configure_journal(self, key: str, jail: JailConfig) -> None:
        options = jail.journal

        def make() -> JournalSource:
            return JournalSource(
                key, matches=options.match, files=options.files, directory=options.path,
                system=options.system, cursor=self._cursor(key), from_start=self.from_start,
                on_data=self._on_journal)

        existing = self.files.get(key)
        if existing is not None:
            current = existing.follower
            if isinstance(current, JournalSource) and current.settings == make().settings:
                existing.jails = [jail.name]
                return
            self._forget(key)  # what it reads changed: start again from its position
        source = make()
        source.start()
        self.files[key] = FollowedFile(key, source, [jail.name])
        log.info("following %s for %s", source.describe(), jail.name)

    def _cursor(self, key: str) -> str | None:
        saved = self.positions.get(key)
        return saved.fingerprint if saved is not None else None

    def _forget(self, key: str) -> None:
        entry = self.files.pop(key)
        entry.follower.close()
        if entry.follower.position is not None:
            self.positions[key] = entry.follower.position

    def stop_journals(self) -> None:
        """End the journalctl processes; lines they had read stay for a last ``read()``."""
        for entry in self.files.values():
            if isinstance(entry.follower, JournalSource):
                entry.follower.close()

    def rescan_globs(self) -> bool:
        """Pick up files that a logpath glob matches now; True when something was added."""
        added = False
        for pattern, names in self.patterns.items():
            for path in expand_logpaths((pattern,)):
                if path not in self.files:
                    follower = FileFollower(path, self.positions.get(path), from_start=True)
                    self.files[path] = FollowedFile(path, follower, list(names))
                    log.info("following new file %s for %s", path, ", ".join(names))
                    added = True
        return added

    def in_directory(self, directory: str) -> list[FollowedFile]:
        prefix = directory.rstrip("/") + "/"
        return [f for p, f in self.files.items() if p.startswith(prefix)
                and "/" not in p[len(prefix):]]

    def close(self) -> None:
        for entry in self.files.values():
            entry.follower.close()
