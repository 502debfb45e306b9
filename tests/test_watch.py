"""DirectoryWatcher against a real directory: events arrive within a bounded wait."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tailban.sources.watch import DirectoryWatcher, expand

WAIT = 5.0


class Recorder:
    """Collects on_change calls; lets a test wait for the next one."""

    def __init__(self) -> None:
        self.dirs: list[str] = []
        self.event = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, directory: str) -> None:
        with self.lock:
            self.dirs.append(directory)
        self.event.set()

    def settle(self) -> None:
        """Let stragglers of the previous action arrive, so they cannot pass the next one."""
        while self.event.wait(0.1):
            self.event.clear()
        with self.lock:
            self.dirs.clear()

    def expect(self, directory: Path, action: Callable[[], object]) -> None:
        self.settle()
        action()
        deadline_ok = self.event.wait(WAIT)
        assert deadline_ok, "no change reported"
        with self.lock:
            assert str(directory) in self.dirs


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(params=[False, True], ids=["inotify", "polling"])
def watcher(request: pytest.FixtureRequest, recorder: Recorder) -> Iterator[DirectoryWatcher]:
    w = DirectoryWatcher(recorder, force_polling=request.param, poll_interval=0.1)
    yield w
    w.stop()


def test_create_modify_move_delete(
    tmp_path: Path, watcher: DirectoryWatcher, recorder: Recorder
) -> None:
    path = tmp_path / "auth.log"
    watcher.watch(str(path))
    watcher.start()
    assert watcher.directories == {str(tmp_path): True}
    recorder.expect(tmp_path, lambda: path.write_bytes(b"one\n"))
    recorder.expect(tmp_path, lambda: _append(path, b"two\n"))
    recorder.expect(tmp_path, lambda: os.replace(path, tmp_path / "auth.log.1"))
    recorder.expect(tmp_path, lambda: (tmp_path / "auth.log.1").unlink())


def test_forced_polling_is_reported(tmp_path: Path, recorder: Recorder) -> None:
    with DirectoryWatcher(recorder, force_polling=True, poll_interval=0.1) as w:
        w.watch(str(tmp_path / "x.log"))
        assert w.polling


def test_missing_directory_is_watched_once_it_appears(
    tmp_path: Path, watcher: DirectoryWatcher, recorder: Recorder
) -> None:
    logdir = tmp_path / "a" / "b"
    watcher.start()
    watcher.watch(str(logdir / "auth.log"))
    assert watcher.directories == {str(tmp_path): False}

    def create_all() -> None:
        os.makedirs(logdir)
        (logdir / "auth.log").write_bytes(b"")

    # The file is created right after its directories: reported once they are watched.
    recorder.expect(logdir, create_all)
    _wait_for(lambda: watcher.directories == {str(logdir): True})
    recorder.expect(logdir, lambda: (logdir / "auth.log").write_bytes(b"x\n"))


def test_directory_recreated_is_rewatched(
    tmp_path: Path, watcher: DirectoryWatcher, recorder: Recorder
) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    watcher.watch(str(logdir / "auth.log"))
    watcher.start()
    logdir.rmdir()
    _wait_for(lambda: watcher.directories == {str(tmp_path): False})
    recorder.expect(logdir, lambda: logdir.mkdir())
    recorder.expect(logdir, lambda: (logdir / "auth.log").write_bytes(b"x\n"))


def test_glob_and_unwatch(tmp_path: Path, watcher: DirectoryWatcher, recorder: Recorder) -> None:
    (tmp_path / "one").mkdir()
    pattern = str(tmp_path / "*" / "auth.log")
    watcher.watch(pattern)
    watcher.start()
    assert watcher.directories == {str(tmp_path / "one"): True, str(tmp_path): False}
    recorder.expect(tmp_path / "two", lambda: (tmp_path / "two").mkdir())
    watcher.unwatch(pattern)
    assert watcher.directories == {}


def test_expand(tmp_path: Path) -> None:
    for name in ("b.log", "a.log", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert expand(str(tmp_path / "*.log")) == [str(tmp_path / "a.log"), str(tmp_path / "b.log")]
    missing = str(tmp_path / "not-yet.log")
    assert expand(missing) == [missing]


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def _wait_for(condition: Callable[[], bool]) -> None:
    """Poll a condition the watcher reaches asynchronously, failing after WAIT seconds."""
    done = threading.Event()
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        done.wait(0.02)
    assert condition()


def test_only_the_followed_files_and_their_rotated_names_are_reported(
    tmp_path: Path, watcher: DirectoryWatcher, recorder: Recorder
) -> None:
    # /var/log also holds syslog and tailban's own database: their writes wake nothing
    watcher.watch(str(tmp_path / "auth.log"))
    watcher.watch(str(tmp_path / "mail*.log"))
    watcher.start()
    recorder.settle()
    for name in ("syslog", "tailban.sqlite3-wal", "kern.log", "xauth.log"):
        _append(tmp_path / name, b"x\n")
    assert not recorder.event.wait(1.0), recorder.dirs
    recorder.expect(tmp_path, lambda: _append(tmp_path / "auth.log", b"one\n"))
    recorder.expect(tmp_path, lambda: _append(tmp_path / "auth.log.1", b"late\n"))
    recorder.expect(tmp_path, lambda: _append(tmp_path / "mail-in.log", b"m\n"))
    recorder.expect(tmp_path, lambda: _append(tmp_path / "mail-in.log-20261123", b"m\n"))
    recorder.expect(tmp_path, lambda: os.replace(tmp_path / "syslog", tmp_path / "auth.log"))
