"""The instant a post is due, from its ``scheduleTime`` as the frontend stored it.

The seed's Mongoose schema stores ``scheduleTime`` as a BSON date, but its shared ``IPost``
interface types it as a string, so either may arrive. A date is that instant. A string is
taken as the instant it names when it is an ISO 8601 date-time with a UTC offset or ``Z``
(``2026-12-06T10:00:00+01:00``, ``2026-12-06T09:00:00.000Z``); a string without an offset
would depend on some server's time zone, so it fails the post like any other invalid value.
The frontend owns the field: it is never rewritten. Every reader of a post's due time goes
through :func:`schedule_instant` so publishing, lateness, campaign bounds and rescheduling
agree on one instant.

Finding due string times in the database needs a date to compare: the dispatcher stores the
parsed instant beside the post as ``mcmpScheduleAt`` together with the string it came from
(``mcmpScheduleFrom``); an edited string no longer matches and is parsed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from mcmp.errors import PublisherError
from mcmp.models.base import as_utc

SCHEDULE_AT: Final = "mcmpScheduleAt"
SCHEDULE_FROM: Final = "mcmpScheduleFrom"

# Longer than any ISO 8601 date-time with fractions and an offset: not worth parsing.
_MAX_LENGTH = 40


class ScheduleTimeError(PublisherError, ValueError):
    """``scheduleTime`` names no instant; the message says why and starts with the field name."""


def parse_schedule_string(text: str) -> datetime:
    """The UTC instant of an ISO 8601 date-time string with an offset or ``Z``."""
    shown = repr(text[:_MAX_LENGTH])
    if len(text) > _MAX_LENGTH:
        raise ScheduleTimeError(f"scheduleTime: {shown}… is not an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleTimeError(
            f"scheduleTime: {shown} is not an ISO 8601 date-time (e.g. 2026-12-06T10:00:00+01:00)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ScheduleTimeError(
            f"scheduleTime: {shown} has no UTC offset; write it with Z or +hh:mm (e.g. {text.strip()}Z)"
        )
    return as_utc(parsed)


def parse_schedule_time(value: object) -> datetime:
    """The instant ``value`` (a stored ``scheduleTime``) names, or :class:`ScheduleTimeError`."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str):
        return parse_schedule_string(value)
    if value is None:
        raise ScheduleTimeError("scheduleTime: missing on a scheduled post")
    raise ScheduleTimeError(
        f"scheduleTime: expected a date or an ISO 8601 string, got {type(value).__name__} {str(value)[:40]!r}"
    )


def schedule_instant(post: Mapping[str, Any]) -> datetime | None:
    """The instant ``post`` is due (UTC), None when its ``scheduleTime`` names none."""
    try:
        return parse_schedule_time(post.get("scheduleTime"))
    except ScheduleTimeError:
        return None


def derived_is_current(post: Mapping[str, Any]) -> bool:
    """The stored ``mcmpScheduleAt`` was parsed from the ``scheduleTime`` the post has now."""
    value = post.get("scheduleTime")
    return isinstance(value, str) and post.get(SCHEDULE_FROM) == value and post.get(SCHEDULE_AT) is not None


__all__ = [
    "SCHEDULE_AT",
    "SCHEDULE_FROM",
    "ScheduleTimeError",
    "derived_is_current",
    "parse_schedule_string",
    "parse_schedule_time",
    "schedule_instant",
]
