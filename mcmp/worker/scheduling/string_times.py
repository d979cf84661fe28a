"""Posts whose ``scheduleTime`` is an ISO 8601 string (a frontend may write one): parsed once into
an instant stored beside it (``mcmpScheduleAt``, sparse index), so the dispatcher's due query
reads them through an index like dates, and garbage fails its post with a readable reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from mcmp.config import Settings
from mcmp.models import PostStatus
from mcmp.models.base import utcnow
from mcmp.models.db import BY_ID
from mcmp.models.post import PostDoc
from mcmp.models.schedule import (
    SCHEDULE_AT,
    SCHEDULE_FROM,
    ScheduleTimeError,
    derived_is_current,
    parse_schedule_string,
)
from mcmp.worker.publishing import post_status
from mcmp.worker.publishing.post_status import EXPANDED_MARKER

log = logging.getLogger(__name__)

# Every string time, bounded on both sides: SecantusDB otherwise walked on into the dates of the
# (status, marker, scheduleTime) index (5,000 date posts, no strings: 500 ms a pass, 2 ms bounded).
STRING_TIMES = {"$gte": "", "$lt": "\U0010ffff"}
# How far the text of an ISO 8601 time can read ahead of its instant: UTC+14 is the largest offset.
STRING_LEAD = timedelta(hours=14, minutes=1)


class StringScheduleTimes:
    """The dispatcher's view of string schedule times (one per dispatcher: it keeps sweep state)."""

    def __init__(self, settings: Settings, fields: Mapping[str, int]) -> None:
        self.settings = settings
        self.fields = dict(fields)  # what the dispatcher's expansion reads of a post
        self.last_sweep = 0.0
        # Whether the last parse saw any unexpanded string time: while none exist (a frontend
        # writing dates) a tick skips their due query (one round trip, ~0.6 ms). A new string
        # time is due-queryable only once parsed, which the same pass does.
        self.present = True

    def due(self, horizon: datetime) -> list[PostDoc]:
        """Unexpanded scheduled posts whose string scheduleTime is due by ``horizon``.

        Read through the parsed instants (``mcmpScheduleAt``); one whose string was edited since
        it was parsed is parsed again here (a later time leaves the page, garbage fails the post).
        """
        posts = post_status.posts()
        # The field alone: SecantusDB then reads the sparse index (only string times are there);
        # given the status too it preferred the compound index's prefix, or scanned when hinted.
        found = list(
            posts.find(
                {SCHEDULE_AT: {"$lte": horizon}},
                {**self.fields, "status": 1, EXPANDED_MARKER: 1, SCHEDULE_AT: 1, SCHEDULE_FROM: 1},
            )
            .sort(SCHEDULE_AT, 1)
            .limit(self.settings.dispatch_batch_size)
        )
        due = []
        for post in found:
            if post.get("status") != PostStatus.SCHEDULED.value or post.get(EXPANDED_MARKER) is not None:
                # moved on (drafted, cancelled): its instant leaves the index; a new one is
                # parsed if it is scheduled again
                posts.update_one(
                    {"_id": post["_id"], SCHEDULE_AT: post[SCHEDULE_AT]},
                    {"$unset": {SCHEDULE_AT: ""}},
                    hint=BY_ID,
                )
                continue
            if derived_is_current(post):
                due.append(post)
                continue
            when = self.derive(post)
            if when is not None and when <= horizon:
                due.append(post)
        return due

    def derive(self, post: PostDoc) -> datetime | None:
        """Store the instant of ``post``'s string scheduleTime beside it (never the string itself).

        Conditional on the string it parsed, so a concurrent frontend edit is parsed next time
        rather than overwritten by a stale instant. An invalid string fails the post, naming
        ``scheduleTime`` and the reason; a time that is no longer a string drops the instant.
        """
        posts = post_status.posts()
        value = post.get("scheduleTime")
        current = {"_id": post["_id"], "status": PostStatus.SCHEDULED.value, "scheduleTime": value}
        if not isinstance(value, str):
            posts.update_one(current, {"$unset": {SCHEDULE_AT: "", SCHEDULE_FROM: ""}}, hint=BY_ID)
            return None
        try:
            when = parse_schedule_string(value)
        except ScheduleTimeError as exc:
            if post_status.fail_post(str(post["_id"]), PostStatus.SCHEDULED.value, str(exc)):
                log.warning("post %s failed: %s", post["_id"], exc, extra={"post_id": str(post["_id"])})
            return None
        posts.update_one(current, {"$set": {SCHEDULE_AT: when, SCHEDULE_FROM: value}}, hint=BY_ID)
        return when

    def derive_pending(self, full: bool | None = None) -> int:
        """Parse the string scheduleTime of unexpanded scheduled posts not parsed yet (or edited).

        Every pass reads the strings that can fall due soon: an ISO 8601 text reads at most 14 h
        ahead of its instant (UTC+14), so every string due by the look-ahead sorts below the text
        of ``now + look-ahead + 14 h`` — a window of hours, not of every future post. Every
        ``unschedulable_sweep_seconds`` (``full`` forces or skips it) one pass reads them all, to
        fail garbage that sorts above the window and to follow far-future edits. Reads only the
        string part of the (status, marker, scheduleTime) index and the time fields; posts whose
        instant is current cost no write. Returns how many changed.
        """
        now = utcnow()
        if full is None:
            full = time.monotonic() - self.last_sweep >= self.settings.unschedulable_sweep_seconds
        if full:
            self.last_sweep = time.monotonic()
            times = STRING_TIMES
        else:
            soon = now + timedelta(seconds=self.settings.lookahead_seconds) + STRING_LEAD
            times = {"$gte": "", "$lt": soon.strftime("%Y-%m-%dT%H:%M:%S") + "\U0010ffff"}
        page = post_status.posts().find(
            {"status": PostStatus.SCHEDULED.value, EXPANDED_MARKER: None, "scheduleTime": times},
            {"scheduleTime": 1, SCHEDULE_AT: 1, SCHEDULE_FROM: 1},
        )
        changed = seen = 0
        for post in page:
            seen += 1
            if not derived_is_current(post):
                self.derive(post)
                changed += 1
        if full:
            self.present = seen > 0
        else:
            self.present = self.present or seen > 0
        return changed
