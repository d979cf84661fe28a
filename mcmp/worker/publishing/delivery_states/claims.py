"""The dispatcher's writes: deliveries created (born ``queued`` under a claim token within their
tenant's share), pending ones claimed, claims handed back, and what a publish message carries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from bson import ObjectId
from pymongo.errors import BulkWriteError

from mcmp.models import DeliveryState, ErrorClass
from mcmp.models.base import as_utc, utcnow
from mcmp.models.db import BY_ID
from mcmp.models.delivery import DeliveryDoc, deliveries
from mcmp.models.id_batches import find_in, id_batches
from mcmp.worker import liveness
from mcmp.worker.publishing.delivery_states.store import (
    S,
    lateness_start,
)

log = logging.getLogger(__name__)


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
    taken: list[DeliveryDoc]  # created already ``in_flight`` for the caller, see ``ensure``


def ensure(
    new: Sequence[NewDelivery],
    take_lease_seconds: float | None = None,
    take_only: Set[int] | None = None,
) -> Ensured:
    """Create missing deliveries; re-open failed/cancelled ones of a post scheduled again.

    Published deliveries are never touched: a post re-scheduled after a partial failure
    re-publishes only the platforms that did not succeed. With ``take_lease_seconds`` (the
    dispatcher, for posts already inside its look-ahead) new pending deliveries are born taken
    for their first attempt and returned in ``taken``: ``in_flight`` under one fresh attempt id,
    attempt 1, ``needsReconcile`` set (a crash from here on is reconciled, never repeated), no
    owner, and a lease from their due time that covers the queue and the call. The unique (post,
    platform) index makes the insert itself the compare-and-swap, so claim and take are this one
    write; the worker that starts one writes nothing (:func:`..attempts.start_born`), the outcome
    is the delivery's second and last write. ``take_only`` (indexes into ``new``) limits that to
    the deliveries within their tenant's share; the others are born ``pending`` and claimed
    fairly later.
    """
    if not new:
        return Ensured(0, 0, [])
    if take_lease_seconds is not None:
        # born after it: a start key lost with Redis's data since is told apart by birth time
        liveness.mark_data_since()
    now = utcnow()
    attempt_id = uuid.uuid4().hex if take_lease_seconds is not None else None
    docs: list[DeliveryDoc] = [
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
    if attempt_id is not None:
        for i, doc in enumerate(docs):
            if doc["state"] == S.PENDING.value and (take_only is None or i in take_only):
                start = max(now, as_utc(new[i].due_at) or now)
                doc.update(_born_taken(attempt_id, now, start + timedelta(seconds=take_lease_seconds or 0)))
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
    taken = [doc for i, doc in enumerate(docs) if i not in dup_indexes and doc["state"] == S.IN_FLIGHT.value]
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
    return Ensured(created, reopened, taken)


def _born_taken(attempt_id: str, now: datetime, lease_until: datetime) -> DeliveryDoc:
    """The fields of a delivery taken for its first attempt by the dispatcher's own write: in
    flight under ``attempt_id``, ``needsReconcile`` set before any call, no owner until a worker
    needs one (:func:`..attempts.start_born`)."""
    return {
        "state": S.IN_FLIGHT.value,
        "attempt": 1,
        "attemptId": attempt_id,
        "needsReconcile": True,
        "owner": None,
        "firstTakenAt": now,
        "leaseUntil": lease_until,
    }


def claim_ids(ids: Sequence[ObjectId], lease_seconds: float) -> list[DeliveryDoc]:
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
    for chunk in id_batches(ids):
        deliveries().update_many(
            {"_id": {"$in": chunk}, "state": S.PENDING.value},
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
    # What this caller won, read by _id alone and filtered here: SecantusDB serves ``_id $in`` by
    # key lookups, but with another field beside it under a hint on ``_id_`` it walked the whole
    # collection (3.7 s of its CPU per claim of 200 at 10,000 deliveries; bench/server_ops.py).
    won = {
        d["_id"]: d
        for d in find_in(deliveries(), "_id", ids, None, CLAIM_FIELDS)
        if d.get("claimToken") == token
    }
    return [won[i] for i in ids if i in won]


def claim_taken(ids: Sequence[ObjectId], lease_seconds: float) -> list[DeliveryDoc]:
    """Claim these pending deliveries for the dispatcher's message, each as few writes as it can.

    A first attempt (never taken, nothing to look up) goes pending → ``in_flight`` under one fresh
    attempt id, ``needsReconcile`` set and no owner: taken as ``ensure`` creates one born taken, so
    its worker starts it without a write (:func:`..attempts.start_born`) and a delivery claimed
    after waiting behind its tenant's cap costs three writes (insert, claim, outcome) instead of
    four. One with an attempt behind it (a retry, a hand-back that must look the post up first)
    is claimed ``queued`` (:func:`claim_ids`): its worker's take records the new attempt. Returned
    in the order given; a racing dispatcher cannot take what is no longer pending.
    """
    if not ids:
        return []
    ids = list(ids)
    liveness.mark_data_since()  # taken after it: a start key lost with Redis's data is told apart
    attempt_id = uuid.uuid4().hex
    now = utcnow()
    for chunk in id_batches(ids):
        deliveries().update_many(
            {
                "_id": {"$in": chunk},
                "state": S.PENDING.value,
                "attempt": 0,
                "needsReconcile": {"$ne": True},
                "firstTakenAt": None,  # a deferral gives its attempt back but was taken: claimed queued
            },
            {
                "$set": {
                    **_born_taken(attempt_id, now, now + timedelta(seconds=lease_seconds)),
                    "updatedAt": now,
                }
            },
            hint=BY_ID,
        )
    found = {d["_id"]: d for d in find_in(deliveries(), "_id", ids, None, CLAIM_FIELDS)}
    won = {i: d for i, d in found.items() if d.get("attemptId") == attempt_id and born_attempt(d)}
    rest = [i for i in ids if i not in won and found.get(i, {}).get("state") == S.PENDING.value]
    won.update({d["_id"]: d for d in claim_ids(rest, lease_seconds)})
    return [won[i] for i in ids if i in won]


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
    "state": 1,  # queued under a claim token, or born taken (in_flight, no owner)
    "attemptId": 1,
    "owner": 1,
}


def born_attempt(delivery: DeliveryDoc) -> str | None:
    """The attempt id of a delivery born taken and not started by a worker's write, else None."""
    if delivery.get("state") != S.IN_FLIGHT.value or delivery.get("owner") or not delivery.get("attemptId"):
        return None
    return str(delivery["attemptId"])


ClaimHint = dict[str, str]  # token, postId, platform, dueAt [, scheduledFor, lateFrom, taken]: no secrets


def claim_hint(delivery: DeliveryDoc) -> ClaimHint | None:
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
    late_from = lateness_start(delivery)
    if late_from is not None:
        hint["lateFrom"] = late_from.isoformat()
    if delivery.get("firstTakenAt") is not None:
        hint["taken"] = "1"
    return hint


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


def batch_item(delivery: DeliveryDoc) -> list[str] | None:
    """A claimed delivery as a batch message entry (ids, times and flags only; never secrets).

    The claim token in the batch's filter proves the delivery is still as read here (a token is
    drawn per claim and the delivery cannot leave ``queued`` without changing state); for a
    delivery born taken the attempt id does (drawn at birth, changed by any other take).
    """
    born = born_attempt(delivery) is not None
    if not (delivery.get("claimToken") or born) or not isinstance(delivery.get("dueAt"), datetime):
        return None
    scheduled = delivery.get("scheduledFor")
    scheduled = scheduled if isinstance(scheduled, datetime) else delivery["dueAt"]
    late_from = lateness_start(delivery) or scheduled
    return [
        str(delivery["_id"]),
        str(delivery["postId"]),
        str(delivery["platform"]),
        scheduled.isoformat(),
        late_from.isoformat(),
        "1" if delivery.get("firstTakenAt") is not None and not born else "",  # birth: first pickup
        "0" if born else str(int(delivery.get("attempt") or 0)),  # attempts made before this one
        "1" if delivery.get("needsReconcile") and not born else "",  # born: set before any call
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


def unclaim(ids: Sequence[ObjectId], *, born: Sequence[str] = ()) -> int:
    """queued → pending now (the publish message could not be sent to the broker).

    ``born`` (attempt ids): deliveries born taken under them and started by no worker's write are
    handed back too. A refused send may still have reached a worker that started it without
    writing, so they keep ``needsReconcile``: the next attempt looks the post up first, and that
    worker's outcome, written under an attempt that no longer owns the delivery, is dropped.
    """
    now = utcnow()
    fields: dict[str, Any] = {"state": S.PENDING.value, "leaseUntil": None, "updatedAt": now, "dueAt": now}
    count = 0
    for chunk in id_batches(ids):
        count += (
            deliveries()
            .update_many({"_id": {"$in": chunk}, "state": S.QUEUED.value}, {"$set": fields}, hint=BY_ID)
            .modified_count
        )
    if born:
        for chunk in id_batches(ids):
            count += (
                deliveries()
                .update_many(
                    {
                        "_id": {"$in": chunk},
                        "state": S.IN_FLIGHT.value,
                        "attemptId": {"$in": list(born)},
                        "owner": None,
                    },
                    {"$set": fields},
                    hint=BY_ID,
                )
                .modified_count
            )
    return count
