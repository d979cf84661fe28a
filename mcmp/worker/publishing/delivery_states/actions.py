"""Transitions driven by account events and the admin API: parking for re-auth, resuming, failing
a delivery that waited too long, cancelling, reopening and rescheduling."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from bson import ObjectId

from mcmp.config import get_settings
from mcmp.models import ErrorClass
from mcmp.models.base import as_utc, utcnow
from mcmp.models.db import BY_ID
from mcmp.models.delivery import DeliveryDoc, deliveries
from mcmp.worker import liveness
from mcmp.worker.publishing.delivery_states.claims import born_attempt
from mcmp.worker.publishing.delivery_states.store import (
    S,
)

log = logging.getLogger(__name__)


def park_for_auth(client_id: str, platform: str, reason: str) -> int:
    """pending / queued → waiting_auth for one account (the platform rejected its token).

    No attempt is spent and ``dueAt`` is kept (a post moved to next week still waits for next
    week once reconnected). A queued delivery's message then finds it not takeable.
    """
    now = utcnow()
    result = deliveries().update_many(
        {"clientId": client_id, "platform": platform, "state": {"$in": [S.PENDING.value, S.QUEUED.value]}},
        {
            "$set": {
                "state": S.WAITING_AUTH.value,
                "lastError": reason,
                "errorClass": ErrorClass.AUTH.value,
                "waitingSince": now,
                "leaseUntil": None,
                "updatedAt": now,
            }
        },
    )
    return result.modified_count


def resume_waiting(
    post_ids: Iterable[str] | None = None, platform: str | None = None, client_id: str | None = None
) -> int:
    """waiting_auth → pending (the account was reconnected): now, or at a later ``dueAt`` it kept."""
    now = utcnow()
    query: dict[str, Any] = {"state": S.WAITING_AUTH.value}
    if post_ids is not None:
        query["postId"] = {"$in": list(post_ids)}
    if platform is not None:
        query["platform"] = platform
    if client_id is not None:
        query["clientId"] = client_id
    resume = {"state": S.PENDING.value, "waitingSince": None, "updatedAt": now}
    # Two filters, not a ``$or``: a top-level operator makes SecantusDB walk every delivery.
    due = sum(
        deliveries().update_many({**query, "dueAt": when}, {"$set": {**resume, "dueAt": now}}).modified_count
        for when in ({"$lte": now}, None)
    )
    later = deliveries().update_many(query, {"$set": resume})  # the rest: due in the future
    return due + later.modified_count


def fail_waiting(delivery_id: ObjectId, reason: str) -> bool:
    """waiting_auth → failed (the account was not reconnected within the deadline)."""
    now = utcnow()
    result = deliveries().update_one(
        {"_id": delivery_id, "state": S.WAITING_AUTH.value},
        {
            "$set": {
                "state": S.FAILED.value,
                "lastError": reason,
                "errorClass": ErrorClass.AUTH.value,
                "updatedAt": now,
            }
        },
    )
    return result.modified_count == 1


def cancel_open(post_id: str, platforms: Sequence[str] | None = None, reason: str = "cancelled") -> int:
    """pending / queued / waiting_auth → cancelled. In-flight attempts finish (they may have posted)."""
    now = utcnow()
    query: dict[str, Any] = {
        "postId": post_id,
        "state": {"$in": [S.PENDING.value, S.QUEUED.value, S.WAITING_AUTH.value]},
    }
    if platforms:
        query["platform"] = {"$in": list(platforms)}
    result = deliveries().update_many(
        query,
        {"$set": {"state": S.CANCELLED.value, "lastError": reason, "leaseUntil": None, "updatedAt": now}},
    )
    return result.modified_count


class Unstarted(NamedTuple):
    cancelled: list[ObjectId]  # in_flight → cancelled: no worker had started them
    started: list[ObjectId]  # a worker started them: nothing was cancelled
    moved: list[ObjectId]  # left their birth attempt meanwhile (reaped, handed back …): read again


def _as_born(delivery: DeliveryDoc) -> bool:
    """Still as born taken: its first attempt, never claimed (what the cancel's swap requires)."""
    return delivery.get("attempt") == 1 and delivery.get("claimToken") is None


def cancel_unstarted(found: Sequence[DeliveryDoc], reason: str) -> Unstarted:
    """in_flight → cancelled for deliveries born taken whose message no worker has started yet.

    Such a delivery waits in the broker (the look-ahead, or a backlog) with no worker's write, so
    MongoDB alone cannot tell it from one being published: its start key in Redis can. This takes
    those keys first, with a sentinel (:func:`mcmp.worker.liveness.hold_starts`), so no copy of
    the message can start it any more, then moves each by a compare-and-swap on the birth attempt
    (id, in_flight, attemptId, no owner, attempt 1, never claimed: a delivery a worker took while
    Redis was away has no owner either, but was claimed or is past its first attempt). When a
    worker holds any of the keys nothing is cancelled (``started``). A delivery whose swap fails
    left its birth attempt meanwhile (``moved``): its key is given back. ``needsReconcile`` is
    kept: a retry after the cancel looks the post up first, whatever happened before.

    Raises :class:`mcmp.worker.liveness.StartsUnknown` (nothing cancelled) when Redis cannot say.
    """
    attempts = [(born_attempt(d), d["_id"]) for d in found]
    started = [oid for attempt_id, oid in attempts if attempt_id is None]
    born = [(attempt_id, oid) for attempt_id, oid in attempts if attempt_id is not None]
    if started or not born:
        return Unstarted([], started, [])
    sentinel, held = liveness.hold_starts(born, get_settings().inflight_lease_seconds)
    started = [oid for _, oid in born if str(oid) not in held]
    if started:
        liveness.release_starts([(a, oid) for a, oid in born if str(oid) in held], sentinel)
        return Unstarted([], started, [])
    # Born before Redis last lost its data: a worker may have started it and died since, leaving
    # no key. Only its lease's end (the reaper hands it on, to be looked up first) can tell.
    # (One claimed before it was taken has no birth to judge: the swap below finds it moved.)
    births = {d["_id"]: as_utc(d.get("firstTakenAt")) for d in found if _as_born(d)}
    since = liveness.data_since()
    if any(oid in births and ((born_at := births[oid]) is None or born_at < since) for _, oid in born):
        liveness.release_starts(born, sentinel)
        raise liveness.StartsUnknown("Redis lost its data after it was queued; its lease will tell")
    cancelled: list[ObjectId] = []
    moved: list[tuple[str, ObjectId]] = []
    for attempt_id, oid in born:
        now = utcnow()
        result = deliveries().update_one(
            {
                "_id": oid,
                "state": S.IN_FLIGHT.value,
                "attemptId": attempt_id,
                "owner": None,
                "attempt": 1,
                "claimToken": None,
            },
            {
                "$set": {
                    "state": S.CANCELLED.value,
                    "lastError": reason,
                    "leaseUntil": None,
                    "updatedAt": now,
                },
                "$inc": {"attempt": -1},  # no platform call was made for it
            },
            hint=BY_ID,
        )
        if result.modified_count == 1:
            cancelled.append(oid)
        else:
            moved.append((attempt_id, oid))
    if moved:
        liveness.release_starts(moved, sentinel)
    return Unstarted(cancelled, [], [oid for _, oid in moved])


def reopen(
    post_id: str, due_at: datetime, platforms: Sequence[str] | None = None, *, retried: bool = False
) -> int:
    """failed / cancelled → pending at ``due_at`` (admin retry or reschedule).

    Published ones are never reopened. A retry records when it happened (``retriedAt``): the
    stale-post limit counts from it. A reschedule moves the scheduled time itself.
    """
    now = utcnow()
    query: dict[str, Any] = {"postId": post_id, "state": {"$in": [S.FAILED.value, S.CANCELLED.value]}}
    if platforms:
        query["platform"] = {"$in": list(platforms)}
    result = deliveries().update_many(
        query,
        {
            "$set": {
                "state": S.PENDING.value,
                "dueAt": due_at,
                "attempt": 0,
                "lookups": 0,
                "lastError": None,
                "errorClass": None,
                "firstTakenAt": None,
                **({"retriedAt": now} if retried else {"scheduledFor": due_at, "retriedAt": None}),
                "updatedAt": now,
            }
        },
    )
    return result.modified_count


def reschedule_open(post_id: str, due_at: datetime) -> int:
    """Move not-yet-started deliveries of a post to a new time."""
    now = utcnow()
    result = deliveries().update_many(
        {"postId": post_id, "state": {"$in": [S.PENDING.value, S.QUEUED.value]}},
        {
            "$set": {
                "state": S.PENDING.value,
                "dueAt": due_at,
                "scheduledFor": due_at,
                "firstTakenAt": None,
                "updatedAt": now,
            }
        },
    )
    return result.modified_count
