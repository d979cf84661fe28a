"""The posting-window queue: an approved post without a time gets its client's next free slot.

Two ways in (both end in :func:`queue_post`):

* the admin API calls ``queue_post(post_id, by_user_id=…)`` ("add to queue") and shows the
  returned time or the error's message (:class:`QueueError` subclasses: ``PostNotQueueable`` → 409,
  ``PostingWindowError`` → 422);
* **convention for the frontend**: a post stored with ``status: "approved"``, no
  ``scheduleTime`` and ``queue: true`` is picked up by the periodic task
  ``mcmp.maintenance.queue_posts`` (:func:`queue_flagged_posts`, driven by beat).

Rules:

* Windows are the client's ``defaultPostingWindows`` (``dayOfWeek`` 0–6 = Sun–Sat, ``start`` /
  ``end`` "HH:MM", end exclusive, "24:00" allowed as an end; a window may not cross midnight —
  split it in two) read in the client's IANA ``timezone``. Overlapping windows simply merge.
* The slot is the first whole minute at or after ``now`` that lies in a window and is free on
  *every* platform of the post for this client, so two posts of one client on one platform are
  never published in the same minute. Reservations are documents of ``postingslots`` with a
  unique index on (clientId, platform, minute): under concurrency the database picks the winner
  and the loser tries the next minute.
* Local time is resolved with ``zoneinfo`` only (never the process ``TZ``). A local minute that
  does not exist (spring-forward gap) is skipped, so a 02:30 window start on that day becomes the
  next valid instant (03:00). In a repeated autumn hour only the first occurrence (``fold=0``)
  is ever used, so one wall-clock minute is never booked twice. A window lying entirely inside a
  gap has no instants that day and is skipped.
* Bad configuration (unknown time zone, malformed window, no windows) never crashes: it is
  written to the post's ``lastError`` (e.g. ``client.timezone: unknown time zone 'Mars/Base'``),
  the post stays ``approved``, and the sweep retries it after :data:`RETRY_AFTER_ERROR`.
* A reservation left by a crash between reserving and scheduling only wastes that minute;
  :func:`release_slots` frees the slots of a post the API reschedules or cancels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bson import ObjectId
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from mcmp.errors import PublisherError
from mcmp.models import PostingSlot, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.models.client import clients
from mcmp.models.post import PostDoc
from mcmp.models.posting_slot import PostingSlotDoc
from mcmp.models.schedule import schedule_instant
from mcmp.worker.publishing import post_status

log = logging.getLogger(__name__)

WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # the seed's dayOfWeek order
HORIZON_DAYS = 366  # look this far ahead for a free slot before giving up
RETRY_AFTER_ERROR = timedelta(minutes=5)  # the sweep leaves a misconfigured post alone this long
QUEUE_FLAG = "queue"
RETRY_MARKER = "mcmpQueueRetryAt"
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


class QueueError(PublisherError):
    """A post could not be queued; the message is meant for the user."""


class PostNotQueueable(QueueError):
    """The post is not an approved post without a scheduleTime (or does not exist)."""


class PostingWindowError(QueueError, ValueError):
    """The client's time zone or posting windows cannot be used; the message names the field."""


@dataclass(frozen=True)
class Window:
    """One weekly posting window in local time, as minutes since local midnight [start, end)."""

    day_of_week: int  # 0 = Sunday, as the seed
    start: int
    end: int

    def label(self) -> str:
        return f"{WEEKDAYS[self.day_of_week]} {_hhmm(self.start)}–{_hhmm(self.end)}"


@dataclass(frozen=True)
class Slot:
    """A chosen publishing minute and why it was chosen."""

    at: datetime  # aware UTC, whole minute
    local: datetime  # the same instant in the client's zone
    window: Window
    zone: str
    skipped_gap: str | None = None  # "02:30" when the window's earlier minutes did not exist that day

    def note(self) -> str:
        text = (
            f"queued into {self.window.label()} {self.zone} window: "
            f"{self.local:%Y-%m-%d %H:%M} {self.local.tzname()} ({self.at:%H:%M} UTC)"
        )
        if self.skipped_gap:
            text += f"; {self.skipped_gap} did not exist that day (clock change), first valid time used"
        return text


# --- pure computation (no database) --------------------------------------------------------


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def load_zone(name: object) -> ZoneInfo:
    """The client's IANA zone, or a PostingWindowError naming ``client.timezone``."""
    if not isinstance(name, str) or not name.strip():
        raise PostingWindowError(f"client.timezone: expected an IANA time zone name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PostingWindowError(f"client.timezone: unknown time zone {name!r}") from None


def _parse_time(value: object, field: str, allow_24: bool) -> int:
    match = _HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        raise PostingWindowError(f'{field}: expected "HH:MM", got {value!r}')
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise PostingWindowError(f"{field}: {value!r} is not a time of day")
    return hours * 60 + minutes


def parse_windows(raw: object) -> list[Window]:
    """Validate ``defaultPostingWindows`` as stored by the frontend (list of mappings)."""
    field = "client.defaultPostingWindows"
    if not isinstance(raw, list) or not raw:
        raise PostingWindowError(
            f"{field}: no posting windows; give the post a scheduleTime or add windows to the client"
        )
    windows = []
    for i, entry in enumerate(raw):
        here = f"{field}[{i}]"
        if not isinstance(entry, Mapping):
            raise PostingWindowError(f"{here}: expected {{dayOfWeek, start, end}}, got {entry!r}")
        day = entry.get("dayOfWeek")
        if isinstance(day, float) and day.is_integer():
            day = int(day)  # a JavaScript Number
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            raise PostingWindowError(f"{here}.dayOfWeek: expected 0–6 (Sun–Sat), got {day!r}")
        start = _parse_time(entry.get("start"), f"{here}.start", allow_24=False)
        end = _parse_time(entry.get("end"), f"{here}.end", allow_24=True)
        if end <= start:
            raise PostingWindowError(
                f"{here}: end {_hhmm(end)} must be after start {_hhmm(start)} "
                "(a window crossing midnight must be split in two)"
            )
        windows.append(Window(day, start, end))
    return windows


def _ceil_minute(instant: datetime) -> datetime:
    floor = instant.replace(second=0, microsecond=0)
    return floor if floor == instant else floor + timedelta(minutes=1)


def _local_candidates(
    windows: list[Window], zone: ZoneInfo, day: date
) -> Iterable[tuple[datetime, Window, str | None]]:
    """(UTC instant, window, skipped gap) of every existing local minute of ``day``'s windows."""
    dow = (day.weekday() + 1) % 7  # Python: Mon=0; seed: Sun=0
    seen: set[int] = set()
    for window in sorted((w for w in windows if w.day_of_week == dow), key=lambda w: (w.start, w.end)):
        gap: str | None = None
        for minute in range(window.start, window.end):
            if minute in seen:
                continue
            seen.add(minute)
            naive = datetime.combine(day, time(minute // 60, minute % 60))
            instant = naive.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first occurrence
            if instant.astimezone(zone).replace(tzinfo=None) != naive:
                gap = gap or _hhmm(minute)  # does not exist locally (spring-forward gap)
                continue
            yield instant, window, gap


def next_slot(
    windows: list[Window],
    zone: ZoneInfo,
    now: datetime,
    taken: Container[datetime] = frozenset(),
    horizon_days: int = HORIZON_DAYS,
) -> Slot:
    """The first whole minute ≥ ``now`` inside a window and not in ``taken`` (UTC minutes)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    earliest = _ceil_minute(now.astimezone(UTC))
    first_day = earliest.astimezone(zone).date()
    for offset in range(horizon_days + 1):
        for instant, window, gap in _local_candidates(windows, zone, first_day + timedelta(days=offset)):
            if instant >= earliest and instant not in taken:
                return Slot(instant, instant.astimezone(zone), window, zone.key, gap)
    raise PostingWindowError(f"client.defaultPostingWindows: no free slot in the next {horizon_days} days")


# --- the queue (database) ------------------------------------------------------------------


def slots() -> Collection[PostingSlotDoc]:
    collection: Collection[PostingSlotDoc] = PostingSlot._get_collection()
    return collection


def _taken_minutes(client_id: str, platforms: list[str], since: datetime) -> set[datetime]:
    cursor = slots().find(
        {"clientId": client_id, "platform": {"$in": platforms}, "minute": {"$gte": since}},
        {"minute": 1, "_id": 0},
    )
    return {m for m in (as_utc(d["minute"]) for d in cursor) if m is not None}


def _reserve(client_id: str, platforms: list[str], minute: datetime, post_id: str) -> list[ObjectId] | None:
    """Reserve ``minute`` on every platform, all or nothing; None if any is already taken."""
    inserted: list[ObjectId] = []
    for platform in platforms:
        try:
            doc: PostingSlotDoc = {
                "clientId": client_id,
                "platform": platform,
                "minute": minute,
                "postId": post_id,
                "createdAt": utcnow(),
                "updatedAt": utcnow(),
            }
            inserted.append(slots().insert_one(doc).inserted_id)
        except DuplicateKeyError:
            if inserted:
                slots().delete_many({"_id": {"$in": inserted}})
            return None
    return inserted


def release_slots(post_id: str) -> int:
    """Free the slots of a post (the API calls this when it reschedules or cancels a queued post)."""
    return slots().delete_many({"postId": post_id}).deleted_count


def _record_error(post_id: ObjectId, message: str, now: datetime) -> None:
    post_status.posts().update_one(
        {"_id": post_id, "status": PostStatus.APPROVED.value},
        {
            "$set": {
                "lastError": message,
                RETRY_MARKER: now + RETRY_AFTER_ERROR,
                "updatedAt": utcnow(),
            }
        },
    )


def _already_queued(post: PostDoc) -> datetime | None:
    """The post's time if an earlier call already queued it (a retried API request)."""
    when = schedule_instant(post)
    if post.get("status") != PostStatus.SCHEDULED.value or when is None:
        return None
    if slots().find_one({"postId": str(post["_id"]), "minute": when}, {"_id": 1}) is None:
        return None
    return when


def queue_post(post_id: str, by_user_id: str | None = None, now: datetime | None = None) -> datetime:
    """Give an approved post without a scheduleTime its client's next free slot; return it (UTC).

    The post becomes ``scheduled`` by a conditional update from ``approved``, with a
    ``statusHistory`` note saying which window was used. Calling it again for a post it already
    queued returns the same time. Raises ``PostNotQueueable`` or ``PostingWindowError`` (the latter
    is also written to the post's ``lastError``).
    """
    now = as_utc(now) or utcnow()
    if not ObjectId.is_valid(post_id):
        raise PostNotQueueable(f"{post_id!r} is not a post id")
    oid = ObjectId(post_id)
    post = post_status.posts().find_one(
        {"_id": oid}, {"status": 1, "scheduleTime": 1, "clientId": 1, "platforms": 1}
    )
    if post is None:
        raise PostNotQueueable(f"post {post_id} does not exist")
    previous = _already_queued(post)
    if previous is not None:
        return previous
    if post.get("status") != PostStatus.APPROVED.value or post.get("scheduleTime") is not None:
        raise PostNotQueueable(
            f"only an approved post without a scheduleTime can be queued; this one is "
            f"{post.get('status')!r}"
            + (" with a scheduleTime" if post.get("scheduleTime") is not None else "")
        )
    platforms = [p for p in dict.fromkeys(post.get("platforms") or []) if isinstance(p, str) and p]
    if not platforms:
        raise PostNotQueueable("platforms: no platform selected")
    client_id = str(post.get("clientId") or "")
    try:
        slot, reserved = _pick_and_reserve(client_id, platforms, post_id, now)
    except PostingWindowError as exc:
        _record_error(oid, str(exc), now)
        log.warning("post %s cannot be queued: %s", post_id, exc, extra={"post_id": post_id})
        raise
    moved = post_status.move(
        {"_id": oid, "status": PostStatus.APPROVED.value},
        {"scheduleTime": None},
        PostStatus.SCHEDULED.value,
        slot.note(),
        by_user_id,
        expanded=None,
        extra_set={"scheduleTime": slot.at},
        extra_unset=("lastError", RETRY_MARKER),
    )
    if moved:
        log.info("post %s %s", post_id, slot.note(), extra={"post_id": post_id})
        return slot.at
    slots().delete_many({"_id": {"$in": reserved}})  # someone else changed the post first
    current = post_status.posts().find_one({"_id": oid}, {"status": 1, "scheduleTime": 1})
    previous = _already_queued(current) if current is not None else None
    if previous is not None:
        return previous
    raise PostNotQueueable(
        f"post changed while it was being queued (now {(current or {}).get('status')!r}); not queued"
    )


def _pick_and_reserve(
    client_id: str, platforms: list[str], post_id: str, now: datetime
) -> tuple[Slot, list[ObjectId]]:
    client = None
    if ObjectId.is_valid(client_id):
        client = clients().find_one({"_id": ObjectId(client_id)}, {"timezone": 1, "defaultPostingWindows": 1})
    if client is None:
        raise PostingWindowError(f"clientId: client {client_id!r} not found")
    zone = load_zone(client.get("timezone", "UTC"))
    windows = parse_windows(client.get("defaultPostingWindows"))
    taken = _taken_minutes(client_id, platforms, _ceil_minute(now))
    while True:
        slot = next_slot(windows, zone, now, taken)
        reserved = _reserve(client_id, platforms, slot.at, post_id)
        if reserved is not None:
            return slot, reserved
        taken.add(slot.at)  # another worker took it between our read and our insert


def queue_flagged_posts(now: datetime | None = None, limit: int = 100) -> int:
    """The sweep behind the ``queue: true`` convention; returns how many posts were queued."""
    now = as_utc(now) or utcnow()
    queued = 0
    page = post_status.posts().find(
        {
            "status": PostStatus.APPROVED.value,
            QUEUE_FLAG: True,
            "scheduleTime": None,
            # missing or due: not a top-level $or, which SecantusDB answers by scanning every post
            RETRY_MARKER: {"$not": {"$gt": now}},
        },
        {"_id": 1},
        limit=limit,
    )
    for post in list(page):
        try:
            queue_post(str(post["_id"]), now=now)
            queued += 1
        except QueueError as exc:  # recorded on the post (or it changed meanwhile): carry on
            log.info("post %s not queued: %s", post["_id"], exc)
    return queued


__all__ = [
    "PostNotQueueable",
    "PostingWindowError",
    "QueueError",
    "Slot",
    "Window",
    "load_zone",
    "next_slot",
    "parse_windows",
    "queue_flagged_posts",
    "queue_post",
    "release_slots",
]
