"""Celery sends for the admin API: tasks by name, with ids only in their arguments."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the API process loads analytics only for a backfill
    from mcmp.worker.analytics.backfill import BackfillJobDoc


def send_task(name: str, *args: str) -> str:
    """Send a task by name (ids only in its arguments); returns the task id. Broker errors propagate."""
    from mcmp.worker.app import app

    result = app.send_task(
        name,
        args=list(args),
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    )
    return str(result.id)


def answering_workers(timeout: float) -> int:
    """How many Celery workers answer a ping within ``timeout`` seconds (0 if the broker is down)."""
    from mcmp.worker.app import app

    try:
        return len(app.control.ping(timeout=timeout) or [])
    except Exception:
        return 0


BACKFILL_TASK = "mcmp.analytics.backfill"


def start_backfill(client_id: str, since: datetime | None, platform: str | None) -> BackfillJobDoc:
    """Record an analytics backfill job and send ``mcmp.analytics.backfill(job_id)``.

    A job whose task could not be sent is marked ``enqueue_failed`` and the error propagates.
    """
    from mcmp.worker.analytics import backfill

    return backfill.start_backfill(
        client_id, since, platform, send=lambda job_id: send_task(BACKFILL_TASK, job_id)
    )
