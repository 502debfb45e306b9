"""When the scheduled report goes out."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tailban.daemon.reporting import next_run

TOKYO = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz: ZoneInfo = TOKYO) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize("schedule, now, expected", [
    ("daily 03:00", "2026-11-23 02:59", "2026-11-23 03:00"),
    ("daily 03:00", "2026-11-23 03:00", "2026-11-24 03:00"),
    ("daily", "2026-11-23 12:00", "2026-11-24 03:00"),
    ("daily 23:30", "2026-12-31 23:45", "2027-01-01 23:30"),
    ("weekly", "2026-11-23 12:00", "2026-11-30 03:00"),  # a Monday: next Monday
    ("weekly 06:15", "2026-11-21 00:00", "2026-11-23 06:15"),
    ("monthly", "2026-11-23 12:00", "2026-12-01 03:00"),
    ("monthly 00:00", "2026-12-15 00:00", "2027-01-01 00:00"),
])
def test_next_run(schedule: str, now: str, expected: str) -> None:
    assert next_run(schedule, at(now), TOKYO) == at(expected)


def test_daylight_saving_keeps_the_wall_clock_time() -> None:
    # Berlin leaves summer time on 2026-10-25: 03:00 local is still 03:00 the next day.
    got = next_run("daily 03:00", at("2026-10-24 04:00", BERLIN), BERLIN)
    assert got is not None
    assert datetime.fromtimestamp(got, BERLIN).strftime("%Y-%m-%d %H:%M") == "2026-10-25 03:00"


def test_no_schedule() -> None:
    assert next_run("", 0.0, TOKYO) is None
