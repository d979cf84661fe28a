"""``/metrics``: this process's metrics (or every process's, in multiprocess mode) + backlog gauges.

* With ``PROMETHEUS_MULTIPROC_DIR`` set, the counters of every process writing to that directory
  (Celery prefork children of a worker on the same host/volume, the API itself) are aggregated
  by prometheus_client's ``MultiProcessCollector``. The directory is read at scrape time, so it
  works whatever the environment was when prometheus_client was imported.
* Without it, the API's own default registry is served.
* Backlog gauges are computed at scrape time from MongoDB (all tenants): they describe shared
  state, not a process, so they must not come from any one worker. They are counted at most
  once per ``MCMP_HEALTH_CACHE_SECONDS`` (5 s): scrapes in between get the same figures.
* With ``MCMP_METRICS_TOKEN`` set, a scrape needs ``Authorization: Bearer <token>``
  (:func:`authorized`; the route and the worker's metrics server both check it).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from mcmp.api.cache import Recent
from mcmp.api.fleet_metrics import FleetCollector
from mcmp.api.readiness_metrics import PostsAtRiskCollector
from mcmp.config import get_settings

log = logging.getLogger(__name__)


_recent = Recent()


class BacklogCollector(Collector):
    """Delivery queue gauges from MongoDB, computed when Prometheus scrapes (at most every few seconds)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from mcmp.api.routes.stats import queue_stats

        settings = get_settings()
        try:
            stats = _recent.get(
                ("backlog", settings.mongodb_uri), settings.health_cache_seconds, lambda: queue_stats({})
            )
        except Exception as exc:  # a scrape during a MongoDB outage still returns process metrics
            log.warning("backlog gauges unavailable: %s", type(exc).__name__)
            return
        backlog = GaugeMetricFamily(
            "mcmp_delivery_backlog", "Deliveries by queue position", labels=["position"]
        )
        for position, value in (
            ("due", stats.dueBacklog),
            ("queued", stats.queued),
            ("in_flight", stats.inFlight),
            ("retry_waiting", stats.retryWaiting),
            ("waiting_auth", stats.waitingAuth),
        ):
            backlog.add_metric([position], value)
        yield backlog
        yield GaugeMetricFamily(
            "mcmp_delivery_oldest_due_age_seconds",
            "Age of the oldest due pending delivery (0 when none)",
            value=stats.oldestDueAgeSeconds or 0.0,
        )


def authorized(header: str | None) -> bool:
    """Does an ``Authorization`` header carry ``MCMP_METRICS_TOKEN`` (always true when it is unset)?"""
    expected = get_settings().metrics_token.get_secret_value()
    if not expected:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def render() -> bytes:
    """This process's (or every local process's) metrics now, and the fleet's shared-state gauges
    as computed at most ``MCMP_HEALTH_CACHE_SECONDS`` ago (they count over every tenant)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and os.path.isdir(path):
        processes = CollectorRegistry()
        MultiProcessCollector(processes, path=path)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        base = generate_latest(processes)
    else:
        base = generate_latest(REGISTRY)
    settings = get_settings()
    shared: bytes = _recent.get(
        ("shared", settings.mongodb_uri), settings.health_cache_seconds, _shared_gauges
    )
    return base + shared


def _shared_gauges() -> bytes:
    registry = CollectorRegistry()
    for collector in (BacklogCollector(), FleetCollector(), PostsAtRiskCollector()):
        registry.register(collector)
    return generate_latest(registry)
