"""Helpers shared by the filter tests: where ``../shared`` is, feeding a matcher by chunks."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import require
from tailban.core.events import Failure
from tailban.filters.matcher import ChunkMatcher

#: ``../shared`` seen from the repository root (read-only material: corpora, benchmarks)
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
F2B_LOGS = CORPUS / "fail2ban-logs"
REAL_LOGS = CORPUS / "real"

#: the zone and "now" fail2ban's sample-log harness uses (see fail2ban-logs/README.md)
F2B_TZ = "CET-01CEST-02,M3.5.0,M10.5.0"
F2B_NOW = 1124013600.0


def require_shared(path: Path) -> None:
    """Skip (outside CI) or fail (CI=true) when a file or folder of ../shared is missing."""
    require(path.exists(), f"{path} is missing: the shared corpus (../shared beside the "
            "repository) is not present on this machine")


@contextmanager
def local_zone(zone: str) -> Iterator[None]:
    """Run with ``TZ=zone`` (naive stamps are read in it), then restore the old zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def chunks_at_newlines(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` cut into chunks of at most ``size`` bytes ending at a newline (a longer
    line is one chunk of its own); the last chunk may end without one, as at EOF."""
    pos = 0
    total = len(data)
    while pos < total:
        limit = pos + size
        if limit >= total:
            yield data[pos:]
            return
        cut = data.rfind(b"\n", pos, limit)
        if cut < 0:
            cut = data.find(b"\n", limit)
            if cut < 0:
                yield data[pos:]
                return
        yield data[pos:cut + 1]
        pos = cut + 1


def scan_failures(matcher: ChunkMatcher, data: bytes, now: float,
                  size: int = 64 * 1024) -> list[Failure]:
    """Every failure of ``data`` fed to ``matcher`` in chunks, in order."""
    failures: list[Failure] = []
    for chunk in chunks_at_newlines(data, size):
        failures.extend(e for e in matcher.scan(chunk, now) if isinstance(e, Failure))
    return failures


def physical_lines(data: bytes) -> list[str]:
    """The file's lines as the matcher sees them (decoded, right-stripped), 0-based."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.decode("utf-8", "replace").rstrip() for line in lines]


def line_numbers(lines: Sequence[str], failures: Sequence[Failure]) -> list[int]:
    """The 1-based physical line of each failure.

    Failures come in file order, at most one per line, and carry their line's text (the
    first 1000 characters), so each one is the first line after the previous failure's
    line with the same text.
    """
    numbers: list[int] = []
    index = 0
    for failure in failures:
        while index < len(lines) and not _same_line(lines[index], failure.line):
            index += 1
        assert index < len(lines), f"failure's line not found in order: {failure}"
        numbers.append(index + 1)
        index += 1
    return numbers


def _same_line(line: str, kept: str) -> bool:
    return line == kept or (len(kept) >= 1000 and line.startswith(kept))


def check_failure(failures: Sequence[Failure], expect: dict[str, Any], record: dict[str, Any],
                  where: str) -> Failure | None:
    """fail2ban's per-line expectation: no failure, or exactly one with the asserted host,
    user and time (``None`` in ``expect`` = not asserted). Returns the failure, if any."""
    if not expect["match"]:
        assert list(failures) == [], f"{where}: fail2ban finds no failure, tailban {failures}"
        return None
    assert len(failures) == 1, f"{where}: want exactly one failure, got {failures}"
    failure = failures[0]
    if expect["host"] is not None:
        assert failure.host == expect["host"], f"{where}: host {failure.host!r}"
    if expect["user"] is not None:
        assert failure.user == expect["user"], f"{where}: user {failure.user!r}"
    if expect["time_epoch"] is not None:
        assert math.floor(failure.time) == int(expect["time_epoch"]), (
            f"{where}: time {failure.time} != {expect['time_epoch']} ({record['time']})")
    return failure


EXPECTATIONS = F2B_LOGS / "debian-1.0.2" / "expectations.jsonl"
UPSTREAM = F2B_LOGS / "expectations.jsonl"
CORPORA = {"debian": EXPECTATIONS, "upstream": UPSTREAM}


def load_expectations() -> list[dict[str, Any]]:
    """Every record of both corpora, each tagged with its ``corpus``."""
    records: list[dict[str, Any]] = []
    for corpus, path in CORPORA.items():
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as handle:
            records.extend({**json.loads(line), "corpus": corpus}
                           for line in handle if line.strip())
    return records
