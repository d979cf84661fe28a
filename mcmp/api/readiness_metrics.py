"""``mcmp_posts_at_risk{platform,reason}``: scheduled posts their account's token will fail.

Computed from MongoDB when Prometheus scrapes (like the backlog gauges): it describes shared
state, not a process. Reasons: ``no_refresh_token``, ``refresh_failed``, ``grant_revoked``,
``not_connected``, ``no_token`` (mcmp/worker/readiness/risk.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mcmp.worker import services

log = logging.getLogger(__name__)


class PostsAtRiskCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = services.posts_at_risk()
        except Exception as exc:  # a scrape during a MongoDB outage still returns the other metrics
            log.warning("posts-at-risk gauge unavailable: %s", type(exc).__name__)
            return
        gauge = GaugeMetricFamily(
            "mcmp_posts_at_risk",
            "Scheduled posts that will fail because their account's token cannot be refreshed in time",
            labels=["platform", "reason"],
        )
        for (platform, reason), value in sorted(counts.items()):
            gauge.add_metric([platform, reason], value)
        yield gauge
