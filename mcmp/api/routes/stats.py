"""Queue statistics: where the active deliveries are, for one tenant or all.

Counted by :func:`mcmp.worker.services.queue_counts`, which reads only active states (never the
published history).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter

from mcmp.api.deps import ClientIdQuery, TenantScopeDep
from mcmp.api.problems import responses
from mcmp.api.schemas import QueueStats
from mcmp.worker import services

router = APIRouter(prefix="/v1/stats", tags=["stats"], responses=responses(401, 404, 422))


def queue_stats(scope_query: Mapping[str, Any], now: datetime | None = None) -> QueueStats:
    """Counts per queue position; also used by the ``/metrics`` backlog gauges (all tenants)."""
    counts = services.queue_counts(scope_query, now)
    return QueueStats(
        dueBacklog=counts.due_backlog,
        queued=counts.queued,
        inFlight=counts.in_flight,
        retryWaiting=counts.retry_waiting,
        waitingAuth=counts.waiting_auth,
        oldestDueAgeSeconds=counts.oldest_due_age_seconds,
    )


@router.get("/queue", response_model=QueueStats, summary="Delivery queue: backlog, in flight, retries, auth")
def get_queue_stats(scope: TenantScopeDep, client_id: ClientIdQuery) -> QueueStats:
    return queue_stats(scope.query(client_id))
