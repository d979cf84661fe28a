"""Leases: the reaper that hands on abandoned deliveries, the keeper of running attempts' leases,
and queued deliveries whose message may have been lost."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from mcmp.config import get_settings
from mcmp.models.base import as_utc, utcnow
from mcmp.models.db import BY_ID
from mcmp.models.delivery import DeliveryDoc, deliveries
from mcmp.models.id_batches import id_batches
from mcmp.worker import liveness
from mcmp.worker.publishing.delivery_states.claims import CLAIM_FIELDS
from mcmp.worker.publishing.delivery_states.store import (
    S,
    Taken,
)

log = logging.getLogger(__name__)


def reap_expired_leases() -> tuple[int, int]:
    """Return abandoned deliveries to pending now: (from queued, from in_flight).

    ``queued`` ones whose lease expired (their message never ran). ``in_flight`` ones whose
    owner's liveness key is gone (a killed worker: seconds, not a lease), or whose lease expired
    (a live owner extends the lease of every attempt it still runs, so an expired one ended
    without recording). A delivery born taken has no owner written while it runs: its start key
    in Redis names the worker that started it, and is judged the same way (one never started has
    none, and waits for its message or the re-send of a lost one; one whose key a cancel holds is
    being cancelled, and only its lease hands it on, should that cancel never finish). In-flight
    ones keep ``needsReconcile`` (set before the call), so they are looked up on the platform first.
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
    # Bounded by the workers' total concurrency and the tenants' shares, whatever the backlog.
    in_flight = list(
        deliveries().find({"state": S.IN_FLIGHT.value}, {"owner": 1, "leaseUntil": 1, "attemptId": 1})
    )
    born = [d for d in in_flight if not d.get("owner") and d.get("attemptId")]
    started = liveness.start_holders([(str(d["attemptId"]), d["_id"]) for d in born]) if born else {}
    # a cancel's sentinel is no worker's: the delivery is being cancelled, not abandoned
    started = {d: holder for d, holder in started.items() if not liveness.held_by_cancel(holder)}
    owners = {str(d["owner"]) for d in in_flight if d.get("owner")} | set(started.values())
    live = liveness.alive(owners) if owners else set()
    dead = sorted(owners - live) if live is not None else []
    dead_starts = [(d["_id"], d["attemptId"]) for d in born if started.get(str(d["_id"])) in dead]
    abandoned = [
        d["_id"]
        for d in in_flight
        if d.get("owner") in dead
        or started.get(str(d["_id"])) in dead
        or ((lease := d.get("leaseUntil")) is not None and lease < now)
    ]
    reaped = 0
    if abandoned:
        fields = {
            "state": S.PENDING.value,
            "dueAt": now,
            "leaseUntil": None,
            "owner": None,
            "needsReconcile": True,
            "updatedAt": now,
        }
        for query in reap_filters(abandoned, dead, now, dead_starts):
            reaped += deliveries().update_many(query, {"$set": fields}, hint=BY_ID).modified_count
    return queued.modified_count, reaped


def reap_filters(
    abandoned: Sequence[ObjectId],
    dead: Sequence[str],
    now: datetime,
    dead_starts: Sequence[tuple[ObjectId, Any]],
) -> list[dict[str, Any]]:
    """The reaper's filters over ``abandoned``: in flight and still owned by a dead owner, or with
    its lease run out, or (``dead_starts``: id and attempt id) still the attempt a dead worker
    started unwritten.

    Owner, lease or attempt is in each filter: a newer attempt has a live owner and a fresh lease.
    One filter per reason rather than one ``$or``: a top-level operator makes SecantusDB walk the
    whole collection, decoding every delivery under its collection lock (seconds per pass under a
    burst's backlog, while every worker's outcome waited); ``_id`` first keeps these key lookups.
    A delivery that matches two is reaped by the first (then no longer in flight).
    """
    filters: list[dict[str, Any]] = []
    for ids in id_batches(abandoned):
        if dead:
            filters.append({"_id": {"$in": ids}, "state": S.IN_FLIGHT.value, "owner": {"$in": list(dead)}})
        filters.append({"_id": {"$in": ids}, "state": S.IN_FLIGHT.value, "leaseUntil": {"$lt": now}})
    started: dict[Any, list[ObjectId]] = {}
    for delivery_id, attempt_id in dead_starts:
        started.setdefault(attempt_id, []).append(delivery_id)
    for attempt_id, started_ids in started.items():
        filters.extend(
            {"_id": {"$in": ids}, "state": S.IN_FLIGHT.value, "attemptId": attempt_id, "owner": None}
            for ids in id_batches(started_ids)
        )
    return filters


def extend_leases(ids: Sequence[ObjectId], owner: str) -> None:
    """Keep the leases of this owner's attempts that are still running (long platform calls).

    A delivery born taken that this process started has no owner written (its start is a key in
    Redis): its lease is kept too, and from then on it names this owner, so the reaper hands it
    on as soon as this process dies.
    """
    now = utcnow()
    lease = now + timedelta(seconds=get_settings().inflight_lease_seconds)
    result = deliveries().update_many(
        {"_id": {"$in": list(ids)}, "state": S.IN_FLIGHT.value, "owner": {"$in": [owner, None]}},
        {"$set": {"leaseUntil": lease, "owner": owner, "updatedAt": now}},
        hint=BY_ID,
    )
    if result.modified_count:
        log.info("kept the lease of %d long-running attempts", result.modified_count)


def still_owned(taken: Taken) -> bool:
    """Does this attempt still own its delivery (in flight under its attempt id)?"""
    found = deliveries().find_one(
        {"_id": taken.id, "state": S.IN_FLIGHT.value, "attemptId": taken.attempt_id}, {"_id": 1}, hint=BY_ID
    )
    return found is not None


def stranded(overdue_seconds: float, limit: int, lost_after: datetime) -> list[DeliveryDoc]:
    """``queued`` deliveries, and those born taken that no worker's write started, whose message
    was sent before ``lost_after`` and is overdue by ``overdue_seconds``: marked re-sent.

    ``lost_after`` is the last moment a message may have been lost (a worker died holding its
    prefetched messages, or the broker restarted: :func:`mcmp.worker.liveness.last_loss`). A
    message sent (claimed, ``updatedAt``, or re-sent, ``resentAt``) after it is in the queue or
    in a live worker's hands, however long a backlog keeps it there. Sending a lost one again is
    safe: whichever copy runs first takes the delivery, the other finds it taken (a born one: its
    start key in Redis, or its holder dead and the delivery taken over to be reconciled); the mark
    keeps it from being sent again until another loss.
    """
    now = utcnow()
    sent_before = min(now - timedelta(seconds=overdue_seconds), as_utc(lost_after))
    # The rest of the condition is checked here: a top-level $or in the filter makes SecantusDB
    # scan the whole collection, published deliveries included. What the (state, dueAt) index
    # finds is bounded by the workers' concurrency and the tenants' shares.
    overdue = deliveries().find(
        {
            "state": {"$in": [S.QUEUED.value, S.IN_FLIGHT.value]},
            "dueAt": {"$lt": now - timedelta(seconds=overdue_seconds)},
        },
        {**CLAIM_FIELDS, "updatedAt": 1, "resentAt": 1},
    )
    page = [
        d
        for d in overdue
        if (d.get("state") == S.QUEUED.value or d.get("owner") is None)
        and (sent := as_utc(d.get("updatedAt"))) is not None
        and sent < sent_before
        and ((resent := as_utc(d.get("resentAt"))) is None or resent < sent_before)
    ][:limit]
    for chunk in id_batches(d["_id"] for d in page):
        deliveries().update_many(
            {"_id": {"$in": chunk}, "state": {"$in": [S.QUEUED.value, S.IN_FLIGHT.value]}},
            {"$set": {"resentAt": now}},
            hint=BY_ID,
        )
    return page
