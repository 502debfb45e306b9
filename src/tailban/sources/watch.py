"""Tell the daemon *when* to call its followers' ``read()``: watch the logs' directories.

Directories rather than files are watched because rotation replaces the file: a watch
on the file itself would go quiet on the old inode. The watcher only says which
directory changed; the caller coalesces these calls and re-reads its followers there.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

__all__ = ["DirectoryWatcher", "expand"]

log = logging.getLogger(__name__)

# Only content and name changes matter; open/close-without-write events would fire on
# our own reads and loop forever.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    DirModifiedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
]
_EVENT_TYPES = frozenset({"created", "modified", "moved", "deleted"})
# Re-arming looks again until the set of directories is stable, this many times at most.
_MAX_REARM_ROUNDS = 5
_MAX_NAMES_CACHED = 4096


def expand(pattern: str) -> list[str]:
    """Files a configured path stands for, sorted.

    A glob gives its current matches; a plain path is returned as it is even if it
    does not exist yet, because a follower must wait for it to be created.
    """
    if not glob.has_magic(pattern):
        return [pattern]
    return sorted(glob.glob(pattern))


def _identity(directory: str) -> tuple[int, int] | None:
    """(dev, ino) of a directory, so a directory deleted and recreated is re-watched."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _nearest_existing(directory: str) -> str:
    while not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def _static_prefix(directory: str) -> str:
    """The leading part of a glob directory that has no wildcard in it."""
    head, parts = directory, []
    while glob.has_magic(head):
        head, tail = os.path.split(head)
        parts.append(tail)
    return head


def _notify(on_change: Callable[[str], None], directory: str) -> None:
    """Call the caller's callback; its bug must not kill a watcher thread."""
    try:
        on_change(directory)
    except Exception:
        log.exception("directory change callback failed for %s", directory)


def _followed_name(pattern: str, directory: str, name: str) -> bool:
    """Whether ``name`` in ``directory`` is the followed path (or glob) ``pattern``, or one
    of its rotated names (``auth.log.1``, ``auth.log-20261123``)."""
    folder, base = os.path.split(os.path.abspath(pattern))
    if folder != directory and not (glob.has_magic(folder)
                                    and fnmatch.fnmatchcase(directory, folder)):
        return False
    if glob.has_magic(base):
        return fnmatch.fnmatchcase(name, base) or fnmatch.fnmatchcase(name, base + "[.-]*")
    return name.startswith(base)


class _Handler(FileSystemEventHandler):
    """Events of one watched directory: report it, and nudge re-arming on dir changes."""

    def __init__(
        self,
        directory: str,
        target: bool,
        on_change: Callable[[str], None],
        poke: Callable[[], None],
        followed: Callable[[str, str], bool] = lambda directory, name: True,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.target = target
        self._on_change = on_change
        self._poke = poke
        self._followed = followed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _EVENT_TYPES:
            return
        if self.target and any(
                self._followed(self.directory, os.path.basename(os.fsdecode(path)))
                for path in (event.src_path, getattr(event, "dest_path", "")) if path):
            # Only the followed files (and their rotated names): /var/log also holds
            # syslog, the journal and tailban's own database, written all the time.
            _notify(self._on_change, self.directory)
        if event.is_directory:
            # A directory appeared, vanished or moved (or this one's entries changed):
            # a missing log directory may exist now, or this watch may have died.
            self._poke()


@dataclass(slots=True)
class _Watch:
    directory: str
    target: bool
    identity: tuple[int, int]
    observer: BaseObserver
    watch: ObservedWatch


class DirectoryWatcher:
    """Call ``on_change(directory)`` when anything in a followed file's directory changes.

    ``on_change`` runs on a watcher thread (watchdog's dispatcher, or this class's
    re-arming thread when a directory that was missing appears): it should only hand
    the directory over to the caller's loop, and must not call back into the watcher.

    inotify is used when possible; where it fails with ``OSError`` (instance or watch
    limits) the directory is polled every ``poll_interval`` seconds instead, with one
    warning logged. A followed directory that does not exist yet is replaced by its
    nearest existing ancestor until it appears. Every ``recheck_interval`` seconds the
    watches are also checked against the filesystem, catching what no event showed.
    """

    def __init__(
        self,
        on_change: Callable[[str], None],
        *,
        force_polling: bool = False,
        poll_interval: float = 1.0,
        recheck_interval: float = 10.0,
    ) -> None:
        self._on_change = on_change
        self._force_polling = force_polling
        self._poll_interval = poll_interval
        self._recheck_interval = recheck_interval
        self._lock = threading.RLock()
        self._patterns: dict[str, None] = {}  # insertion-ordered set
        self._names: dict[tuple[str, str], bool] = {}  # (directory, name) -> followed
        self._watched: dict[str, _Watch] = {}
        self._native: BaseObserver | None = None
        self._polling: BaseObserver | None = None
        self._running = False
        self._warned = False
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._armer: threading.Thread | None = None

    # ------------------------------------------------------------------ public API

    def watch(self, path_or_glob: str) -> None:
        """Watch the directory (or, for a glob, the directories) of a followed path."""
        with self._lock:
            self._patterns[path_or_glob] = None
            self._names = {}
            if self._running:
                self._rearm()

    def unwatch(self, path_or_glob: str) -> None:
        """Stop watching for a path given to :meth:`watch`; unknown paths are ignored."""
        with self._lock:
            if path_or_glob not in self._patterns:
                return
            del self._patterns[path_or_glob]
            self._names = {}
            if self._running:
                self._rearm()

    @property
    def directories(self) -> dict[str, bool]:
        """Directories watched now, mapped to whether they are followed (``True``) or
        only stand in for a missing one (``False``); for diagnostics and tests."""
        with self._lock:
            return {d: w.target for d, w in self._watched.items()}

    @property
    def polling(self) -> bool:
        """Whether any directory is polled instead of watched natively."""
        with self._lock:
            return any(w.observer is self._polling for w in self._watched.values())

    def start(self) -> None:
        """Start the observer threads and watch every directory registered so far."""
        with self._lock:
            if self._running:
                return
            self._running = True
            self._stopping.clear()
            if not self._force_polling:
                try:
                    native = Observer()
                    native.start()
                except OSError as exc:
                    self._warn("*", exc)
                else:
                    self._native = native
            self._rearm()
        self._armer = threading.Thread(target=self._arm_loop, name="tailban-watch", daemon=True)
        self._armer.start()

    def stop(self) -> None:
        """Stop all threads; the watcher can be started again."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._stopping.set()
            self._poked.set()
        if self._armer is not None:
            self._armer.join()
            self._armer = None
        with self._lock:
            self._watched.clear()
            for observer in (self._native, self._polling):
                if observer is not None:
                    observer.stop()
                    observer.join()
            self._native = self._polling = None

    def __enter__(self) -> DirectoryWatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _followed(self, directory: str, name: str) -> bool:
        """Whether an event on ``name`` in ``directory`` concerns a followed file (called on
        watcher threads; answers are kept, the set of names in a log directory is small)."""
        names = self._names
        key = (directory, name)
        known = names.get(key)
        if known is None:
            known = any(_followed_name(p, directory, name) for p in list(self._patterns))
            if len(names) >= _MAX_NAMES_CACHED:
                names.clear()
            names[key] = known
        return known

    # ------------------------------------------------------------------ arming

    def _arm_loop(self) -> None:
        """Re-arm on directory events (a missing directory appeared) and periodically."""
        while not self._stopping.is_set():
            self._poked.wait(self._recheck_interval)
            self._poked.clear()
            if self._stopping.is_set():
                return
            try:
                with self._lock:
                    appeared = self._rearm() if self._running else []
            except Exception:  # keep watching whatever happens to one directory
                log.exception("re-arming directory watches failed")
                continue
            # Files may have been written before the watch existed: have them read.
            for directory in appeared:
                _notify(self._on_change, directory)

    def _desired(self) -> dict[str, bool]:
        """Directories to watch: followed ones (True), stand-ins for missing ones (False)."""
        want: dict[str, bool] = {}
        for pattern in self._patterns:
            directory = os.path.dirname(os.path.abspath(pattern))
            if glob.has_magic(directory):
                for match in glob.glob(directory):
                    if os.path.isdir(match):
                        want[match] = True
                # New matching directories are created in the fixed part of the glob.
                want.setdefault(_nearest_existing(_static_prefix(directory)), False)
            elif os.path.isdir(directory):
                want[directory] = True
            else:
                want.setdefault(_nearest_existing(directory), False)
        return want

    def _rearm(self) -> list[str]:
        """Make the scheduled watches match the filesystem; return followed dirs added."""
        added: list[str] = []
        for _ in range(_MAX_REARM_ROUNDS):
            want = self._desired()
            for directory, w in list(self._watched.items()):
                if want.get(directory) != w.target or _identity(directory) != w.identity:
                    self._unschedule(w)
                    del self._watched[directory]
            missing = {d: t for d, t in want.items() if d not in self._watched}
            if not missing:
                break
            for directory, target in missing.items():
                if self._schedule(directory, target) and target:
                    added.append(directory)
        return added

    def _schedule(self, directory: str, target: bool) -> bool:
        identity = _identity(directory)
        if identity is None:
            return False  # vanished meanwhile; its parent's event re-arms
        handler = _Handler(directory, target, self._on_change, self._poked.set, self._followed)
        if self._native is not None:
            try:
                watch = self._native.schedule(
                    handler, directory, recursive=False, event_filter=_EVENT_FILTER
                )
            except OSError as exc:
                self._warn(directory, exc)
            else:
                self._watched[directory] = _Watch(directory, target, identity, self._native, watch)
                return True
        if self._polling is None:
            polling = PollingObserver(timeout=self._poll_interval)
            polling.start()
            self._polling = polling
        try:
            watch = self._polling.schedule(
                handler, directory, recursive=False, event_filter=_EVENT_FILTER
            )
        except OSError as exc:
            log.debug("cannot watch %s: %s", directory, exc)
            return False
        self._watched[directory] = _Watch(directory, target, identity, self._polling, watch)
        return True

    @staticmethod
    def _unschedule(w: _Watch) -> None:
        with contextlib.suppress(KeyError, OSError):
            w.observer.unschedule(w.watch)

    def _warn(self, directory: str, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "inotify unusable for %s (%s); polling every %.1f s instead",
                directory,
                exc,
                self._poll_interval,
            )
