"""Which files are followed, for which jails, and their followers' positions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tailban.config.load import expand_logpaths
from tailban.config.model import JailConfig
from tailban.sources.follower import FileFollower, Position

log = logging.getLogger("tailban.sources")


@dataclass(slots=True)
class FollowedFile:
    path: str
    follower: FileFollower
    jails: list[str] = field(default_factory=list)
    bytes_read: int = 0


class LogSet:
    """Followers keyed by path; rebuilt on reload without losing a file's position."""

    def __init__(self, positions: dict[str, Position], from_start: bool) -> None:
        self.positions = positions
        self.from_start = from_start
        self.files: dict[str, FollowedFile] = {}
        self.patterns: dict[str, list[str]] = {}  # pattern -> jails, for re-globbing

    def configure(self, jails: list[JailConfig]) -> None:
        wanted: dict[str, list[str]] = {}
        self.patterns = {}
        for jail in jails:
            for pattern in jail.logpaths:
                self.patterns.setdefault(pattern, []).append(jail.name)
                for path in expand_logpaths((pattern,)):
                    wanted.setdefault(path, []).append(jail.name)
        for path in list(self.files):
            if path not in wanted:
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
