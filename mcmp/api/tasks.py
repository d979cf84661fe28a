"""Sending Celery tasks by name (ids only), through the worker's services, never its task code."""

from __future__ import annotations

from mcmp.api.problems import ApiProblem
from mcmp.api.schemas import TaskOut
from mcmp.worker import services

TOKEN_REFRESH_TASK = "mcmp.tokens.refresh_account"
ANALYTICS_BACKFILL_TASK = services.BACKFILL_TASK


def enqueue(task: str, *args: str) -> TaskOut:
    """Send ``task(*args)``; a broker that is down is a 503 problem, not a hang or a 500."""
    try:
        task_id = services.send_task(task, *args)
    except Exception as exc:  # kombu raises OperationalError and friends
        raise ApiProblem(
            503, "broker-unavailable", f"could not enqueue {task} ({type(exc).__name__})"
        ) from None
    return TaskOut(taskId=task_id, task=task, args=list(args))
