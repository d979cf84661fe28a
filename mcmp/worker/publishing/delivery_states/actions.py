"""Transitions driven by account events and the admin API: parking for re-auth, resuming, failing
a delivery that waited too long, cancelling, reopening and rescheduling."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from mcmp.models import ErrorClass
from mcmp.models.base import utcnow
from mcmp.worker.publishing.delivery_states.store import (
    S,
    deliveries,
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
    due = deliveries().update_many(
        {**query, "$or": [{"dueAt": {"$lte": now}}, {"dueAt": None}]}, {"$set": {**resume, "dueAt": now}}
    )
    later = deliveries().update_many(query, {"$set": resume})  # the rest: due in the future
    return due.modified_count + later.modified_count


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
