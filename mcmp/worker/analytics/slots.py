"""The decaying snapshot schedule, as pure functions of (publishedAt, now): no I/O, no clock.

Slots come from ``MCMP_ANALYTICS_SLOTS`` (default ``1h,6h,24h,3d,7d,30d``): slot *i* is due at
``publishedAt + offset_i``. A snapshot taken at ``now`` belongs to the **latest slot already
due**; earlier slots that passed without a snapshot (worker down, account paused, a post
published before analytics existed) are skipped, never back-dated: a platform only reports
current totals, so a value for a past slot would be invented. Tests pass ``now`` explicitly
(and use second-sized slots such as ``2s,4s,6s`` against real workers).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mcmp.config.durations import Slot, parse_duration, parse_slots


def first_due(published_at: datetime, slots: Sequence[Slot]) -> datetime:
    return published_at + slots[0].offset


def due_index(published_at: datetime, now: datetime, slots: Sequence[Slot]) -> int | None:
    """Index of the latest slot due at ``now`` (None before the first one)."""
    found = None
    for index, slot in enumerate(slots):
        if published_at + slot.offset <= now:
            found = index
    return found


def next_due(published_at: datetime, index: int, slots: Sequence[Slot]) -> datetime | None:
    """When the slot after ``index`` falls due, or None when ``index`` was the last slot."""
    if index + 1 >= len(slots):
        return None
    return published_at + slots[index + 1].offset


def slot_key(post_id: str, platform: str, label: str) -> tuple[str, str, str]:
    return post_id, platform, label


__all__ = ["Slot", "due_index", "first_due", "next_due", "parse_duration", "parse_slots", "slot_key"]
