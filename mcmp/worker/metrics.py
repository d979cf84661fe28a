"""Prometheus metrics of the worker (exposed by ``mcmp worker --metrics-port`` and the API).

Celery's prefork children each count in their own process, so when ``PROMETHEUS_MULTIPROC_DIR``
is set the standard multiprocess collector aggregates them.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Histogram

from mcmp.models.base import as_utc

DELIVERIES = Counter(
    "mcmp_deliveries_total", "Delivery attempts by platform and outcome", ["platform", "outcome"]
)
LATENESS = Histogram(
    "mcmp_publish_lateness_seconds",
    "Publish call start minus scheduleTime",
    ["platform"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 300, 3600),
)


@lru_cache(maxsize=1024)
def _series(metric: Any, *values: str) -> Any:
    """The labelled child of ``metric`` (the one ``labels()`` returns), looked up once per process:
    the per-call lookup (a lock and a tuple of label strings) ran several times per delivery."""
    return metric.labels(*values)


def delivery_outcome(platform: str, outcome: str) -> None:
    _series(DELIVERIES, platform, str(outcome)).inc()


def observe_lateness(platform: str, scheduled_for: datetime | None, started: datetime) -> None:
    scheduled = as_utc(scheduled_for)
    if scheduled is not None:
        _series(LATENESS, platform).observe(max(0.0, (started - scheduled).total_seconds()))


# --- platform calls and token refreshes (admin issue 5) ------------------------------------
PLATFORM_REQUEST_SECONDS = Histogram(
    "mcmp_platform_request_seconds",
    "Platform HTTP request latency by platform, method and status code",
    ["platform", "method", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
TOKEN_REFRESHES = Counter(
    "mcmp_token_refresh_total", "Token refresh attempts by platform and outcome", ["platform", "outcome"]
)


def observe_platform_request(platform: str, method: str, status: int, seconds: float) -> None:
    """Record one platform HTTP request: latency and status code.

    Installed as the connector registry's request observer by ``runtime.bootstrap``: every session
    and tenant fetcher a connector takes from its ``HttpClients`` reports here.
    """
    _series(PLATFORM_REQUEST_SECONDS, platform, method, str(status)).observe(seconds)


def token_refresh(platform: str, outcome: str) -> None:
    """Count one token refresh (outcome: refreshed, failed_auth, failed_retryable, skipped, …)."""
    TOKEN_REFRESHES.labels(platform=platform, outcome=str(outcome)).inc()


# --- tenant URLs (mcmp.connectors.tenant_fetch) ---------------------------------------------
FETCH_REFUSALS = Counter(
    "mcmp_fetch_refusals_total",
    "Tenant URLs (assetUrls, webhookUrl, siteUrl) refused, by rule (address range, scheme, size, type)",
    ["rule"],
)


def fetch_refused(rule: str) -> None:
    """Count one refused tenant URL (installed as the fetcher's refusal observer by ``bootstrap``)."""
    FETCH_REFUSALS.labels(rule=str(rule)).inc()


# --- platform publish calls, for the per-platform failure ratio (deploy/prometheus/alerts.yml) --
PUBLISH_CALLS = Counter(
    "mcmp_publish_calls_total",
    "Publish calls made to a platform, by how the platform answered (ok, unavailable, ambiguous, "
    "rejected, auth, rate_limited, error); content refused before any call is not counted",
    ["platform", "result"],
)


def call_result(exc: BaseException | None) -> str:
    """The ``result`` label of one publish call: what the platform's answer says about the platform."""
    from mcmp.connectors.errors import (
        AmbiguousError,
        AuthError,
        PermanentError,
        RateLimitedError,
        RetryableError,
    )

    if exc is None:
        return "ok"
    for kind, label in (
        (AmbiguousError, "ambiguous"),
        (RetryableError, "unavailable"),
        (RateLimitedError, "rate_limited"),
        (AuthError, "auth"),
        (PermanentError, "rejected"),
    ):
        if isinstance(exc, kind):
            return label
    return "error"


def publish_call(platform: str, exc: BaseException | None) -> None:
    """Count one ``connector.publish`` call (``exc``: what it raised, None when it succeeded)."""
    _series(PUBLISH_CALLS, platform, call_result(exc)).inc()


# --- dispatchers (``mcmp dispatcher --metrics-port``) --------------------------------------------
DISPATCH_TICKS = Counter("mcmp_dispatcher_ticks_total", "Dispatcher ticks completed (this process)")
DISPATCH_CLAIMED = Counter(
    "mcmp_dispatcher_claimed_total", "Deliveries claimed and handed to Celery by this dispatcher"
)


def initialise(platforms: list[str]) -> None:
    """Create every platform's series at zero, so a dashboard shows 0 (not "no data") and the
    first failure of a platform already moves ``rate()`` (a series born at 1 hides its first step)."""
    for platform in platforms:
        for outcome in ("published", "failed", "retry"):
            DELIVERIES.labels(platform=platform, outcome=outcome)
        for result in ("ok", "unavailable", "rejected"):
            PUBLISH_CALLS.labels(platform=platform, result=result)
        for outcome in ("refreshed", "failed"):
            TOKEN_REFRESHES.labels(platform=platform, outcome=outcome)
        LATENESS.labels(platform=platform)
