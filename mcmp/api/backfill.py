"""Analytics backfills for the API: start one in a worker, read its saved progress.

The job document (``analyticsbackfills``) is written by the worker that runs it; a broker that
cannot take the task is a 503 problem and leaves the job ``enqueue_failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mcmp.api.problems import ApiProblem
from mcmp.worker import services


def start(client_id: str, since: datetime | None, platform: str | None) -> Mapping[str, Any]:
    try:
        return services.start_backfill(client_id, since, platform)
    except Exception as exc:  # kombu raises OperationalError and friends
        raise ApiProblem(
            503, "broker-unavailable", f"could not enqueue {services.BACKFILL_TASK} ({type(exc).__name__})"
        ) from None


def get(job_id: str, scope: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The job if it exists *and* its clientId matches ``scope`` (a tenant filter)."""
    return services.backfill_job(job_id, scope)
