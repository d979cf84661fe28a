"""A worker taking a delivery for one attempt (→ in_flight), with a fresh ``attemptId`` and
``needsReconcile`` set before any platform call."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from mcmp.models.base import as_utc, utcnow
from mcmp.models.db import BY_ID
from mcmp.models.delivery import deliveries
from mcmp.models.id_batches import find_in, id_batches
from mcmp.worker import liveness
from mcmp.worker.publishing.delivery_states.claims import BatchItem
from mcmp.worker.publishing.delivery_states.store import (
    S,
    Taken,
    as_object_id,
    lateness_start,
    take_fields,
)

log = logging.getLogger(__name__)


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
    oid = as_object_id(delivery_id)
    cas = {"_id": oid, "state": S.QUEUED.value, "claimToken": token}
    fields = take_fields(now, lease_seconds, not taken_before, liveness.owner())
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
        group = {as_object_id(i.delivery_id): i for i in items if i.taken_before is taken_before}
        if not group:
            continue
        fields = take_fields(now, lease_seconds, not taken_before, owner)
        modified = 0
        for chunk in id_batches(group):
            modified += (
                deliveries()
                .update_many(
                    {"_id": {"$in": chunk}, "state": S.QUEUED.value, "claimToken": token},
                    {"$set": fields, "$inc": {"attempt": 1}},
                    hint=BY_ID,
                )
                .modified_count
            )
        won = list(group)
        if modified != len(group):
            # by _id alone, unhinted: the key lookups SecantusDB serves fast (see claims.claim_ids)
            found = find_in(deliveries(), "_id", won, None, {"_id": 1, "attemptId": 1})
            won = [d["_id"] for d in found if d.get("attemptId") == fields["attemptId"]]
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
    before = deliveries().find_one({"_id": as_object_id(delivery_id)})
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
    fields = take_fields(now, lease_seconds, first_pickup, liveness.owner())
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
        late_from=lateness_start(before),
        first_pickup=first_pickup,
        uncertain=bool(before.get("needsReconcile")) or state == S.IN_FLIGHT.value,
        created_at=as_utc(before.get("createdAt")),
        waiting_since=as_utc(before.get("waitingSince")),
    )


def start_born(items: Sequence[BatchItem], attempt_id: str, lease_seconds: float) -> list[Taken]:
    """Start deliveries the dispatcher created already taken (``in_flight`` under ``attempt_id``).

    Nothing is written on the usual path: one read keeps the items still in flight under this
    attempt, and a start key in Redis (:func:`mcmp.worker.liveness.claim_starts`) lets exactly one
    copy of a message call the platform. ``needsReconcile`` was set when the delivery was born, so
    a crash from here on is reconciled, never repeated. A start whose lease has less than
    ``lease_seconds`` left (its message waited in a backlog) first extends it by a
    compare-and-swap on (id, in_flight, attemptId). A start held by a dead worker is taken over
    with a new attempt id (one write) and looked up on the platform before anything is posted;
    one held by a live worker (or a cancel) is left to it. Moments after a Redis restart the start
    waits until live workers have re-set their keys (at most a liveness TTL). A delivery born
    before Redis's data began (a restart or flush since) is looked up first even when its start is
    won: a worker killed after starting it could not set its key again, so no key says its call
    was made. When Redis cannot judge (unreachable), nothing starts: the lease (the reaper) or the
    re-send of stranded deliveries hands them on.
    """
    if not items:
        return []
    by_id = {as_object_id(i.delivery_id): i for i in items}
    me = liveness.owner()
    current = {
        d["_id"]: d
        # By ``_id`` alone, never hinted: a hint on ``_id`` makes ``$in`` scan, and a state in
        # the filter lets SecantusDB plan the (state, dueAt) index (design §11).
        for d in find_in(
            deliveries(),
            "_id",
            list(by_id),
            None,
            {"state": 1, "attemptId": 1, "leaseUntil": 1, "owner": 1, "firstTakenAt": 1},
        )
        if d.get("state") == S.IN_FLIGHT.value
        and d.get("attemptId") == attempt_id
        # a worker that runs it long has written its owner (lease kept): the reaper judges it
        and d.get("owner") in (None, me)
    }
    if not current:
        return []
    starts = liveness.claim_starts(attempt_id, list(current), lease_seconds)
    if starts is None:
        return []
    now = utcnow()  # after the start, which may have waited for Redis to settle after a restart
    holders = starts.holders
    won = [oid for oid in current if holders.get(str(oid)) is None]
    held = {oid: str(holders[str(oid)]) for oid in current if holders.get(str(oid)) is not None}
    short = [
        oid
        for oid in won
        if (as_utc(current[oid].get("leaseUntil")) or now) < now + timedelta(seconds=lease_seconds)
    ]
    if short:
        owner = me
        for chunk in id_batches(short):
            deliveries().update_many(
                {"_id": {"$in": chunk}, "state": S.IN_FLIGHT.value, "attemptId": attempt_id},
                {
                    "$set": {
                        "leaseUntil": now + timedelta(seconds=lease_seconds),
                        "owner": owner,
                        "updatedAt": now,
                    }
                },
                hint=BY_ID,
            )
        kept = {
            d["_id"]
            for d in find_in(deliveries(), "_id", short, None, {"_id": 1, "attemptId": 1, "owner": 1})
            if d.get("attemptId") == attempt_id and d.get("owner") == owner
        }
        lost = [oid for oid in short if oid not in kept]
        liveness.forget_starts(attempt_id, lost)
        won = [oid for oid in won if oid not in lost]
    taken = [
        _born_taken(by_id[oid], oid, attempt_id, uncertain=_born_before(current[oid], starts.data_since))
        for oid in won
    ]
    return taken + _take_over(by_id, held, attempt_id, lease_seconds)


def _born_before(delivery: Mapping[str, Any], moment: datetime) -> bool:
    """Was this delivery born (its birth is its first take) before ``moment``, or is that unknown?"""
    born_at = as_utc(delivery.get("firstTakenAt"))
    return born_at is None or born_at < moment


def _born_taken(
    item: BatchItem, oid: ObjectId, attempt_id: str, *, uncertain: bool, attempt: int = 1
) -> Taken:
    return Taken(
        id=oid,
        post_id=item.post_id,
        platform=item.platform,
        attempt=attempt,
        attempt_id=attempt_id,
        scheduled_for=item.scheduled_for,
        late_from=item.late_from,
        first_pickup=not item.taken_before,
        uncertain=uncertain,
    )


def _take_over(
    by_id: Mapping[ObjectId, BatchItem], held: Mapping[ObjectId, str], attempt_id: str, lease_seconds: float
) -> list[Taken]:
    """Starts held by workers that died: a new attempt each, looked up on the platform first.

    A start a cancel holds (:func:`mcmp.worker.liveness.held_by_cancel`) is no worker's: the
    delivery is being cancelled, and is never taken over.
    """
    held = {oid: holder for oid, holder in held.items() if not liveness.held_by_cancel(holder)}
    if not held:
        return []
    live = liveness.alive(h for h in held.values() if h)
    if live is None:
        return []
    dead = [oid for oid, holder in held.items() if holder and holder not in live]  # "": gone meanwhile
    taken: list[Taken] = []
    for oid in dead:
        now = utcnow()
        fields = take_fields(now, lease_seconds, False, liveness.owner())
        result = deliveries().update_one(
            {"_id": oid, "state": S.IN_FLIGHT.value, "attemptId": attempt_id},
            {"$set": fields, "$inc": {"attempt": 1}},
            hint=BY_ID,
        )
        if result.modified_count == 1:
            item = by_id[oid]
            taken.append(
                _born_taken(item, oid, fields["attemptId"], uncertain=True, attempt=item.attempt + 2)
            )
    return taken
