"""The deliveries collection and what every part of the state machine shares: the attempt
handed to a worker (``Taken``) and the fields an attempt is taken with."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from mcmp.models import DeliveryState
from mcmp.models.base import as_utc
from mcmp.models.delivery import DeliveryDoc

log = logging.getLogger(__name__)

S = DeliveryState


def as_object_id(value: str | ObjectId) -> ObjectId:
    return value if isinstance(value, ObjectId) else ObjectId(value)


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


def lateness_start(doc: DeliveryDoc) -> datetime | None:
    """When lateness counts from: the scheduled time, or a later admin retry."""
    times = [as_utc(t) for t in (doc.get("scheduledFor"), doc.get("retriedAt")) if isinstance(t, datetime)]
    return max((t for t in times if t is not None), default=None)


def take_fields(now: datetime, lease_seconds: float, first_pickup: bool, owner: str | None) -> dict[str, Any]:
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
