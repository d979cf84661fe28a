"""Enqueueing Celery tasks by name (ids only), so the API never imports task code or connectors."""

from __future__ import annotations

from mcmp.api.problems import ApiProblem
from mcmp.api.schemas import TaskOut

# Defined in mcmp/worker/accounts/tokens.py; sent by name, so the API needs no import of it.
TOKEN_REFRESH_TASK = "mcmp.tokens.refresh_account"
ANALYTICS_BACKFILL_TASK = "mcmp.analytics.backfill"


def enqueue(task: str, *args: str) -> TaskOut:
    """Send ``task(*args)``; a broker that is down is a 503 problem, not a hang or a 500."""
    from mcmp.worker.app import app

    try:
        result = app.send_task(
            task,
            args=list(args),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        )
    except Exception as exc:  # kombu raises OperationalError and friends
        raise ApiProblem(
            503, "broker-unavailable", f"could not enqueue {task} ({type(exc).__name__})"
        ) from None
    return TaskOut(taskId=str(result.id), task=task, args=list(args))
