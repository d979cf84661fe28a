"""The delivery state machine: the ONLY module that writes ``Delivery.state``.

Every transition is one conditional update whose filter states the expected prior state (and,
for a worker's attempt, its ``attemptId``), so concurrent dispatchers, redelivered Celery
messages and retries from Flower can never move a delivery twice::

    pending ──claim_due──▶ queued ──start_attempt──▶ in_flight ──complete──▶ published
       ▲  ▲                   │                         │ ├──fail──────────▶ failed
       │  └────reap (lease)───┘                         │ ├──wait_for_auth─▶ waiting_auth ─resume─▶ pending
       └──────schedule_retry / defer / reap (lease)─────┘ └──cancel────────▶ cancelled

``needsReconcile`` is set *before* a platform call (with a new ``attemptId``) and cleared only
by a definite outcome, so any crash or ambiguous answer makes the next attempt look the post up
on the platform before posting again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from bson import ObjectId
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from mcmp.models import Delivery, DeliveryState, ErrorClass
from mcmp.models.base import utcnow
from mcmp.models.db import BY_ID

log = logging.getLogger(__name__)

S = DeliveryState


def deliveries() -> Collection:
    return Delivery._get_collection()


def _oid(value: str | ObjectId) -> ObjectId:
    return value if isinstance(value, ObjectId) else ObjectId(value)


@dataclass(frozen=True)
class NewDelivery:
    post_id: str
    client_id: str
    platform: str
    due_at: datetime
    state: DeliveryState = S.PENDING
    last_error: str | None = None
    error_class: ErrorClass | None = None


class Ensured(NamedTuple):
    created: int
    reopened: int
    claimed: list[dict[str, Any]]  # created already ``queued`` for the caller, see ``ensure``


def ensure(new: Sequence[NewDelivery], claim_lease_seconds: float | None = None) -> Ensured:
    """Create missing deliveries; re-open failed/cancelled ones of a post scheduled again.

    Published deliveries are never touched: a post re-scheduled after a partial failure
    re-publishes only the platforms that did not succeed. With ``claim_lease_seconds`` (the
    dispatcher, for posts already inside its look-ahead) new pending deliveries are born
    ``queued`` under a fresh claim token and returned in ``claimed``: the unique (post,
    platform) index makes the insert itself the claim, saving the claim's read-update-read.
    """
    if not new:
        return Ensured(0, 0, [])
    now = utcnow()
    token = uuid.uuid4().hex if claim_lease_seconds is not None else None
    docs = [
        {
            "_id": ObjectId(),
            "postId": d.post_id,
            "clientId": d.client_id,
            "platform": d.platform,
            "state": d.state.value,
            "dueAt": d.due_at,
            "scheduledFor": d.due_at,
            "attempt": 0,
            "needsReconcile": False,
            "lastError": d.last_error,
            "errorClass": d.error_class.value if d.error_class else None,
            "createdAt": now,
            "updatedAt": now,
        }
        for d in new
    ]
    if token is not None:
        for doc in docs:
            if doc["state"] == S.PENDING.value:
                lease = now + timedelta(seconds=claim_lease_seconds or 0)
                doc.update(state=S.QUEUED.value, claimToken=token, leaseUntil=lease)
    created = len(docs)
    dup_indexes: set[int] = set()
    try:
        deliveries().insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        dup_indexes = {e["index"] for e in exc.details.get("writeErrors", []) if e.get("code") == 11000}
        others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
        if others:
            raise
        created -= len(dup_indexes)
    duplicates = [new[i] for i in sorted(dup_indexes)]
    claimed = [doc for i, doc in enumerate(docs) if i not in dup_indexes and doc["state"] == S.QUEUED.value]
    reopened = 0
    for d in duplicates:
        if d.state is not S.PENDING:
            continue
        result = deliveries().update_one(
            {
                "postId": d.post_id,
                "platform": d.platform,
                "state": {"$in": [S.FAILED.value, S.CANCELLED.value]},
            },
            {
                "$set": {
                    "state": S.PENDING.value,
                    "dueAt": d.due_at,
                    "scheduledFor": d.due_at,
                    "attempt": 0,
                    "lastError": None,
                    "errorClass": None,
                    "updatedAt": now,
                }
            },
        )
        reopened += result.modified_count
    return Ensured(created, reopened, claimed)


def claim_due(horizon: datetime, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
    """Claim up to ``limit`` pending deliveries due by ``horizon``: pending → queued.

    One indexed page read plus one conditional multi-update tagged with a fresh claim token,
    then a point read of what this caller won (atomic per document; a racing dispatcher's
    update cannot match a delivery that is no longer pending).
    """
    page = list(
        deliveries()
        .find({"state": S.PENDING.value, "dueAt": {"$lte": horizon}}, {"_id": 1})
        .sort("dueAt", 1)
        .limit(limit)
    )
    if not page:
        return []
    ids = [d["_id"] for d in page]
    token = uuid.uuid4().hex
    now = utcnow()
    deliveries().update_many(
        {"_id": {"$in": ids}, "state": S.PENDING.value},
        {
            "$set": {
                "state": S.QUEUED.value,
                "claimToken": token,
                "leaseUntil": now + timedelta(seconds=lease_seconds),
                "updatedAt": now,
            }
        },
        hint=BY_ID,
    )
    return list(deliveries().find({"_id": {"$in": ids}, "claimToken": token}, CLAIM_FIELDS, hint=BY_ID))


# What a publish task's ``claim`` hint is made of (ids and names only, never secrets).
CLAIM_FIELDS = {
    "_id": 1,
    "dueAt": 1,
    "postId": 1,
    "platform": 1,
    "claimToken": 1,
    "attempt": 1,
    "needsReconcile": 1,
}


def claim_hint(delivery: dict[str, Any]) -> dict[str, str] | None:
    """The hint that lets ``start_claimed`` skip a read: only for a first, unambiguous attempt."""
    if delivery.get("attempt", 0) != 0 or delivery.get("needsReconcile") or not delivery.get("claimToken"):
        return None
    return {
        "token": str(delivery["claimToken"]),
        "postId": str(delivery["postId"]),
        "platform": str(delivery["platform"]),
        "dueAt": delivery["dueAt"].isoformat(),
    }


def start_claimed(
    delivery_id: str, hint: dict[str, str], lease_seconds: float
) -> tuple[dict[str, Any], bool] | None:
    """First attempt of a delivery this caller's dispatcher claimed: queued → in_flight in ONE write.

    The filter is (id, queued, claim token): a token is drawn fresh for every claim and the
    delivery cannot leave ``queued`` without changing state, so a match proves the delivery is
    still exactly as the dispatcher claimed it (attempt 0, nothing to reconcile, this post and
    platform). A stale or duplicated message simply fails to match and the caller falls back
    to ``start_attempt``. Each extra filter field costs SecantusDB a query-planning pass
    (~0.3 ms), hence no more than that. Returns what ``start_attempt`` returns.
    """
    try:  # a hand-made or garbled hint is ignored, never trusted
        token, post_id, platform = (str(hint[k]) for k in ("token", "postId", "platform"))
        scheduled_for = datetime.fromisoformat(str(hint["dueAt"]))
    except (KeyError, TypeError, ValueError):
        return None
    now = utcnow()
    cas = {"_id": _oid(delivery_id), "state": S.QUEUED.value, "claimToken": token}
    taken = {
        "state": S.IN_FLIGHT.value,
        "attemptId": uuid.uuid4().hex,
        "leaseUntil": now + timedelta(seconds=lease_seconds),
        "needsReconcile": True,
        "attempt": 1,
    }
    result = deliveries().update_one(cas, {"$set": {**taken, "updatedAt": now}})
    if result.modified_count != 1:
        return None
    claimed = {"postId": post_id, "platform": platform, "scheduledFor": scheduled_for}
    return {**cas, **taken, **claimed}, False


def start_attempt(delivery_id: str, lease_seconds: float) -> tuple[dict[str, Any], bool] | None:
    """Take the delivery for one attempt: queued / due pending / lease-expired in_flight → in_flight.

    A compare-and-swap: read the delivery, decide in Python whether it may be taken, then one
    ``update_one`` whose filter repeats what was read (state, attemptId, claimToken and the due
    time or lease). Exactly one concurrent caller can match it. (A single findAndModify with an
    ``$or`` filter is equivalent but costs ~100 ms per call on SecantusDB; this costs ~1.2 ms.)

    Returns (delivery after the update, "may the previous attempt have reached the platform"),
    or None when the delivery is not available (published, in flight elsewhere, not due …).
    """
    now = utcnow()
    before = deliveries().find_one({"_id": _oid(delivery_id)})
    if before is None:
        return None
    state = before.get("state")
    cas: dict[str, Any] = {
        "_id": before["_id"],
        "state": state,
        "attemptId": before.get("attemptId"),
        "claimToken": before.get("claimToken"),
    }
    if state == S.PENDING.value:
        due = before.get("dueAt")
        if due is None or due > now:
            return None
        cas["dueAt"] = due
    elif state == S.IN_FLIGHT.value:
        lease = before.get("leaseUntil")
        if lease is not None and lease >= now:
            return None
        cas["leaseUntil"] = lease
    elif state != S.QUEUED.value:
        return None
    attempt_id = uuid.uuid4().hex
    result = deliveries().update_one(
        cas,
        {
            "$set": {
                "state": S.IN_FLIGHT.value,
                "attemptId": attempt_id,
                "leaseUntil": now + timedelta(seconds=lease_seconds),
                "needsReconcile": True,
                "updatedAt": now,
            },
            "$inc": {"attempt": 1},
        },
    )
    if result.modified_count != 1:
        return None  # another worker took it between our read and our write
    after = dict(before)
    after.update(state=S.IN_FLIGHT.value, attemptId=attempt_id, attempt=before.get("attempt", 0) + 1)
    # A delivery that was in flight when its lease expired may have reached the platform.
    was_ambiguous = bool(before.get("needsReconcile")) or state == S.IN_FLIGHT.value
    return after, was_ambiguous


def _attempt_filter(delivery: dict[str, Any]) -> dict[str, Any]:
    return {"_id": delivery["_id"], "state": S.IN_FLIGHT.value, "attemptId": delivery["attemptId"]}


def extend_lease(delivery: dict[str, Any], lease_seconds: float) -> bool:
    """Keep a long attempt (e.g. Instagram container polling) from being reaped."""
    now = utcnow()
    result = deliveries().update_one(
        _attempt_filter(delivery),
        {"$set": {"leaseUntil": now + timedelta(seconds=lease_seconds), "updatedAt": now}},
    )
    return result.modified_count == 1


def complete(
    delivery: dict[str, Any],
    platform_post_id: str,
    url: str | None,
    published_at: datetime,
    call_started_at: datetime | None,
) -> bool:
    """in_flight → published, only if this attempt still owns the delivery.

    The same write starts the analytics schedule (``analyticsDueAt`` = first snapshot slot), so
    a published delivery can never miss its snapshots and no extra round trip is spent.
    """
    from mcmp.worker.analytics.snapshots import first_snapshot_due

    now = utcnow()
    result = deliveries().update_one(
        _attempt_filter(delivery),
        {
            "$set": {
                "state": S.PUBLISHED.value,
                "platformPostId": platform_post_id,
                "platformUrl": url,
                "publishedAt": published_at,
                "callStartedAt": call_started_at,
                "needsReconcile": False,
                "leaseUntil": None,
                "lastError": None,
                "errorClass": None,
                "analyticsDueAt": first_snapshot_due(published_at),
                "updatedAt": now,
            }
        },
    )
    return result.modified_count == 1


def schedule_retry(
    delivery: dict[str, Any],
    due_at: datetime,
    error: str,
    error_class: ErrorClass,
    *,
    needs_reconcile: bool,
    consume_attempt: bool = True,
) -> bool:
    """in_flight → pending at ``due_at``. A deferral (rate limit) gives the attempt back."""
    now = utcnow()
    update: dict[str, Any] = {
        "$set": {
            "state": S.PENDING.value,
            "dueAt": due_at,
            "needsReconcile": needs_reconcile,
            "leaseUntil": None,
            "lastError": error,
            "errorClass": error_class.value,
            "updatedAt": now,
        }
    }
    if not consume_attempt:
        update["$inc"] = {"attempt": -1}
    return deliveries().update_one(_attempt_filter(delivery), update).modified_count == 1


def wait_for_auth(delivery: dict[str, Any], error: str, *, needs_reconcile: bool) -> bool:
    """in_flight → waiting_auth; the attempt is given back (the platform refused to act)."""
    now = utcnow()
    return (
        deliveries()
        .update_one(
            _attempt_filter(delivery),
            {
                "$set": {
                    "state": S.WAITING_AUTH.value,
                    "needsReconcile": needs_reconcile,
                    "leaseUntil": None,
                    "lastError": error,
                    "errorClass": ErrorClass.AUTH.value,
                    "waitingSince": delivery.get("waitingSince") or now,
                    "updatedAt": now,
                },
                "$inc": {"attempt": -1},
            },
        )
        .modified_count
        == 1
    )


def fail(delivery: dict[str, Any], error: str, error_class: ErrorClass) -> bool:
    """in_flight → failed, with a readable reason."""
    now = utcnow()
    return (
        deliveries()
        .update_one(
            _attempt_filter(delivery),
            {
                "$set": {
                    "state": S.FAILED.value,
                    "needsReconcile": False,
                    "leaseUntil": None,
                    "lastError": error,
                    "errorClass": error_class.value,
                    "updatedAt": now,
                }
            },
        )
        .modified_count
        == 1
    )


def cancel_attempt(delivery: dict[str, Any], reason: str) -> bool:
    """in_flight → cancelled (the post left ``scheduled`` before this platform was called)."""
    now = utcnow()
    return (
        deliveries()
        .update_one(
            _attempt_filter(delivery),
            {
                "$set": {
                    "state": S.CANCELLED.value,
                    "needsReconcile": False,
                    "leaseUntil": None,
                    "lastError": reason,
                    "updatedAt": now,
                },
                "$inc": {"attempt": -1},
            },
        )
        .modified_count
        == 1
    )


def release(
    delivery: dict[str, Any], due_at: datetime, *, needs_reconcile: bool, note: str | None = None
) -> bool:
    """in_flight → pending without a platform call (rescheduled post, worker shutting down)."""
    now = utcnow()
    update: dict[str, Any] = {
        "$set": {
            "state": S.PENDING.value,
            "dueAt": due_at,
            "scheduledFor": due_at,
            "needsReconcile": needs_reconcile,
            "leaseUntil": None,
            "updatedAt": now,
        },
        "$inc": {"attempt": -1},
    }
    if note:
        update["$set"]["lastError"] = note
    return deliveries().update_one(_attempt_filter(delivery), update).modified_count == 1


# --- transitions driven by maintenance, the admin API or account events ------------------


def reap_expired_leases() -> tuple[int, int]:
    """Return deliveries whose lease expired to pending: (from queued, from in_flight).

    In-flight ones keep ``needsReconcile`` (set before the call), so they are looked up first.
    """
    now = utcnow()
    queued = deliveries().update_many(
        {"state": S.QUEUED.value, "leaseUntil": {"$lt": now}},
        {"$set": {"state": S.PENDING.value, "dueAt": now, "leaseUntil": None, "updatedAt": now}},
    )
    in_flight = deliveries().update_many(
        {"state": S.IN_FLIGHT.value, "leaseUntil": {"$lt": now}},
        {
            "$set": {
                "state": S.PENDING.value,
                "dueAt": now,
                "leaseUntil": None,
                "needsReconcile": True,
                "updatedAt": now,
            }
        },
    )
    return queued.modified_count, in_flight.modified_count


def resume_waiting(
    post_ids: Iterable[str] | None = None, platform: str | None = None, client_id: str | None = None
) -> int:
    """waiting_auth → pending now (the account was reconnected)."""
    now = utcnow()
    query: dict[str, Any] = {"state": S.WAITING_AUTH.value}
    if post_ids is not None:
        query["postId"] = {"$in": list(post_ids)}
    if platform is not None:
        query["platform"] = platform
    if client_id is not None:
        query["clientId"] = client_id
    result = deliveries().update_many(
        query, {"$set": {"state": S.PENDING.value, "dueAt": now, "waitingSince": None, "updatedAt": now}}
    )
    return result.modified_count


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


def reopen(post_id: str, due_at: datetime, platforms: Sequence[str] | None = None) -> int:
    """failed / cancelled → pending at ``due_at`` (admin retry). Published ones are never reopened."""
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
                "lastError": None,
                "errorClass": None,
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
        {"$set": {"state": S.PENDING.value, "dueAt": due_at, "scheduledFor": due_at, "updatedAt": now}},
    )
    return result.modified_count


def for_post(post_id: str) -> list[dict[str, Any]]:
    return list(deliveries().find({"postId": post_id}))


def for_posts(post_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The deliveries of many posts in one query, by post id."""
    found: dict[str, list[dict[str, Any]]] = {post_id: [] for post_id in post_ids}
    for d in deliveries().find({"postId": {"$in": list(post_ids)}}):
        found.setdefault(d["postId"], []).append(d)
    return found


def unclaim(ids: Sequence[ObjectId]) -> int:
    """queued → pending now (the publish message could not be sent to the broker)."""
    now = utcnow()
    result = deliveries().update_many(
        {"_id": {"$in": list(ids)}, "state": S.QUEUED.value},
        {"$set": {"state": S.PENDING.value, "dueAt": now, "leaseUntil": None, "updatedAt": now}},
        hint=BY_ID,
    )
    return result.modified_count
