"""Durations and analytics slot lists as written in settings (``90s``, ``6h``, ``1h,6h,24h``).

Pure parsing, here so the settings can validate them at startup without importing the worker.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


@dataclass(frozen=True)
class Slot:
    label: str  # stored on each AnalyticsRecord as ``slot``; unique per (post, platform)
    offset: timedelta


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"6h"``, ``"3d"``, ``"2w"`` → timedelta; anything else is a ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 6h, 3d or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_slots(labels: Sequence[str]) -> tuple[Slot, ...]:
    """Slots in increasing offset order; duplicates or a non-positive offset are errors."""
    slots = sorted((Slot(label.strip(), parse_duration(label)) for label in labels), key=lambda s: s.offset)
    if not slots:
        raise ValueError("at least one analytics slot is required")
    offsets = [s.offset for s in slots]
    if len(set(offsets)) != len(offsets) or offsets[0] <= timedelta(0):
        raise ValueError("analytics slots must be positive and distinct")
    return tuple(slots)
