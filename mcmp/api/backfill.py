"""The analytics-backfill seam of the API: start a backfill, read its progress.

:class:`BackfillService` is the whole interface the routes need. :func:`service` wires it to
the analytics module when that module provides ``start_backfill(client_id, since, platform)``
and ``backfill_progress(job_id)`` (each returning a job mapping, see :class:`Job`); until then
:class:`QueuedBackfill` records the job in ``analyticsbackfills`` and enqueues
``mcmp.analytics.backfill(job_id)``, whose worker side updates ``status``/``done``/``total``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from bson import ObjectId
from pymongo.collection import Collection

from mcmp.api.tasks import ANALYTICS_BACKFILL_TASK, enqueue
from mcmp.models import Post
from mcmp.models.base import utcnow

COLLECTION = "analyticsbackfills"
Job = Mapping[str, Any]  # _id/id, clientId, platform, since, status, done, total, detail


class BackfillService(Protocol):
    def start(self, client_id: str, since: datetime, platform: str | None) -> Job: ...

    def get(self, job_id: str, scope: Mapping[str, Any]) -> Job | None:
        """The job if it exists *and* its clientId matches ``scope`` (a tenant filter)."""
        ...


def jobs() -> Collection:
    return Post._get_collection().database[COLLECTION]


class QueuedBackfill:
    """Job document + Celery task by name: works whatever the analytics module looks like."""

    def start(self, client_id: str, since: datetime, platform: str | None) -> Job:
        now = utcnow()
        job = {
            "_id": ObjectId(),
            "clientId": client_id,
            "platform": platform,
            "since": since,
            "status": "queued",
            "done": 0,
            "total": None,
            "createdAt": now,
            "updatedAt": now,
        }
        jobs().insert_one(job)
        try:
            enqueue(ANALYTICS_BACKFILL_TASK, str(job["_id"]))
        except Exception:
            jobs().update_one(
                {"_id": job["_id"]}, {"$set": {"status": "enqueue_failed", "updatedAt": utcnow()}}
            )
            raise
        return job

    def get(self, job_id: str, scope: Mapping[str, Any]) -> Job | None:
        if not ObjectId.is_valid(job_id):
            return None
        return jobs().find_one({"_id": ObjectId(job_id), **scope})


class ModuleBackfill:
    """Adapter over the analytics module's own functions."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def start(self, client_id: str, since: datetime, platform: str | None) -> Job:
        # The API's enqueue turns a broker outage into a 503 problem.
        return self.module.start_backfill(
            client_id, since, platform, send=lambda job_id: enqueue(ANALYTICS_BACKFILL_TASK, job_id)
        )

    def get(self, job_id: str, scope: Mapping[str, Any]) -> Job | None:
        job = self.module.backfill_progress(job_id)
        if job is None:
            return None
        allowed = scope.get("clientId")
        client = job.get("clientId")
        if isinstance(allowed, dict):
            return job if client in allowed.get("$in", []) else None
        return job if allowed is None or client == allowed else None


def service() -> BackfillService:
    for name in ("mcmp.worker.analytics.backfill", "mcmp.worker.analytics.snapshots"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if callable(getattr(module, "start_backfill", None)) and callable(
            getattr(module, "backfill_progress", None)
        ):
            return ModuleBackfill(module)
    return QueuedBackfill()
