"""FileFollower against real files: every line exactly once, in order, across rotations."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import BinaryIO

import pytest

from tailban.sources.follower import FileFollower, Position

Rotate = Callable[[Path, BinaryIO], BinaryIO]


def line(n: int) -> bytes:
    return b"%07d sshd[42]: Failed password for root from 192.0.2.7 port 22\n" % n


def lines(start: int, stop: int) -> bytes:
    return b"".join(line(n) for n in range(start, stop))


def numbers(chunks: list[bytes]) -> list[int]:
    """The numbers in handed-out chunks, checking each chunk is a run of whole lines."""
    out: list[int] = []
    for chunk in chunks:
        assert chunk.endswith(b"\n"), chunk[-80:]
        out.extend(int(text.split(b" ", 1)[0]) for text in chunk.split(b"\n")[:-1])
    return out


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


# ---------------------------------------------------------------- rotations, as logrotate does


def rename_create(path: Path, f: BinaryIO) -> BinaryIO:
    f.close()
    os.replace(path, path.with_name(path.name + ".1"))
    return path.open("ab", buffering=0)


def copytruncate(path: Path, f: BinaryIO) -> BinaryIO:
    # The writer is paused (we are on its thread) while the copy is made and the file
    # truncated; it keeps its O_APPEND descriptor and goes on at offset 0.
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    os.truncate(path, 0)
    return f


def delete_recreate(path: Path, f: BinaryIO) -> BinaryIO:
    f.close()
    os.unlink(path)
    return path.open("ab", buffering=0)


def run_concurrently(
    tmp_path: Path,
    rotations: list[Rotate],
    *,
    per_generation: int = 600,
    split_writes: bool = False,
    chunk_size: int = 1024,
    read_budget: int = 1 << 30,
) -> FileFollower:
    """A writer thread appends numbered lines, rotating between generations, while this
    thread calls read() in a loop; every number must come out exactly once, in order."""
    path = tmp_path / "auth.log"
    path.write_bytes(b"")
    follower = FileFollower(str(path), from_start=True, chunk_size=chunk_size, max_line=512,
                            read_budget=read_budget)
    total = per_generation * (len(rotations) + 1)
    cond = threading.Condition()
    seen: list[int] = []
    failure: list[BaseException] = []

    def reader_reached(n: int) -> bool:
        return bool(seen) and seen[-1] >= n

    def writer() -> None:
        try:
            f: BinaryIO = path.open("ab", buffering=0)
            for gen in range(len(rotations) + 1):
                first = gen * per_generation
                middle = first + per_generation // 2
                for n in range(first, middle):
                    data = line(n)
                    if split_writes:
                        f.write(data[:20])
                        if n % 97 == 0:
                            time.sleep(0.001)  # let the reader see the half line
                        f.write(data[20:])
                    else:
                        f.write(data)
                # Rotations are far apart in real life: the reader has at least started on
                # this generation. The rest comes in a burst right before the rotation, so
                # the reader is almost always behind when the file is rotated.
                with cond:
                    assert cond.wait_for(partial(reader_reached, first), timeout=5)
                burst = lines(middle, first + per_generation)
                cut = len(burst) // 2 + 7 if split_writes else len(burst)
                f.write(burst[:cut])
                f.write(burst[cut:])
                if gen < len(rotations):
                    f = rotations[gen](path, f)
            f.close()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    crossings = 0
    deadline = time.monotonic() + 8
    try:
        while (not seen or seen[-1] < total - 1) and time.monotonic() < deadline:
            if failure:
                break
            got = numbers(follower.read())
            assert follower.error is None
            if got and got[0] // per_generation != got[-1] // per_generation:
                crossings += 1  # the old file's rest and the new file came in one call
            if got:
                with cond:
                    seen.extend(got)
                    cond.notify_all()
            # Pace like a daemon that has lines to match: the writer gets ahead of us.
            time.sleep(0.002 if got else 0.0002)
    finally:
        thread.join(10)
    assert not failure, failure
    assert seen == list(range(total))
    assert follower.read() == []
    # (a small read budget hands the old file's rest and the new file out in separate reads)
    assert crossings > 0 or read_budget < 1 << 20, "the reader was never behind at a rotation"
    return follower


def test_rename_create_concurrent(tmp_path: Path) -> None:
    f = run_concurrently(tmp_path, [rename_create] * 6)
    assert f.rotations == 6


def test_copytruncate_concurrent(tmp_path: Path) -> None:
    f = run_concurrently(tmp_path, [copytruncate] * 6)
    assert f.truncations == 6


def test_delete_recreate_concurrent(tmp_path: Path) -> None:
    f = run_concurrently(tmp_path, [delete_recreate] * 6)
    assert f.rotations == 6


def test_half_written_lines_concurrent(tmp_path: Path) -> None:
    f = run_concurrently(
        tmp_path, [rename_create, copytruncate, delete_recreate] * 2, split_writes=True
    )
    assert (f.rotations, f.truncations) == (4, 2)


def test_big_chunks_concurrent(tmp_path: Path) -> None:
    run_concurrently(tmp_path, [rename_create, copytruncate], chunk_size=1 << 20)


# ---------------------------------------------------------------- start-up and restart


def follow_and_stop(path: Path, upto: int) -> Position:
    """Run a follower over lines 0..upto-1 and return what the daemon would persist."""
    path.write_bytes(lines(0, upto))
    with FileFollower(str(path), from_start=True) as f:
        assert numbers(f.read()) == list(range(upto))
        pos = f.position
    assert pos is not None
    assert pos.offset == path.stat().st_size
    return pos


def test_restart_resumes_same_file(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    pos = follow_and_stop(path, 50)
    append(path, lines(50, 80))
    f = FileFollower(str(path), pos)
    assert numbers(f.read()) == list(range(50, 80))
    assert f.read() == []


@pytest.mark.parametrize("rotated_name", ["auth.log.1", "auth.log-20261123"])
def test_restart_after_rotation_while_down(tmp_path: Path, rotated_name: str) -> None:
    path = tmp_path / "auth.log"
    pos = follow_and_stop(path, 100)
    append(path, lines(100, 150))  # written while the daemon was down
    os.replace(path, tmp_path / rotated_name)
    path.write_bytes(lines(150, 200))
    f = FileFollower(str(path), pos)
    assert numbers(f.read()) == list(range(100, 200))
    assert f.read() == []
    new_pos = f.position
    assert new_pos is not None
    assert (new_pos.ino, new_pos.offset) == (path.stat().st_ino, path.stat().st_size)


def test_restart_after_rotation_before_new_file_exists(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    pos = follow_and_stop(path, 10)
    append(path, lines(10, 20))
    os.replace(path, tmp_path / "auth.log.1")
    f = FileFollower(str(path), pos)
    assert numbers(f.read()) == list(range(10, 20))
    path.write_bytes(lines(20, 25))
    assert numbers(f.read()) == list(range(20, 25))


def test_restart_file_replaced_in_place_reads_from_start(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    pos = follow_and_stop(path, 30)
    os.truncate(path, 0)  # same inode, other content
    append(path, lines(1000, 1040))
    assert path.stat().st_ino == pos.ino
    f = FileFollower(str(path), pos)
    assert numbers(f.read()) == list(range(1000, 1040))


def test_restart_after_copytruncate_while_down(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    pos = follow_and_stop(path, 30)
    append(path, lines(30, 40))
    shutil.copyfile(path, tmp_path / "auth.log.1")
    os.truncate(path, 0)
    append(path, lines(40, 45))
    f = FileFollower(str(path), pos)
    assert numbers(f.read()) == list(range(30, 45))
    assert f.read() == []


def test_restart_saved_file_gone_reads_new_file_from_start(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    pos = follow_and_stop(path, 10)
    os.replace(path, tmp_path / "elsewhere")
    path.write_bytes(lines(10, 12))
    assert numbers(FileFollower(str(path), pos).read()) == [10, 11]


def test_new_follow_starts_at_end(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(lines(0, 10) + line(10)[:15])  # a line is being written
    f = FileFollower(str(path))
    assert f.read() == []
    append(path, line(10)[15:] + line(11))
    assert numbers(f.read()) == [10, 11]


def test_from_start(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(lines(0, 10))
    assert numbers(FileFollower(str(path), from_start=True).read()) == list(range(10))


def test_missing_file_then_created_is_read_from_start(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    f = FileFollower(str(path))
    assert f.read() == []
    assert f.error is not None
    assert f.position is None
    path.write_bytes(lines(0, 5))
    assert numbers(f.read()) == list(range(5))
    assert f.error is None


def test_not_a_regular_file_is_an_error_not_an_exception(tmp_path: Path) -> None:
    f = FileFollower(str(tmp_path))
    assert f.read() == []
    assert f.error is not None


# ---------------------------------------------------------------- rotation, one step at a time


def test_deleted_and_not_recreated_keeps_waiting(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(lines(0, 3))
    f = FileFollower(str(path), from_start=True)
    assert numbers(f.read()) == [0, 1, 2]
    append(path, lines(3, 5))
    path.unlink()
    assert numbers(f.read()) == [3, 4]  # the deleted file is drained
    assert f.read() == []
    assert f.read() == []
    path.write_bytes(lines(5, 8))
    assert numbers(f.read()) == [5, 6, 7]


def test_late_writes_to_renamed_file_are_not_lost(tmp_path: Path) -> None:
    # rsyslog keeps writing to the renamed file until logrotate's postrotate HUP.
    path = tmp_path / "auth.log"
    path.write_bytes(lines(0, 2))
    f = FileFollower(str(path), from_start=True)
    assert numbers(f.read()) == [0, 1]
    old = path.open("ab")
    os.replace(path, tmp_path / "auth.log.1")
    path.write_bytes(line(100))
    assert numbers(f.read()) == [100]
    old.write(lines(2, 4))
    old.close()
    assert numbers(f.read()) == [2, 3]


def test_copytruncate_recovers_lines_from_the_copy(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(lines(0, 10))
    f = FileFollower(str(path), from_start=True)
    assert numbers(f.read()) == list(range(10))
    append(path, lines(10, 15))
    shutil.copyfile(path, tmp_path / "auth.log.1")
    os.truncate(path, 0)
    append(path, lines(15, 40))  # longer than before: only the fingerprint tells
    assert numbers(f.read()) == list(range(10, 40))
    assert f.truncations == 1


def test_truncation_without_copy_restarts_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(lines(0, 10))
    f = FileFollower(str(path), from_start=True)
    assert numbers(f.read()) == list(range(10))
    os.truncate(path, 0)
    assert f.read() == []
    append(path, lines(10, 12))
    assert numbers(f.read()) == [10, 11]


# ---------------------------------------------------------------- lines and chunks


def test_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(b"")
    f = FileFollower(str(path))
    append(path, line(1) + line(2)[:10])
    assert numbers(f.read()) == [1]
    pos = f.position
    assert pos is not None
    assert pos.offset == len(line(1))
    assert f.read() == []
    append(path, line(2)[10:])
    assert f.read() == [line(2)]


def test_read_final_returns_unterminated_line(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(line(1) + b"0000002 no newline")
    f = FileFollower(str(path), from_start=True)
    assert f.read() == [line(1)]
    assert f.read_final() == [b"0000002 no newline\n"]
    assert f.read() == []
    assert f.read_final() == []


def test_long_unterminated_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(b"")
    f = FileFollower(str(path), chunk_size=64, max_line=100)
    append(path, b"x" * 450)
    assert f.read() == []
    assert f.dropped_long_lines == 0  # its end is not known yet
    append(path, b"x" * 300)
    assert f.read() == []
    append(path, b"tail\n" + line(5))
    assert f.read() == [line(5)]
    assert f.dropped_long_lines == 1
    # A whole over-long line that arrives at once is dropped too (it exceeds a read).
    append(path, b"y" * 250 + b"\n" + line(6))
    assert f.read() == [line(6)]
    assert f.dropped_long_lines == 2


def test_chunks_are_whole_lines_and_cover_everything(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    data = lines(0, 500)
    path.write_bytes(data)
    f = FileFollower(str(path), from_start=True, chunk_size=1000, max_line=200)
    chunks: list[bytes] = []
    while part := f.read():  # (a read stops at its budget, 16 chunks here)
        chunks += part
    assert len(chunks) > 1
    assert all(c.endswith(b"\n") and len(c) <= 1000 for c in chunks)
    assert b"".join(chunks) == data


def test_closed_follower_keeps_its_position(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(lines(0, 3))
    f = FileFollower(str(path), from_start=True)
    f.read()
    pos = f.position
    f.close()
    assert f.read() == []
    assert f.position == pos


def test_rotations_with_a_small_read_budget_keep_every_line_in_order(tmp_path: Path) -> None:
    """Each read stops at its budget: a rotated file's rest comes out over several reads,
    before the new file's lines, and nothing is lost or repeated."""
    run_concurrently(tmp_path, [rename_create, copytruncate, delete_recreate] * 2,
                     read_budget=2048)


def test_a_backlog_is_read_in_parts_of_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(lines(0, 5000))
    follower = FileFollower(str(path), from_start=True, chunk_size=1024, max_line=512,
                            read_budget=8192)
    got: list[int] = []
    reads = 0
    while True:
        part = follower.read()
        if not part:
            break
        reads += 1
        assert sum(map(len, part)) <= 8192 + 1024  # the budget, plus one chunk at most
        got += numbers(part)
        assert follower.more == (got[-1] < 4999)
    assert got == list(range(5000)) and reads > 10 and not follower.more
    assert follower.position is not None and follower.position.offset == path.stat().st_size
