"""Non-blocking follower of one growing log file that survives rotation and restarts.

The follower owns no thread and no watcher: the daemon calls :meth:`FileFollower.read`
whenever the directory watcher reports a change (and on a timer, for filesystems that
report nothing). Each call hands out every new *complete* line exactly once, as a few
large chunks, so the hot path does no per-line Python work. Lines are never lost or
duplicated across logrotate's rename+create, copytruncate and delete+recreate, nor
across a daemon restart, as long as the daemon persists :attr:`FileFollower.position`.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass
from types import TracebackType

try:  # CPython's own SHA-1: hashlib would map OpenSSL's libcrypto (~3.7 MiB of RSS)
    from _sha1 import sha1 as _sha1  # type: ignore[import-not-found]
except ImportError:  # another Python: hashlib's
    from hashlib import sha1 as _sha1

__all__ = ["CHUNK_BYTES", "FINGERPRINT_BYTES", "FileFollower", "Position"]

#: How much of the first line identifies a file; a longer first line is cut here.
FINGERPRINT_BYTES = 256
#: What the daemon reads and matches in one turn of its loop. A storm's chunk lives in
#: memory as its lines' failures until the round is stored, and a control command that
#: arrives meanwhile waits for it. Against 1 MiB, 128 KiB (~1,400 lines) ends the
#: 10,000-address burst 4-5 MiB lower and sends its first bans sooner; ``status`` and
#: ``unban`` answer within ~0.3 s at worst during it (64 KiB: ~0.15 s, but the burst
#: takes ~15% longer: twice the SQLite and nft transactions). bench/storm_control.py.
CHUNK_BYTES = 128 << 10

# Rotated copies we cannot read as plain text, never candidates for recovery.
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".z", ".zip")
# Bound the directory scan for rotated siblings (dated names accumulate).
_MAX_SIBLINGS = 64
# Bound the identity changes followed within one read() call during a rotation storm.
_MAX_SWITCHES = 8


@dataclass(frozen=True, slots=True)
class Position:
    """Where a follow stopped, as persisted by the daemon between runs.

    ``dev``/``ino`` find the file again even after it was rotated to a sibling name;
    ``fingerprint`` (hex sha1 of the first line, at most 256 bytes including the
    newline, ``""`` while there is no complete first line) tells a truncated or
    replaced file (or a reused inode) from the one we were reading.
    """

    path: str
    dev: int
    ino: int
    offset: int
    fingerprint: str


class _Cursor:
    """One open file and how far into it we have handed out complete lines."""

    __slots__ = ("dev", "fd", "fingerprint", "idle_since", "ino", "offset", "skip_to")

    def __init__(self, fd: int, st: os.stat_result, offset: int, fingerprint: str) -> None:
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        # Just after the last complete line handed out (or dropped as too long).
        self.offset = offset
        # While dropping an over-long line: how far it has been scanned without a newline.
        self.skip_to: int | None = None
        self.fingerprint = fingerprint
        self.idle_since = 0.0

    def position(self, path: str) -> Position:
        return Position(path, self.dev, self.ino, self.offset, self.fingerprint)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only without ever blocking (a FIFO would block a plain open)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _fingerprint(fd: int) -> str:
    """Identify a file by its first line, so truncation and inode reuse are noticed."""
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        head = head[: nl + 1]
    elif len(head) < FINGERPRINT_BYTES:
        return ""
    digest: str = _sha1(head).hexdigest()  # identifies the file's first bytes, not security
    return digest


class FileFollower:
    """Follow ``path`` across rotations, handing out complete lines exactly once.

    A ``position`` saved for another path is ignored (the follow starts as a new one).
    Not thread-safe: one caller (the daemon's loop) drives it. After a rename or a
    delete, the old file stays open for :attr:`retire_grace` seconds and is drained on
    every call, because writers such as rsyslog keep appending to it until they are
    told to reopen; its late lines come out before the new file's lines of that call.
    """

    #: Seconds an old (rotated away) file is still drained after it last grew.
    retire_grace: float = 30.0
    #: At most this many old files are kept open; the oldest is closed first.
    max_retired: int = 4

    def __init__(
        self,
        path: str,
        position: Position | None = None,
        *,
        from_start: bool = False,
        chunk_size: int = CHUNK_BYTES,
        max_line: int = 65536,
        read_budget: int | None = None,
    ) -> None:
        if chunk_size <= 0 or max_line <= 0:
            raise ValueError("chunk_size and max_line must be positive")
        self.path = os.fspath(path)
        #: Last error opening/reading the file, ``None`` after a clean call.
        self.error: str | None = None
        #: Lines longer than ``max_line`` that were dropped while still unterminated.
        self.dropped_long_lines = 0
        #: Times the path was found to name another file (rename, delete, restart).
        self.rotations = 0
        #: Times the followed file was found truncated or replaced in place.
        self.truncations = 0
        self._max_line = max_line
        # One read always covers a whole max_line line, so a line never straddles reads
        # unless it is over-long.
        self._window = max(chunk_size, max_line + 1)
        # Bytes one read hands out at most (a whole chunk more at worst), so a backlog of
        # gigabytes is read as it is processed, not into memory at once.
        self._budget = read_budget if read_budget and read_budget > 0 else 16 * self._window
        self._left = 0
        #: The last read stopped at its budget: call read again without waiting.
        self.more = False
        self._dir = os.path.dirname(self.path) or "."
        self._base = os.path.basename(self.path)
        self._cur: _Cursor | None = None
        self._retired: list[_Cursor] = []
        self._closed = False
        # Reported by `position` while no file is open, so persisting never forgets it.
        self._last: Position | None = (
            position if position is not None and position.path == self.path else None
        )
        # Only a file that already exists when a brand-new follow starts is old history.
        self._open_at_end = False
        # A saved position not yet applied (its file could not be opened so far).
        self._resume: Position | None = None
        try:
            self._start(self._last, from_start)
        except OSError as exc:
            self._record(exc)

    # ------------------------------------------------------------------ public API

    def read(self) -> list[bytes]:
        """Return every new complete line since the last call, in chunks ending in b"\\n".

        Never blocks and never raises for a missing or unreadable file: the problem is
        kept in :attr:`error` and the call returns what it could read (often ``[]``).
        """
        return self._read(final=False)

    def read_final(self) -> list[bytes]:
        """Like :meth:`read`, but also hand out an unterminated last line (with a newline
        appended); offline replay uses it at EOF, where no writer will finish the line."""
        return self._read(final=True)

    @property
    def position(self) -> Position | None:
        """Where to resume after a restart; ``None`` if no file was ever followed."""
        if self._cur is not None:
            return self._cur.position(self.path)
        if self._retired:
            # The new file could not be opened yet: resuming from the old one (found
            # again by inode among the siblings) then switching is still exact.
            return self._retired[-1].position(self.path)
        return self._last

    def close(self) -> None:
        """Release the file descriptors; :attr:`position` stays valid afterwards."""
        if self._closed:
            return
        self._last = self.position
        self._closed = True
        for cur in [*self._retired, *([self._cur] if self._cur else [])]:
            cur.close()
        self._retired.clear()
        self._cur = None

    def __enter__(self) -> FileFollower:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ start-up

    def _start(self, saved: Position | None, from_start: bool) -> None:
        if saved is not None:
            self._resume = saved
            self._resume_saved()
            return
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                return  # a directory or device in its place: a real file later is new
        except (FileNotFoundError, NotADirectoryError):
            return  # not created yet: it will be read from 0 once it appears
        except OSError:
            pass  # there but unreachable for now: still old history once it can be read
        self._open_at_end = not from_start
        self._open_path()

    def _resume_saved(self) -> _Cursor | None:
        """Open the saved file, or the path from 0 when the saved file is gone.

        An error (e.g. permissions) leaves the saved position pending for the next call.
        """
        assert self._resume is not None
        cur = self._find_saved(self._resume)
        self._resume = None
        if cur is None:
            # The saved file is gone: whatever the path holds now is new to us.
            return self._open_path()
        self._cur = cur
        return cur

    def _find_saved(self, saved: Position) -> _Cursor | None:
        """Reopen the file the saved position refers to, wherever rotation put it."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (saved.dev, saved.ino):
            fd, st = _open_regular(self.path)
            # A changed fingerprint or a short file is caught by the first read(),
            # which also recovers the lines from a copytruncate copy.
            return _Cursor(fd, st, saved.offset, saved.fingerprint)
        for name in self._sibling_names():
            cand = os.path.join(self._dir, name)
            try:
                cst = os.stat(cand)
                if (cst.st_dev, cst.st_ino) != (saved.dev, saved.ino):
                    continue
                fd, cst = _open_regular(cand)
            except OSError:
                continue
            try:
                # Guard against a reused inode: it must still be the same content.
                if cst.st_size >= saved.offset and _fingerprint(fd) == saved.fingerprint:
                    # read() sees that the path names another file, drains this one from
                    # the saved offset and then switches to the path from 0.
                    return _Cursor(fd, cst, saved.offset, saved.fingerprint)
            except OSError:
                pass
            os.close(fd)
        return None

    def _sibling_names(self) -> list[str]:
        """Names in the same directory that look like rotations of our file, likeliest first."""
        try:
            entries = list(os.scandir(self._dir))
        except OSError:
            return []
        first = {self._base + ".1": 0, self._base + ".0": 1}
        found: list[tuple[int, float, str]] = []
        for entry in entries:
            name = entry.name
            if name == self._base or not name.startswith(self._base):
                continue
            if name.lower().endswith(_COMPRESSED_SUFFIXES):
                continue
            try:
                if not entry.is_file():
                    continue
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            found.append((first.get(name, 2), -mtime, name))
        found.sort()
        return [name for _, _, name in found[:_MAX_SIBLINGS]]

    # ------------------------------------------------------------------ reading

    def _record(self, exc: OSError) -> None:
        self.error = f"{self.path}: {exc.strerror or exc}"

    def _read(self, final: bool) -> list[bytes]:
        out: list[bytes] = []
        self.more = False
        if self._closed:
            return out
        self.error = None
        self._left = self._budget
        try:
            self._drain_retired(out, final)
            self._follow(out, final)
        except OSError as exc:
            # Whatever was read before the failure has been consumed: hand it out.
            self._record(exc)
        return out

    def _open_path(self) -> _Cursor | None:
        try:
            fd, st = _open_regular(self.path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            self._record(exc)
            return None
        cur = _Cursor(fd, st, 0, "")
        try:
            if self._open_at_end:
                self._seek_end(cur, st.st_size)
                self._open_at_end = False
            cur.fingerprint = _fingerprint(fd)
        except BaseException:
            cur.close()
            raise
        self._cur = cur
        return cur

    def _seek_end(self, cur: _Cursor, size: int) -> None:
        """Start after the last complete line, so a line being written is not cut."""
        if size == 0:
            return
        tail = os.pread(cur.fd, min(size, self._max_line + 1), max(0, size - self._max_line - 1))
        base = size - len(tail)
        nl = tail.rfind(b"\n")
        if nl >= 0:
            cur.offset = base + nl + 1
        elif size > self._max_line:
            cur.offset, cur.skip_to = base, size  # inside an over-long line: skip it
        # else: the whole file is one unfinished line; hand it out once it is complete.

    def _follow(self, out: list[bytes], final: bool) -> None:
        for _ in range(_MAX_SWITCHES):
            cur = self._cur
            if cur is None:
                cur = self._resume_saved() if self._resume is not None else self._open_path()
                if cur is None:
                    return  # missing: wait for it to (re)appear
            try:
                st: os.stat_result | None = os.stat(self.path)
            except (FileNotFoundError, NotADirectoryError):
                st = None  # deleted or renamed away, not recreated yet: keep draining
            if st is not None and (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
                # Rename+create or delete+recreate: finish the old file, then the new
                # one from 0. The old fd stays open in case its writer is still on it.
                self._drain(cur, out, final)
                self._retire(cur)
                self.rotations += 1
                continue
            self._check_replaced(cur, out, final)
            self._drain_verified(cur, out, final)
            return

    def _retire(self, cur: _Cursor) -> None:
        self._cur = None
        cur.idle_since = time.monotonic()
        self._retired.append(cur)
        while len(self._retired) > self.max_retired:
            self._retired.pop(0).close()

    def _drain_retired(self, out: list[bytes], final: bool) -> None:
        if not self._retired:
            return
        now = time.monotonic()
        keep: list[_Cursor] = []
        for cur in self._retired:
            before = (cur.offset, cur.skip_to)
            try:
                self._drain(cur, out, final)
            except OSError:
                cur.close()
                continue
            if (cur.offset, cur.skip_to) != before:
                cur.idle_since = now
            # (one the budget kept from reading is not idle: it is waited for)
            if final or (now - cur.idle_since > self.retire_grace and not self.more):
                cur.close()
            else:
                keep.append(cur)
        self._retired = keep

    def _check_replaced(self, cur: _Cursor, out: list[bytes], final: bool) -> None:
        """Notice copytruncate (or any in-place truncation/replacement) before reading."""
        size = os.fstat(cur.fd).st_size
        old_fp = cur.fingerprint
        if old_fp == "":
            if size >= cur.offset:
                cur.fingerprint = _fingerprint(cur.fd)  # the first line may be complete now
                return
        elif size >= cur.offset and _fingerprint(cur.fd) == old_fp:
            return
        # Truncated. Lines written after our last read but before the truncation live in
        # the copy logrotate just made: hand those out first, then the file from 0.
        self.truncations += 1
        self._recover_from_copy(old_fp, cur.offset, out, final)
        cur.offset, cur.skip_to = 0, None
        cur.fingerprint = _fingerprint(cur.fd)

    def _recover_from_copy(self, fp: str, offset: int, out: list[bytes], final: bool) -> None:
        if not fp:
            return  # nothing identifies the old content
        for name in self._sibling_names():
            try:
                fd, st = _open_regular(os.path.join(self._dir, name))
            except OSError:
                continue
            try:
                if st.st_size > offset and _fingerprint(fd) == fp:
                    # all of it: the copy is not opened again
                    self._drain(_Cursor(fd, st, offset, fp), out, final, budgeted=False)
                    return
            except OSError:
                continue
            finally:
                os.close(fd)

    def _drain_verified(self, cur: _Cursor, out: list[bytes], final: bool) -> None:
        """Drain, then make sure the file was not truncated under us while we read."""
        snapshot = (cur.offset, cur.skip_to, self.dropped_long_lines, self._left, self.more)
        got: list[bytes] = []
        self._drain(cur, got, final)
        if got and cur.fingerprint and _fingerprint(cur.fd) != cur.fingerprint:
            # What we just read may be the new content at old offsets: forget it and
            # redo the read with the truncation handled.
            cur.offset, cur.skip_to, self.dropped_long_lines, self._left, self.more = snapshot
            self._check_replaced(cur, out, final)
            self._drain(cur, out, final)
            return
        out.extend(got)
        if not cur.fingerprint:
            cur.fingerprint = _fingerprint(cur.fd)

    def _drain(self, cur: _Cursor, out: list[bytes], final: bool,
               budgeted: bool = True) -> None:
        """Append whole-line chunks from ``cur`` up to EOF, or until the read's budget is
        spent (then :attr:`more` is set); keep an unfinished line unread."""
        fd, window, max_line = cur.fd, self._window, self._max_line
        while True:
            size = os.fstat(fd).st_size
            if cur.skip_to is not None:
                # Dropping an over-long line: look for its end without keeping anything.
                if cur.skip_to >= size:
                    if final and cur.skip_to > cur.offset:
                        cur.offset, cur.skip_to = cur.skip_to, None
                        self.dropped_long_lines += 1
                    return
                data = os.pread(fd, min(window, size - cur.skip_to), cur.skip_to)
                if not data:
                    return
                nl = data.find(b"\n")
                if nl < 0:
                    cur.skip_to += len(data)
                    continue
                cur.offset, cur.skip_to = cur.skip_to + nl + 1, None
                self.dropped_long_lines += 1
                continue
            avail = size - cur.offset
            if avail <= 0:
                return
            if budgeted and self._left <= 0:
                self.more = True
                return
            data = os.pread(fd, min(window, avail), cur.offset)
            if not data:
                return
            nl = data.rfind(b"\n")
            if nl < 0:
                if len(data) > max_line:
                    cur.skip_to = cur.offset + len(data)
                    continue
                if final:
                    out.append(data + b"\n")
                    cur.offset += len(data)
                return  # an unfinished line: re-read once its newline arrives
            end = nl + 1
            out.append(data if end == len(data) else data[:end])
            cur.offset += end
            self._left -= end
            if len(data) < window and len(data) - end <= max_line and not final:
                return  # read all there was; the rest is an unfinished line
