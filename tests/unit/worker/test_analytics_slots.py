"""The snapshot schedule as pure functions of (publishedAt, now): the controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcmp.config.settings import Settings
from mcmp.worker.analytics.slots import due_index, next_due, parse_duration, parse_slots

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DEFAULT = parse_slots(["1h", "6h", "24h", "3d", "7d", "30d"])


def test_default_slots_fall_due_at_their_offsets() -> None:
    assert [s.offset for s in DEFAULT] == [
        timedelta(hours=1),
        timedelta(hours=6),
        timedelta(hours=24),
        timedelta(days=3),
        timedelta(days=7),
        timedelta(days=30),
    ]
    assert due_index(T0, T0 + timedelta(minutes=59), DEFAULT) is None
    assert due_index(T0, T0 + timedelta(hours=1), DEFAULT) == 0
    assert due_index(T0, T0 + timedelta(hours=23), DEFAULT) == 1
    assert due_index(T0, T0 + timedelta(days=3, seconds=1), DEFAULT) == 3
    assert due_index(T0, T0 + timedelta(days=400), DEFAULT) == 5


def test_a_late_snapshot_takes_the_latest_due_slot_and_skips_the_missed_ones() -> None:
    # Worker down for two days after publishing: the next snapshot is the 24h slot, the 1h and 6h
    # slots are not back-dated (the platform only reports current totals).
    index = due_index(T0, T0 + timedelta(days=2), DEFAULT)
    assert index is not None and DEFAULT[index].label == "24h"
    assert next_due(T0, index, DEFAULT) == T0 + timedelta(days=3)
    assert next_due(T0, len(DEFAULT) - 1, DEFAULT) is None


def test_slot_configuration_is_validated_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_duration("90s") == timedelta(seconds=90) and parse_duration("2w") == timedelta(days=14)
    assert [s.label for s in parse_slots(["6h", "1h"])] == ["1h", "6h"]  # sorted by offset
    for bad in (["1h", "60m"], ["0s"], [], ["soon"]):
        with pytest.raises(ValueError):
            parse_slots(bad)
    monkeypatch.setenv("MCMP_ANALYTICS_SLOTS", "2s,4s,6s")
    assert Settings().analytics_slots == ["2s", "4s", "6s"]
    monkeypatch.setenv("MCMP_ANALYTICS_SLOTS", "2s,later")
    with pytest.raises(ValueError, match="later"):
        Settings()
