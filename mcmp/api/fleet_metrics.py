"""Fleet-wide gauges of ``/metrics``, computed from MongoDB and Redis when Prometheus scrapes.

They describe shared state (which processes are alive, what awaits reconciliation, which
accounts block scheduled posts, which scopes are throttled), so the API serves them, not any
one worker. Labels: platform, status, scope — never a tenant, account or post id
(``mcmp status`` names those). The alert rules in deploy/prometheus/alerts.yml read these.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mcmp.worker import services

log = logging.getLogger(__name__)


class FleetCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            g = services.fleet_gauges()
        except Exception as exc:  # a scrape during a MongoDB outage still returns the rest
            log.warning("fleet gauges unavailable: %s", type(exc).__name__)
            return
        count = GaugeMetricFamily(
            "mcmp_deliveries_uncertain",
            "Deliveries awaiting reconciliation (an earlier attempt may have posted), not in flight",
            labels=["platform"],
        )
        age = GaugeMetricFamily(
            "mcmp_delivery_oldest_uncertain_age_seconds",
            "Age (since first pick-up) of the oldest delivery awaiting reconciliation",
            labels=["platform"],
        )
        for row in g.uncertain:
            count.add_metric([row.platform], row.count)
            age.add_metric([row.platform], row.oldest_age_seconds)
        yield count
        yield age
        due = GaugeMetricFamily(
            "mcmp_analytics_snapshots_due", "Analytics snapshot slots due and not taken", labels=["platform"]
        )
        behind = GaugeMetricFamily(
            "mcmp_analytics_oldest_due_age_seconds",
            "How long the oldest due analytics snapshot slot has waited",
            labels=["platform"],
        )
        for row in g.analytics_due:
            due.add_metric([row.platform], row.count)
            behind.add_metric([row.platform], row.oldest_age_seconds)
        yield due
        yield behind
        accounts = GaugeMetricFamily(
            "mcmp_accounts", "Integration accounts by platform and status", labels=["platform", "status"]
        )
        for (platform, status), n in sorted(g.accounts.items()):
            accounts.add_metric([platform, status], n)
        yield accounts
        expired = GaugeMetricFamily(
            "mcmp_accounts_expired_with_scheduled_posts",
            "Expired accounts (reconnect needed) that have scheduled posts",
            labels=["platform"],
        )
        for platform in services.known_platforms():
            expired.add_metric([platform], g.expired_with_scheduled_posts.get(platform, 0))
        yield expired
        if g.fleet is not None:
            yield GaugeMetricFamily(
                "mcmp_worker_processes_live",
                "Worker processes whose liveness key is current (Redis)",
                value=g.fleet.worker_processes,
            )
            yield GaugeMetricFamily(
                "mcmp_dispatchers_live", "Dispatchers that ticked in the last 15 s", value=g.fleet.dispatchers
            )
            yield GaugeMetricFamily(
                "mcmp_dispatcher_last_tick_timestamp_seconds",
                "When any dispatcher last completed a tick (epoch seconds; 0 when none ever did)",
                value=g.fleet.last_tick or 0.0,
            )
        if g.throttled is not None:
            throttled = GaugeMetricFamily(
                "mcmp_throttled_seconds",
                "How long the longest-throttled scope of each platform has been blocked without a pause",
                labels=["platform", "scope"],
            )
            for (platform, scope), seconds in sorted(g.throttled.items()):
                throttled.add_metric([platform, scope], seconds)
            yield throttled
