"""The pure slot computation (no database): properties over random windows, zones and dates,
and a table of DST and half-hour cases (independence from the process ``TZ``:
test_posting_windows_tz.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcmp.worker.scheduling.posting_windows import (
    PostingWindowError,
    Slot,
    Window,
    load_zone,
    next_slot,
    parse_windows,
)

ROOT = Path(__file__).resolve().parents[3]
ZONES = (
    "UTC",
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "America/Santiago",  # DST switches at midnight
    "America/St_Johns",  # -03:30
    "Asia/Kolkata",  # +05:30, no DST
    "Asia/Kathmandu",  # +05:45
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Pacific/Chatham",  # +12:45 with DST
    "Pacific/Apia",  # skipped a whole day in 2011
)


def _minute(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


@cache
def _transitions(zone_name: str) -> tuple[datetime, ...]:
    """UTC instants (to the hour) around which the zone's offset changes, 2025–2027."""
    zone = ZoneInfo(zone_name)
    found = []
    t = datetime(2025, 1, 1, tzinfo=UTC)
    previous = t.astimezone(zone).utcoffset()
    while t < datetime(2027, 12, 31, tzinfo=UTC):
        t += timedelta(hours=1)
        offset = t.astimezone(zone).utcoffset()
        if offset != previous:
            found.append(t)
            previous = offset
    return tuple(found)


def _in_a_window(instant: datetime, windows: list[Window], zone: ZoneInfo) -> bool:
    """Oracle, from the UTC side: local time inside a window, and the first occurrence of it."""
    local = instant.astimezone(zone)
    dow = (local.weekday() + 1) % 7
    minute = local.hour * 60 + local.minute
    return local.fold == 0 and any(w.day_of_week == dow and w.start <= minute < w.end for w in windows)


def _exists_locally(instant: datetime, zone: ZoneInfo) -> bool:
    local = instant.astimezone(zone)
    naive = local.replace(tzinfo=None)
    return naive.replace(tzinfo=zone).astimezone(UTC) == instant


window_st = st.builds(
    lambda day, start, length: {
        "dayOfWeek": day,
        "start": f"{start // 60:02d}:{start % 60:02d}",
        "end": f"{min(1440, start + length) // 60:02d}:{min(1440, start + length) % 60:02d}",
    },
    st.integers(0, 6),
    st.one_of(st.integers(0, 1439), st.sampled_from([0, 60, 90, 120, 150, 165, 180, 1410])),
    st.one_of(st.integers(1, 1440), st.integers(1, 90)),
)


@st.composite
def case_st(draw: st.DrawFn) -> dict:
    zone = draw(st.sampled_from(ZONES))
    transitions = _transitions(zone)
    if transitions and draw(st.booleans()):
        base = draw(st.sampled_from(transitions))
        now = base + timedelta(minutes=draw(st.integers(-4 * 1440, 60)), seconds=draw(st.integers(0, 59)))
    else:
        now = draw(st.datetimes(datetime(2020, 1, 1), datetime(2035, 12, 31), timezones=st.just(UTC)))
    return {
        "zone": zone,
        "windows": draw(st.lists(window_st, min_size=1, max_size=4)),
        "now": now.isoformat(),
        "posts": draw(st.integers(1, 5)),
    }


def _queue(case: dict) -> list[Slot]:
    """Queue ``posts`` posts one after another, as the database-backed queue does."""
    zone = load_zone(case["zone"])
    windows = parse_windows(case["windows"])
    now = datetime.fromisoformat(case["now"])
    taken: set[datetime] = set()
    result = []
    for _ in range(case["posts"]):
        slot = next_slot(windows, zone, now, taken)
        taken.add(slot.at)
        result.append(slot)
    return result


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_st())
def test_every_slot_is_inside_a_window_existing_unique_and_earliest(case: dict) -> None:
    zone = ZoneInfo(case["zone"])
    windows = parse_windows(case["windows"])
    now = datetime.fromisoformat(case["now"])
    slots = _queue(case)
    instants = [s.at for s in slots]
    assert len(set(instants)) == len(instants), "two posts in one minute"
    earliest = now.replace(second=0, microsecond=0)
    earliest += timedelta(minutes=1) if earliest < now else timedelta(0)
    for slot in slots:
        assert slot.at.tzinfo is not None and slot.at.second == 0 and slot.at.microsecond == 0
        assert slot.at >= now
        assert _in_a_window(slot.at, windows, zone), (slot.local, case)
        assert _exists_locally(slot.at, zone)
        assert slot.local == slot.at.astimezone(zone)
        w = slot.window
        minute = slot.local.hour * 60 + slot.local.minute
        assert w.start <= minute < w.end and (slot.local.weekday() + 1) % 7 == w.day_of_week
    # Earliest: no free in-window minute was passed over (checked from the UTC side).
    previous = set()
    for slot in slots:
        t = earliest
        while t < slot.at:
            assert t in previous or not _in_a_window(t, windows, zone), (t, slot.at, case)
            t += timedelta(minutes=1)
        previous.add(slot.at)


# --- DST and half-hour zones, table-driven ------------------------------------------------

CASES = [
    # (id, zone, windows, now, taken before (count), expected UTC, expected local "HH:MM", note has)
    (
        "paris spring-forward: 02:30 start does not exist -> 03:00 CEST",
        "Europe/Paris",
        [{"dayOfWeek": 0, "start": "02:30", "end": "04:00"}],
        "2026-03-28T12:00:00+00:00",
        0,
        "2026-03-29T01:00:00+00:00",
        "03:00",
        "02:30 did not exist",
    ),
    (
        "new york spring-forward: 02:30 -> 03:00 EDT",
        "America/New_York",
        [{"dayOfWeek": 0, "start": "02:30", "end": "03:30"}],
        "2026-03-08T00:00:00+00:00",
        0,
        "2026-03-08T07:00:00+00:00",
        "03:00",
        "02:30 did not exist",
    ),
    (
        "window wholly inside the gap is skipped that day",
        "Europe/Paris",
        [{"dayOfWeek": 0, "start": "02:00", "end": "02:59"}],
        "2026-03-28T12:00:00+00:00",
        0,
        "2026-04-05T00:00:00+00:00",
        "02:00",
        "Sun 02:00–02:59 Europe/Paris",
    ),
    (
        "paris fall-back: repeated 02:xx uses only the first occurrence (CEST)",
        "Europe/Paris",
        [{"dayOfWeek": 0, "start": "02:00", "end": "04:00"}],
        "2026-10-24T12:00:00+00:00",
        0,
        "2026-10-25T00:00:00+00:00",
        "02:00",
        "CEST",
    ),
    (
        "paris fall-back: after 60 first-occurrence minutes comes 03:00 CET, not 02:00 CET",
        "Europe/Paris",
        [{"dayOfWeek": 0, "start": "02:00", "end": "04:00"}],
        "2026-10-24T12:00:00+00:00",
        60,
        "2026-10-25T02:00:00+00:00",
        "03:00",
        "CET",
    ),
    (
        "new york fall-back: the repeated 01:xx is never booked twice -> next week",
        "America/New_York",
        [{"dayOfWeek": 0, "start": "01:00", "end": "02:00"}],
        "2026-10-31T12:00:00+00:00",
        60,
        "2026-11-08T06:00:00+00:00",
        "01:00",
        "EST",
    ),
    (
        "lord howe: 30-minute spring-forward gap 02:00-02:30",
        "Australia/Lord_Howe",
        [{"dayOfWeek": 0, "start": "02:00", "end": "03:00"}],
        "2026-10-03T00:00:00+00:00",
        0,
        "2026-10-03T15:30:00+00:00",
        "02:30",
        "02:00 did not exist",
    ),
    (
        "kolkata +05:30: Tue 09:00 IST",
        "Asia/Kolkata",
        [{"dayOfWeek": 2, "start": "09:00", "end": "17:00"}],
        "2026-03-30T00:00:00+00:00",
        0,
        "2026-03-31T03:30:00+00:00",
        "09:00",
        "queued into Tue 09:00–17:00 Asia/Kolkata window",
    ),
    (
        "kolkata: mid-minute now rounds up to the next minute",
        "Asia/Kolkata",
        [{"dayOfWeek": 2, "start": "09:00", "end": "17:00"}],
        "2026-03-31T03:30:01+00:00",
        0,
        "2026-03-31T03:31:00+00:00",
        "09:01",
        "IST",
    ),
    (
        "kolkata: window end is exclusive -> next week",
        "Asia/Kolkata",
        [{"dayOfWeek": 2, "start": "09:00", "end": "17:00"}],
        "2026-03-31T11:30:00+00:00",
        0,
        "2026-04-07T03:30:00+00:00",
        "09:00",
        "IST",
    ),
    (
        "kathmandu +05:45",
        "Asia/Kathmandu",
        [{"dayOfWeek": 1, "start": "10:00", "end": "11:00"}],
        "2026-03-29T00:00:00+00:00",
        0,
        "2026-03-30T04:15:00+00:00",
        "10:00",
        "Mon 10:00–11:00 Asia/Kathmandu",
    ),
    (
        "santiago: DST starts at midnight, 00:00-00:59 does not exist",
        "America/Santiago",
        [{"dayOfWeek": 0, "start": "00:00", "end": "02:00"}],
        "2026-09-05T12:00:00+00:00",
        0,
        "2026-09-06T04:00:00+00:00",
        "01:00",
        "00:00 did not exist",
    ),
    (
        "a window ending at 24:00",
        "UTC",
        [{"dayOfWeek": 3, "start": "23:59", "end": "24:00"}],
        "2026-04-01T00:00:00+00:00",
        1,
        "2026-04-08T23:59:00+00:00",
        "23:59",
        "Wed 23:59–24:00 UTC",
    ),
]


@pytest.mark.parametrize(
    ("zone", "windows", "now", "taken", "expected", "local", "note"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_dst_and_half_hour_cases(
    zone: str, windows: list, now: str, taken: int, expected: str, local: str, note: str
) -> None:
    z, w, t = load_zone(zone), parse_windows(windows), datetime.fromisoformat(now)
    booked: set[datetime] = set()
    for _ in range(taken):
        booked.add(next_slot(w, z, t, booked).at)
    slot = next_slot(w, z, t, booked)
    assert slot.at == datetime.fromisoformat(expected)
    assert f"{slot.local:%H:%M}" == local
    assert note in slot.note()
    assert _exists_locally(slot.at, z) and slot.local.fold == 0


@pytest.mark.parametrize(
    ("timezone", "windows", "message"),
    [
        (
            "Mars/Base",
            [{"dayOfWeek": 1, "start": "09:00", "end": "17:00"}],
            "client.timezone: unknown time zone 'Mars/Base'",
        ),
        (
            "",
            [{"dayOfWeek": 1, "start": "09:00", "end": "17:00"}],
            "client.timezone: expected an IANA time zone name",
        ),
        (None, [{"dayOfWeek": 1, "start": "09:00", "end": "17:00"}], "client.timezone: expected an IANA"),
        (
            "../etc/passwd",
            [{"dayOfWeek": 1, "start": "09:00", "end": "17:00"}],
            "client.timezone: unknown time zone",
        ),
        ("UTC", [], "client.defaultPostingWindows: no posting windows"),
        ("UTC", None, "client.defaultPostingWindows: no posting windows"),
        (
            "UTC",
            [{"dayOfWeek": 7, "start": "09:00", "end": "17:00"}],
            "defaultPostingWindows[0].dayOfWeek: expected 0–6",
        ),
        ("UTC", [{"dayOfWeek": True, "start": "09:00", "end": "17:00"}], "dayOfWeek: expected 0–6"),
        (
            "UTC",
            [{"dayOfWeek": 1, "start": "9am", "end": "17:00"}],
            'defaultPostingWindows[0].start: expected "HH:MM"',
        ),
        ("UTC", [{"dayOfWeek": 1, "start": "09:00", "end": "25:00"}], "end: '25:00' is not a time of day"),
        ("UTC", [{"dayOfWeek": 1, "start": "24:00", "end": "24:00"}], "start: '24:00' is not a time of day"),
        ("UTC", [{"dayOfWeek": 1, "start": "22:00", "end": "02:00"}], "must be split in two"),
        ("UTC", ["09:00-17:00"], "defaultPostingWindows[0]: expected {dayOfWeek, start, end}"),
    ],
)
def test_bad_configuration_is_a_clear_error(timezone: object, windows: object, message: str) -> None:
    with pytest.raises(PostingWindowError) as err:
        next_slot(parse_windows(windows), load_zone(timezone), datetime.now(UTC))
    assert message in str(err.value)


def test_a_javascript_number_day_is_accepted() -> None:
    assert parse_windows([{"dayOfWeek": 2.0, "start": "9:00", "end": "17:30", "_id": "x"}]) == [
        Window(2, _minute("09:00"), _minute("17:30"))
    ]


def test_no_free_slot_within_the_horizon_is_an_error() -> None:
    windows = parse_windows([{"dayOfWeek": 1, "start": "09:00", "end": "09:01"}])
    with pytest.raises(PostingWindowError, match="no free slot in the next 14 days"):
        zone, now = load_zone("UTC"), datetime(2026, 3, 1, tzinfo=UTC)
        taken = {next_slot(windows, zone, now).at, next_slot(windows, zone, now + timedelta(days=7)).at}
        next_slot(windows, zone, now, taken, horizon_days=14)
