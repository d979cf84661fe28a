"""A string scheduleTime (the shared IPost types it so) is the instant it names, or fails."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcmp.models.schedule import ScheduleTimeError, parse_schedule_time, schedule_instant

INSTANT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-06T10:00:00+01:00",
        "2026-12-06T09:00:00Z",
        "2026-12-06T09:00:00.000Z",  # JavaScript's Date.toISOString()
        "2026-12-06T04:00:00-05:00",
        "2026-12-06T14:30:00+05:30",
    ],
)
def test_an_iso_string_with_an_offset_is_that_instant(text):
    assert parse_schedule_time(text) == INSTANT
    assert schedule_instant({"scheduleTime": text}) == INSTANT


def test_a_date_is_itself_naive_dates_being_utc():
    assert parse_schedule_time(INSTANT) == INSTANT
    assert parse_schedule_time(datetime(2026, 12, 6, 9, 0)) == INSTANT


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-12-06T10:00:00", "scheduleTime: '2026-12-06T10:00:00' has no UTC offset"),
        ("2026-12-06", "scheduleTime: '2026-12-06' has no UTC offset"),
        ("tomorrow at 9", "scheduleTime: 'tomorrow at 9' is not an ISO 8601 date-time"),
        ("", "scheduleTime: '' is not an ISO 8601 date-time"),
        ("2026-13-06T10:00:00Z", "scheduleTime: '2026-13-06T10:00:00Z' is not an ISO 8601 date-time"),
        ("x" * 200, "is not an ISO 8601 date-time"),
        (None, "scheduleTime: missing on a scheduled post"),
        (1765015200, "scheduleTime: expected a date or an ISO 8601 string, got int"),
    ],
)
def test_anything_else_names_scheduletime_and_the_reason(value, reason):
    with pytest.raises(ScheduleTimeError, match="^scheduleTime: ") as failure:
        parse_schedule_time(value)
    assert reason in str(failure.value)
    assert len(str(failure.value)) < 160
    assert schedule_instant({"scheduleTime": value}) is None
