"""Leaving ``in_flight``: one compare-and-swap on (id, in_flight, attemptId) per transition, built
as a ``Transition`` so a batch writes its outcomes in one command."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import InvalidOperation, OperationFailure, PyMongoError

from mcmp.config import get_settings
from mcmp.config.durations import Slot, parse_slots
from mcmp.models import DeliveryState, ErrorClass
from mcmp.models.base import as_utc, utcnow
from mcmp.models.db import BY_ID
from mcmp.models.delivery import deliveries
from mcmp.worker.analytics.slots import first_due
from mcmp.worker.publishing.delivery_states.store import (
    S,
    Taken,
)
from mcmp.worker.publishing.guarded_update import guarded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transition:
    """One conditional write that moves an attempt out of ``in_flight`` (filter names the attempt)."""

    taken: Taken
    to: DeliveryState
    filter: Mapping[str, Any]
    update: Mapping[str, Any]


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


def _as_sent(transition: Transition) -> tuple[Mapping[str, Any], Any]:
    """The write as sent: its compare-and-swap inside an update pipeline, the filter ``_id`` alone.

    SecantusDB plans ``{_id, state, attemptId}`` by walking its index catalogue first (1.1 ms of
    its CPU per outcome against 0.8 ms; ``guarded_update``). Only a transition that changes
    ``state`` is sent so: "not modified" must mean "not owned".
    """
    before, after = transition.filter.get("state"), transition.update.get("$set", {}).get("state")
    if before is not None and after is not None and before != after:
        shaped = guarded(transition.filter, transition.update)
        if shaped is not None:
            return shaped
    return transition.filter, transition.update


def apply(transition: Transition) -> bool:
    """Write one transition; False when this attempt no longer owns the delivery."""
    # The hint keeps SecantusDB from planning (state, dueAt) for an ``_id`` match.
    flt, update = _as_sent(transition)
    return deliveries().update_one(flt, update, hint=BY_ID).modified_count == 1


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
                [UpdateOne(*_as_sent(t), namespace=namespace, hint=BY_ID) for t in transitions],
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


@functools.lru_cache(maxsize=4)
def _slots(labels: tuple[str, ...]) -> tuple[Slot, ...]:
    return parse_slots(labels)


def complete_op(
    taken: Taken,
    platform_post_id: str,
    url: str | None,
    published_at: datetime,
    call_started_at: datetime | None,
) -> Transition:
    """in_flight → published. The same write starts the analytics schedule (``analyticsDueAt``)."""
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
            "analyticsDueAt": first_due(
                as_utc(published_at) or published_at, _slots(tuple(get_settings().analytics_slots))
            ),
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
