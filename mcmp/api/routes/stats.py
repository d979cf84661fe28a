"""Queue statistics from the ``deliveries`` collection.

Every count names an active state, so it rides the (state, dueAt) index and reads only work in
progress, never the published history, for one tenant or all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from mcmp.api.deps import ClientIdQuery, TenantScopeDep
from mcmp.api.problems import responses
from mcmp.api.schemas import QueueStats
from mcmp.models import DeliveryState
from mcmp.models.base import as_utc, utcnow
from mcmp.worker.publishing import delivery_states

router = APIRouter(prefix="/v1/stats", tags=["stats"], responses=responses(401, 404, 422))
S = DeliveryState


def queue_stats(scope_query: dict[str, Any], now: datetime | None = None) -> QueueStats:
    """Counts per queue position; also used by the ``/metrics`` backlog gauges (all tenants)."""
    now = now or utcnow()
    coll = delivery_states.deliveries()

    def count(**query: Any) -> int:
        return coll.count_documents({**scope_query, **query})

    oldest = list(
        coll.find({**scope_query, "state": S.PENDING.value, "dueAt": {"$lte": now}}, {"dueAt": 1})
        .sort("dueAt", 1)
        .limit(1)
    )
    oldest_due = as_utc(oldest[0]["dueAt"]) if oldest else None
    return QueueStats(
        dueBacklog=count(state=S.PENDING.value, dueAt={"$lte": now}),
        queued=count(state=S.QUEUED.value),
        inFlight=count(state=S.IN_FLIGHT.value),
        retryWaiting=count(state=S.PENDING.value, dueAt={"$gt": now}, attempt={"$gt": 0})
        + count(state=S.PENDING.value, dueAt={"$gt": now}, attempt=0, errorClass={"$ne": None}),
        waitingAuth=count(state=S.WAITING_AUTH.value),
        oldestDueAgeSeconds=None if oldest_due is None else max(0.0, (now - oldest_due).total_seconds()),
    )


@router.get("/queue", response_model=QueueStats, summary="Delivery queue: backlog, in flight, retries, auth")
def get_queue_stats(scope: TenantScopeDep, client_id: ClientIdQuery) -> QueueStats:
    return queue_stats(scope.query(client_id))
