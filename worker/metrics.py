"""Prometheus metrics of the worker (exposed by ``mcmp worker --metrics-port`` and the API).

Celery's prefork children each count in their own process, so when ``PROMETHEUS_MULTIPROC_DIR``
is set the standard multiprocess collector aggregates them.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Histogram

from models.base import as_utc

DELIVERIES = Counter(
    "mcmp_deliveries_total", "Delivery attempts by platform and outcome", ["platform", "outcome"]
)
LATENESS = Histogram(
    "mcmp_publish_lateness_seconds",
    "Publish call start minus scheduleTime",
    ["platform"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 300, 3600),
)


def delivery_outcome(platform: str, outcome: str) -> None:
    DELIVERIES.labels(platform=platform, outcome=str(outcome)).inc()


def observe_lateness(platform: str, scheduled_for: datetime | None, started: datetime) -> None:
    scheduled = as_utc(scheduled_for)
    if scheduled is not None:
        LATENESS.labels(platform=platform).observe(max(0.0, (started - scheduled).total_seconds()))
