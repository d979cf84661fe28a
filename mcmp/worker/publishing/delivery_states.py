"""The delivery state machine: the ONLY module that writes ``Delivery.state``.

Every transition is one conditional update whose filter states the expected prior state (and,
for a worker's attempt, its ``attemptId``), so concurrent dispatchers, redelivered Celery
messages and retries from Flower can never move a delivery twice::

    pending ──claim_due──▶ queued ──start_attempt──▶ in_flight ──complete──▶ published
       ▲  ▲                   │                         │ ├──fail──────────▶ failed
       │  └────reap (lease)───┘                         │ ├──wait_for_auth─▶ waiting_auth ─resume─▶ pending
       └──────schedule_retry / defer / reap (lease)─────┘ └──cancel────────▶ cancelled
    pending / queued ──park_for_auth (the account's token was rejected)──▶ waiting_auth

``needsReconcile`` is set *before* a platform call (with a new ``attemptId``) and cleared only
by a definite outcome, so any crash or ambiguous answer makes the next attempt look the post up
on the platform before posting again.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, InvalidOperation, OperationFailure, PyMongoError

from mcmp.config import get_settings
from mcmp.models import Delivery, DeliveryState, ErrorClass
from mcmp.models.base import as_utc, utcnow
from mcmp.models.db import BY_ID
from mcmp.worker import liveness

log = logging.getLogger(__name__)

S = DeliveryState


def deliveries() -> Collection[dict[str, Any]]:
    collection: Collection[dict[str, Any]] = Delivery._get_collection()
    return collection


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


ClaimHint = dict[str, str]  # token, postId, platform, dueAt [, scheduledFor, lateFrom, taken]: no secrets


@dataclass(frozen=True)
class Taken:
    """One attempt of one delivery, as the state machine handed it to this worker."""

    id: ObjectId
    post_id: str
    platform: str
    attempt: int
    attempt_id: str
    scheduled_for: datetime | None
    late_from: datetime | None  # scheduled time, or a later admin retry: lateness counts from here
    first_pickup: bool  # never taken before (a deferral or crash does not restart the clock)
    uncertain: bool  # may a previous attempt have created the post on the platform?
    created_at: datetime | None = None
    waiting_since: datetime | None = None


class Ensured(NamedTuple):
    created: int
    reopened: int
    claimed: list[dict[str, Any]]  # created already ``queued`` for the caller, see ``ensure``


def ensure(
    new: Sequence[NewDelivery],
    claim_lease_seconds: float | None = None,
    claim_only: Set[int] | None = None,
) -> Ensured:
    """Create missing deliveries; re-open failed/cancelled ones of a post scheduled again.

    Published deliveries are never touched: a post re-scheduled after a partial failure
    re-publishes only the platforms that did not succeed. With ``claim_lease_seconds`` (the
    dispatcher, for posts already inside its look-ahead) new pending deliveries are born
    ``queued`` under a fresh claim token and returned in ``claimed``: the unique (post,
    platform) index makes the insert itself the claim, saving the claim's read-update-read.
    ``claim_only`` (indexes into ``new``) limits that to the deliveries within their tenant's
    share; the others are born ``pending`` and claimed fairly later (never claimed, handed back).
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
        for i, doc in enumerate(docs):
            if doc["state"] == S.PENDING.value and (claim_only is None or i in claim_only):
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
                    "firstTakenAt": None,
                    "retriedAt": None,
                    "updatedAt": now,
                }
            },
        )
        reopened += result.modified_count
    return Ensured(created, reopened, claimed)


def claim_due(horizon: datetime, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
    """Claim up to ``limit`` pending deliveries due by ``horizon``, in due order: pending → queued.

    (The dispatcher chooses fairly across tenants first, :mod:`mcmp.worker.scheduling.fair_share`,
    and claims its choice with :func:`claim_ids`.)
    """
    page = list(
        deliveries()
        .find({"state": S.PENDING.value, "dueAt": {"$lte": horizon}}, {"_id": 1})
        .sort("dueAt", 1)
        .limit(limit)
    )
    return claim_ids([d["_id"] for d in page], lease_seconds)


def claim_ids(ids: Sequence[ObjectId], lease_seconds: float) -> list[dict[str, Any]]:
    """Claim these pending deliveries: pending → queued, returned in the order given.

    One conditional multi-update tagged with a fresh claim token, then a point read of what this
    caller won (atomic per document; a racing dispatcher's update cannot match a delivery that
    is no longer pending).
    """
    if not ids:
        return []
    ids = list(ids)
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
    won = {
        d["_id"]: d
        for d in deliveries().find({"_id": {"$in": ids}, "claimToken": token}, CLAIM_FIELDS, hint=BY_ID)
    }
    return [won[i] for i in ids if i in won]


# What a publish task's ``claim`` hint is made of (ids and names only, never secrets).
CLAIM_FIELDS = {
    "_id": 1,
    "dueAt": 1,
    "postId": 1,
    "platform": 1,
    "claimToken": 1,
    "attempt": 1,
    "needsReconcile": 1,
    "scheduledFor": 1,
    "retriedAt": 1,
    "firstTakenAt": 1,
    "clientId": 1,  # which tenant (fair share) and which account's lane
}


def claim_hint(delivery: Mapping[str, Any]) -> ClaimHint | None:
    """The hint that lets ``start_claimed`` skip a read: only for a first, unambiguous attempt."""
    if delivery.get("attempt", 0) != 0 or delivery.get("needsReconcile") or not delivery.get("claimToken"):
        return None
    hint: ClaimHint = {
        "token": str(delivery["claimToken"]),
        "postId": str(delivery["postId"]),
        "platform": str(delivery["platform"]),
        "dueAt": delivery["dueAt"].isoformat(),
    }
    scheduled = delivery.get("scheduledFor")
    if isinstance(scheduled, datetime):
        hint["scheduledFor"] = scheduled.isoformat()
    late_from = _late_from(delivery)
    if late_from is not None:
        hint["lateFrom"] = late_from.isoformat()
    if delivery.get("firstTakenAt") is not None:
        hint["taken"] = "1"
    return hint


def _late_from(doc: Mapping[str, Any]) -> datetime | None:
    """When lateness counts from: the scheduled time, or a later admin retry."""
    times = [as_utc(doc.get(f)) for f in ("scheduledFor", "retriedAt") if isinstance(doc.get(f), datetime)]
    return max((t for t in times if t is not None), default=None)


def _hinted(hint: Mapping[str, str]) -> tuple[str, str, str, datetime, datetime | None, bool] | None:
    """(token, post id, platform, scheduled for, late from, taken before) or None if garbled."""
    try:  # a hand-made or garbled hint is ignored, never trusted
        token, post_id, platform = (str(hint[k]) for k in ("token", "postId", "platform"))
        scheduled_for = datetime.fromisoformat(str(hint.get("scheduledFor") or hint["dueAt"]))
        late_text = hint.get("lateFrom")
        late_from = datetime.fromisoformat(str(late_text)) if late_text else scheduled_for
    except (KeyError, TypeError, ValueError):
        return None
    return token, post_id, platform, scheduled_for, late_from, bool(hint.get("taken"))


def _take_fields(
    now: datetime, lease_seconds: float, first_pickup: bool, owner: str | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "state": S.IN_FLIGHT.value,
        "attemptId": uuid.uuid4().hex,
        "leaseUntil": now + timedelta(seconds=lease_seconds),
        "needsReconcile": True,
        "owner": owner,
        "updatedAt": now,
    }
    if first_pickup:
        fields["firstTakenAt"] = now
    return fields


def start_claimed(delivery_id: str, hint: Mapping[str, str], lease_seconds: float) -> Taken | None:
    """First attempt of a delivery this caller's dispatcher claimed: queued → in_flight in ONE write.

    The filter is (id, queued, claim token): a token is drawn fresh for every claim and the
    delivery cannot leave ``queued`` without changing state, so a match proves the delivery is
    still exactly as the dispatcher claimed it (attempt 0, nothing to reconcile, this post and
    platform). A stale or duplicated message simply fails to match and the caller falls back
    to ``start_attempt``. Each extra filter field costs SecantusDB a query-planning pass
    (~0.3 ms), hence no more than that.
    """
    parsed = _hinted(hint)
    if parsed is None:
        return None
    token, post_id, platform, scheduled_for, late_from, taken_before = parsed
    now = utcnow()
    oid = _oid(delivery_id)
    cas = {"_id": oid, "state": S.QUEUED.value, "claimToken": token}
    fields = _take_fields(now, lease_seconds, not taken_before, liveness.owner())
    result = deliveries().update_one(cas, {"$set": {**fields, "attempt": 1}})
    if result.modified_count != 1:
        return None
    return Taken(
        id=oid,
        post_id=post_id,
        platform=platform,
        attempt=1,
        attempt_id=fields["attemptId"],
        scheduled_for=scheduled_for,
        late_from=late_from,
        first_pickup=not taken_before,
        uncertain=False,
    )


@dataclass(frozen=True)
class BatchItem:
    """One delivery of a batch message: what its dispatcher read when it claimed it (ids, times)."""

    delivery_id: str
    post_id: str
    platform: str
    scheduled_for: datetime
    late_from: datetime
    taken_before: bool
    attempt: int = 0  # attempts made before this one
    uncertain: bool = False  # must look the post up on the platform before posting


def batch_item(delivery: Mapping[str, Any]) -> list[str] | None:
    """A claimed delivery as a batch message entry (ids, times and flags only; never secrets).

    The claim token in the batch's filter proves the delivery is still as read here (a token is
    drawn per claim and the delivery cannot leave ``queued`` without changing state).
    """
    if not delivery.get("claimToken") or not isinstance(delivery.get("dueAt"), datetime):
        return None
    scheduled = delivery.get("scheduledFor")
    scheduled = scheduled if isinstance(scheduled, datetime) else delivery["dueAt"]
    late_from = _late_from(delivery) or scheduled
    return [
        str(delivery["_id"]),
        str(delivery["postId"]),
        str(delivery["platform"]),
        scheduled.isoformat(),
        late_from.isoformat(),
        "1" if delivery.get("firstTakenAt") is not None else "",
        str(int(delivery.get("attempt") or 0)),
        "1" if delivery.get("needsReconcile") else "",
    ]


def parse_batch_item(entry: Sequence[str]) -> BatchItem | None:
    try:
        delivery_id, post_id, platform, scheduled, late, taken, attempt, uncertain = (str(v) for v in entry)
        return BatchItem(
            delivery_id,
            post_id,
            platform,
            as_utc(datetime.fromisoformat(scheduled)) or datetime.fromisoformat(scheduled),
            as_utc(datetime.fromisoformat(late)) or datetime.fromisoformat(late),
            bool(taken),
            int(attempt),
            bool(uncertain),
        )
    except (TypeError, ValueError):
        return None


def start_batch(items: Sequence[BatchItem], token: str, lease_seconds: float) -> list[Taken]:
    """Take a dispatcher's batch for one attempt each: queued (this claim token) → in_flight.

    First attempts and recovered ones alike (a reaped delivery carries its attempt count and
    ``needsReconcile`` in its item, and is looked up on the platform before anything is posted).

    One ``update_many`` whose filter names the prior state and the claim token, so each delivery
    is a compare-and-swap of its own: one that a racing caller (a re-sent message, a single
    ``publish_delivery``) took first simply does not match. When every delivery matched (the
    usual case) nothing is read back; otherwise one read by the fresh attempt id says which were
    won. The attempt id is drawn per take; with the delivery id it names one attempt. (A client
    ``bulkWrite`` with per-operation results costs SecantusDB twice this; design §11.)
    """
    owner = liveness.owner()
    now = utcnow()
    taken: list[Taken] = []
    # Deliveries a deferral gave back were picked up before: they keep their first pickup time.
    for taken_before in (False, True):
        group = {_oid(i.delivery_id): i for i in items if i.taken_before is taken_before}
        if not group:
            continue
        fields = _take_fields(now, lease_seconds, not taken_before, owner)
        result = deliveries().update_many(
            {"_id": {"$in": list(group)}, "state": S.QUEUED.value, "claimToken": token},
            {"$set": fields, "$inc": {"attempt": 1}},
            hint=BY_ID,
        )
        won = list(group)
        if result.modified_count != len(group):
            query = {"_id": {"$in": won}, "attemptId": fields["attemptId"]}
            won = [d["_id"] for d in deliveries().find(query, {"_id": 1}, hint=BY_ID)]
        taken.extend(
            Taken(
                id=oid,
                post_id=group[oid].post_id,
                platform=group[oid].platform,
                attempt=group[oid].attempt + 1,
                attempt_id=fields["attemptId"],
                scheduled_for=group[oid].scheduled_for,
                late_from=group[oid].late_from,
                first_pickup=not taken_before,
                uncertain=group[oid].uncertain,
            )
            for oid in won
        )
    return taken


def start_attempt(delivery_id: str, lease_seconds: float) -> Taken | None:
    """Take the delivery for one attempt: queued / due pending / abandoned in_flight → in_flight.

    A compare-and-swap: read the delivery, decide in Python whether it may be taken, then one
    ``update_one`` whose filter repeats what was read (state, attemptId, claimToken and the due
    time or lease). Exactly one concurrent caller can match it. (A single findAndModify with an
    ``$or`` filter is equivalent but costs ~100 ms per call on SecantusDB; this costs ~1.2 ms.)
    An in-flight delivery is taken only once its lease expired: a live worker keeps the lease of
    a long call (video processing) extended.

    Returns the attempt, or None when the delivery is not available (published, in flight
    elsewhere, not due …).
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
    first_pickup = before.get("firstTakenAt") is None
    fields = _take_fields(now, lease_seconds, first_pickup, liveness.owner())
    result = deliveries().update_one(cas, {"$set": fields, "$inc": {"attempt": 1}})
    if result.modified_count != 1:
        return None  # another worker took it between our read and our write
    # A delivery that was in flight when its lease expired may have reached the platform.
    return Taken(
        id=before["_id"],
        post_id=str(before["postId"]),
        platform=str(before["platform"]),
        attempt=int(before.get("attempt", 0)) + 1,
        attempt_id=fields["attemptId"],
        scheduled_for=as_utc(before.get("scheduledFor")),
        late_from=_late_from(before),
        first_pickup=first_pickup,
        uncertain=bool(before.get("needsReconcile")) or state == S.IN_FLIGHT.value,
        created_at=as_utc(before.get("createdAt")),
        waiting_since=as_utc(before.get("waitingSince")),
    )


# --- leaving in_flight: one compare-and-swap on (id, in_flight, attemptId) per transition -------


@dataclass(frozen=True)
class Transition:
    """One conditional write that moves an attempt out of ``in_flight`` (filter names the attempt)."""

    taken: Taken
    to: DeliveryState
    filter: dict[str, Any]
    update: dict[str, Any]


def _leave_in_flight(
    taken: Taken, to: DeliveryState, fields: Mapping[str, Any], *, give_back_attempt: bool = False
) -> Transition:
    """in_flight → ``to`` for this attempt only; ``give_back_attempt`` when no platform call counted."""
    update: dict[str, Any] = {
        "$set": {"state": to.value, "leaseUntil": None, "owner": None, "updatedAt": utcnow(), **fields}
    }
    if give_back_attempt:
        update["$inc"] = {"attempt": -1}
    return Transition(
        taken, to, {"_id": taken.id, "state": S.IN_FLIGHT.value, "attemptId": taken.attempt_id}, update
    )


def apply(transition: Transition) -> bool:
    """Write one transition; False when this attempt no longer owns the delivery."""
    # The hint keeps SecantusDB from planning (state, dueAt) for an ``_id`` match.
    return deliveries().update_one(transition.filter, transition.update, hint=BY_ID).modified_count == 1


def apply_many(transitions: Sequence[Transition]) -> list[bool]:
    """Write many transitions in one command where the server has client ``bulkWrite`` (MongoDB 8).

    Each result says whether that attempt still owned its delivery (an outcome whose attempt no
    longer owns the delivery is dropped, exactly as one by one). Older servers get one
    conditional write per transition.
    """
    if not transitions:
        return []
    if len(transitions) > 1 and _client_bulk_write():
        coll = deliveries()
        namespace = f"{coll.database.name}.{coll.name}"
        try:
            result = coll.database.client.bulk_write(
                [UpdateOne(t.filter, t.update, namespace=namespace, hint=BY_ID) for t in transitions],
                ordered=False,
                verbose_results=True,
            )
            return [result.update_results[i].modified_count == 1 for i in range(len(transitions))]
        except (InvalidOperation, OperationFailure) as exc:
            log.info("client bulkWrite unavailable (%s); writing one by one", type(exc).__name__)
            _client_bulk_write.cache_clear()
            _NO_CLIENT_BULK.add(True)
    return [apply(t) for t in transitions]


_NO_CLIENT_BULK: set[bool] = set()


@functools.cache
def _client_bulk_write() -> bool:
    """Does the server speak client ``bulkWrite`` (wire version 25, MongoDB 8.0)?"""
    if _NO_CLIENT_BULK:
        return False
    try:
        hello = deliveries().database.client.admin.command("hello")
    except PyMongoError:
        return False
    return int(hello.get("maxWireVersion", 0)) >= 25


def complete_op(
    taken: Taken,
    platform_post_id: str,
    url: str | None,
    published_at: datetime,
    call_started_at: datetime | None,
) -> Transition:
    """in_flight → published. The same write starts the analytics schedule (``analyticsDueAt``)."""
    from mcmp.worker.analytics.snapshots import first_snapshot_due

    return _leave_in_flight(
        taken,
        S.PUBLISHED,
        {
            "platformPostId": platform_post_id,
            "platformUrl": url,
            "publishedAt": published_at,
            "callStartedAt": call_started_at,
            "needsReconcile": False,
            "lastError": None,
            "errorClass": None,
            "analyticsDueAt": first_snapshot_due(published_at),
        },
    )


def retry_op(
    taken: Taken,
    due_at: datetime,
    error: str,
    error_class: ErrorClass,
    *,
    needs_reconcile: bool,
    consume_attempt: bool = True,
) -> Transition:
    """in_flight → pending at ``due_at``. A deferral (rate limit) gives the attempt back."""
    return _leave_in_flight(
        taken,
        S.PENDING,
        {
            "dueAt": due_at,
            "needsReconcile": needs_reconcile,
            "lastError": error,
            "errorClass": error_class.value,
        },
        give_back_attempt=not consume_attempt,
    )


def wait_for_auth_op(taken: Taken, error: str, *, needs_reconcile: bool) -> Transition:
    """in_flight → waiting_auth; the attempt is given back (the platform refused to act)."""
    return _leave_in_flight(
        taken,
        S.WAITING_AUTH,
        {
            "needsReconcile": needs_reconcile,
            "lastError": error,
            "errorClass": ErrorClass.AUTH.value,
            "waitingSince": taken.waiting_since or utcnow(),
        },
        give_back_attempt=True,
    )


def fail_op(
    taken: Taken, error: str, error_class: ErrorClass, *, needs_reconcile: bool = False
) -> Transition:
    """in_flight → failed, with a readable reason.

    ``needs_reconcile`` keeps the flag of a delivery failed while still uncertain (its lookup
    never answered): an operator's retry then looks the post up again before posting.
    """
    return _leave_in_flight(
        taken,
        S.FAILED,
        {"needsReconcile": needs_reconcile, "lastError": error, "errorClass": error_class.value},
    )


def handoff_op(taken: Taken, token: str, lease_seconds: float) -> Transition:
    """in_flight → queued under ``token`` for the long lane, before any platform call was made.

    The attempt is given back and the flags are as before it (``needsReconcile`` as it was, first
    pickup kept: lateness was judged when it was first taken); the queued lease covers the hop.
    """
    return _leave_in_flight(
        taken,
        S.QUEUED,
        {
            "claimToken": token,
            "leaseUntil": utcnow() + timedelta(seconds=lease_seconds),
            "needsReconcile": taken.uncertain,
        },
        give_back_attempt=True,
    )


def note_lookup(taken: Taken) -> int:
    """Count one lookup of an uncertain delivery on the platform; returns how many were made."""
    doc = deliveries().find_one_and_update(
        {"_id": taken.id, "state": S.IN_FLIGHT.value, "attemptId": taken.attempt_id},
        {"$inc": {"lookups": 1}},
        projection={"lookups": 1},
        return_document=ReturnDocument.AFTER,
    )
    return int((doc or {}).get("lookups") or 1)


def cancel_op(taken: Taken, reason: str) -> Transition:
    """in_flight → cancelled (the post left ``scheduled`` before this platform was called)."""
    return _leave_in_flight(
        taken, S.CANCELLED, {"needsReconcile": False, "lastError": reason}, give_back_attempt=True
    )


def release_op(
    taken: Taken, due_at: datetime, *, needs_reconcile: bool, note: str | None = None
) -> Transition:
    """in_flight → pending without a platform call (rescheduled post, campaign not started).

    The delivery counts as never picked up: lateness counts from its new time.
    """
    fields: dict[str, Any] = {
        "dueAt": due_at,
        "scheduledFor": due_at,
        "needsReconcile": needs_reconcile,
        "firstTakenAt": None,
    }
    if note:
        fields["lastError"] = note
    return _leave_in_flight(taken, S.PENDING, fields, give_back_attempt=True)


def complete(
    taken: Taken,
    platform_post_id: str,
    url: str | None,
    published_at: datetime,
    call_started_at: datetime | None,
) -> bool:
    return apply(complete_op(taken, platform_post_id, url, published_at, call_started_at))


def schedule_retry(
    taken: Taken,
    due_at: datetime,
    error: str,
    error_class: ErrorClass,
    *,
    needs_reconcile: bool,
    consume_attempt: bool = True,
) -> bool:
    return apply(
        retry_op(
            taken,
            due_at,
            error,
            error_class,
            needs_reconcile=needs_reconcile,
            consume_attempt=consume_attempt,
        )
    )


def wait_for_auth(taken: Taken, error: str, *, needs_reconcile: bool) -> bool:
    return apply(wait_for_auth_op(taken, error, needs_reconcile=needs_reconcile))


def fail(taken: Taken, error: str, error_class: ErrorClass) -> bool:
    return apply(fail_op(taken, error, error_class))


def cancel_attempt(taken: Taken, reason: str) -> bool:
    return apply(cancel_op(taken, reason))


def release(taken: Taken, due_at: datetime, *, needs_reconcile: bool, note: str | None = None) -> bool:
    return apply(release_op(taken, due_at, needs_reconcile=needs_reconcile, note=note))


# --- transitions driven by maintenance, the admin API or account events ------------------


def reap_expired_leases() -> tuple[int, int]:
    """Return abandoned deliveries to pending now: (from queued, from in_flight).

    ``queued`` ones whose lease expired (their message never ran). ``in_flight`` ones whose
    owner's liveness key is gone (a killed worker: seconds, not a lease), or whose lease expired
    (a live owner extends the lease of every attempt it still runs, so an expired one ended
    without recording). In-flight ones keep ``needsReconcile`` (set before the call), so they are
    looked up on the platform first.
    """
    now = utcnow()
    settings = get_settings()
    # A queued delivery was claimed at most a look-ahead before its due time, so an expired
    # lease implies this bound on ``dueAt``: the (state, dueAt) index then skips a backlog of
    # freshly queued deliveries instead of reading each one every pass.
    due_bound = now + timedelta(seconds=settings.lookahead_seconds + 1 - settings.queued_lease_seconds)
    queued = deliveries().update_many(
        {"state": S.QUEUED.value, "dueAt": {"$lt": due_bound}, "leaseUntil": {"$lt": now}},
        {"$set": {"state": S.PENDING.value, "dueAt": now, "leaseUntil": None, "updatedAt": now}},
    )
    # Bounded by the workers' total concurrency, whatever the backlog.
    in_flight = list(deliveries().find({"state": S.IN_FLIGHT.value}, {"owner": 1, "leaseUntil": 1}))
    owners = {str(d["owner"]) for d in in_flight if d.get("owner")}
    live = liveness.alive(owners) if owners else set()
    dead = sorted(owners - live) if live is not None else []
    abandoned = [
        d["_id"]
        for d in in_flight
        if d.get("owner") in dead or (d.get("leaseUntil") is not None and d["leaseUntil"] < now)
    ]
    reaped = 0
    if abandoned:
        # Owner or lease in the filter: a newer attempt has a live owner and a fresh lease.
        reaped = (
            deliveries()
            .update_many(
                {
                    "_id": {"$in": abandoned},
                    "state": S.IN_FLIGHT.value,
                    "$or": [{"owner": {"$in": dead}}, {"leaseUntil": {"$lt": now}}],
                },
                {
                    "$set": {
                        "state": S.PENDING.value,
                        "dueAt": now,
                        "leaseUntil": None,
                        "owner": None,
                        "needsReconcile": True,
                        "updatedAt": now,
                    }
                },
                hint=BY_ID,
            )
            .modified_count
        )
    return queued.modified_count, reaped


def extend_leases(ids: Sequence[ObjectId], owner: str) -> None:
    """Keep the leases of this owner's attempts that are still running (long platform calls)."""
    now = utcnow()
    lease = now + timedelta(seconds=get_settings().inflight_lease_seconds)
    result = deliveries().update_many(
        {"_id": {"$in": list(ids)}, "state": S.IN_FLIGHT.value, "owner": owner},
        {"$set": {"leaseUntil": lease, "updatedAt": now}},
        hint=BY_ID,
    )
    if result.modified_count:
        log.info("kept the lease of %d long-running attempts", result.modified_count)


liveness.keep_leases_with(extend_leases)


def still_owned(taken: Taken) -> bool:
    """Does this attempt still own its delivery (in flight under its attempt id)?"""
    found = deliveries().find_one(
        {"_id": taken.id, "state": S.IN_FLIGHT.value, "attemptId": taken.attempt_id}, {"_id": 1}, hint=BY_ID
    )
    return found is not None


def stranded(overdue_seconds: float, limit: int, lost_after: datetime) -> list[dict[str, Any]]:
    """``queued`` deliveries whose message was sent before ``lost_after`` and is overdue by
    ``overdue_seconds``: marked re-sent.

    ``lost_after`` is the last moment a message may have been lost (a worker died holding its
    prefetched messages, or the broker restarted: :func:`mcmp.worker.liveness.last_loss`). A
    message sent (claimed, ``updatedAt``, or re-sent, ``resentAt``) after it is in the queue or
    in a live worker's hands, however long a backlog keeps it there. Sending a lost one again is
    safe: whichever copy runs first takes the delivery, the other finds it taken; the mark keeps it
    from being sent again until another loss.
    """
    now = utcnow()
    sent_before = min(now - timedelta(seconds=overdue_seconds), as_utc(lost_after))
    page = list(
        deliveries()
        .find(
            {
                "state": S.QUEUED.value,
                "dueAt": {"$lt": now - timedelta(seconds=overdue_seconds)},
                "updatedAt": {"$lt": sent_before},
                "$or": [{"resentAt": None}, {"resentAt": {"$lt": sent_before}}],
            },
            CLAIM_FIELDS,
        )
        .limit(limit)
    )
    if page:
        deliveries().update_many(
            {"_id": {"$in": [d["_id"] for d in page]}, "state": S.QUEUED.value},
            {"$set": {"resentAt": now}},
            hint=BY_ID,
        )
    return page


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


def for_post(post_id: str) -> list[dict[str, Any]]:
    return list(deliveries().find({"postId": post_id}))


def for_posts(post_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The deliveries of many posts in one query, by post id."""
    found: dict[str, list[dict[str, Any]]] = {post_id: [] for post_id in post_ids}
    for d in deliveries().find({"postId": {"$in": list(post_ids)}}):
        found.setdefault(d["postId"], []).append(d)
    return found


def unclaim(ids: Sequence[ObjectId], *, keep_due: bool = False) -> int:
    """queued → pending now (the publish message could not be sent to the broker).

    ``keep_due``: at its own due time instead (claimed beyond its tenant's fair share).
    """
    now = utcnow()
    fields: dict[str, Any] = {"state": S.PENDING.value, "leaseUntil": None, "updatedAt": now}
    if not keep_due:
        fields["dueAt"] = now
    result = deliveries().update_many(
        {"_id": {"$in": list(ids)}, "state": S.QUEUED.value}, {"$set": fields}, hint=BY_ID
    )
    return result.modified_count
