"""Process bootstrap shared by every entry point: settings, logging, MongoDB, Redis, limiter.

A process started before MongoDB or Redis is reachable waits and says so in its log, then
starts working when they come up — it never sits idle while looking healthy.
"""

from __future__ import annotations

import gc
import logging
import time

import redis

from mcmp.config import Settings, get_settings
from mcmp.connectors import media_source, registry, tenant_fetch, waits
from mcmp.models.db import IndexMismatch, connect, ensure_schema, wait_for_mongo
from mcmp.worker import logs, metrics, rate_limit
from mcmp.worker.publishing import delivery_states

log = logging.getLogger(__name__)


def wait_for_redis(url: str, timeout: float | None = None, interval: float = 1.0) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    warned = False
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
            if warned:
                log.info("Redis is reachable")
            return
        except redis.RedisError as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise
            log.warning("waiting for Redis at %s: %s", url.split("@")[-1], type(exc).__name__)
            warned = True
            time.sleep(interval)


def bootstrap(settings: Settings | None = None, *, wait: bool = True, schema: bool = True) -> Settings:
    """Configure logging, wait for the services, connect mongoengine, install the limiter and the
    hooks: connectors' metrics, refused fetches, and the lease keeper of running attempts."""
    settings = settings or get_settings()
    logs.configure(settings.log_level, settings.log_json)
    for warning in settings.startup_warnings():
        log.warning(warning)
    if wait:
        wait_for_mongo(settings.mongodb_uri)
        wait_for_redis(settings.redis_url)
    db = connect(settings.mongodb_uri)
    if schema:
        try:
            ensure_schema(db)
        except IndexMismatch as exc:  # an operator must fix the index: say which, in one line
            log.error("%s", exc, extra={"event": "index_mismatch"})
            raise SystemExit(f"error: {exc}") from None
    rate_limit.install()
    waits.configure(settings.max_retry_after_seconds)
    media_source.configure(settings.media_min_bytes_per_second)
    registry.set_observer(metrics.observe_platform_request)
    tenant_fetch.set_refusal_observer(metrics.fetch_refused)
    delivery_states.register_lease_keeper()
    return settings


def warm_connectors() -> None:
    """Build every registered connector now: its imports and HTTP pool are paid at start, not
    by the first delivery of each platform (Google's client alone imports ~1 s of CPU). Then
    the heap they leave is settled (:func:`settle_heap`)."""
    for platform in registry.available_platforms():
        try:
            registry.get_connector(platform)
        except Exception as exc:  # the first delivery tries again and reports it on the post
            log.warning("connector %s could not be built at start (%s)", platform, type(exc).__name__)
    settle_heap()


# Young-generation collections run after this many net allocations (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Exempt what start-up built (modules, classes, clients, connectors) from the cyclic GC.

    A full collection scans every tracked object; with those of start-up it took ~70 ms of CPU
    (the GIL held throughout) every few hundred deliveries, a twentieth of a worker's CPU. Frozen
    objects are still freed by reference counting; only cycles among them are never collected:
    start-up's live as long as the process, and the few of work already running at that moment
    are a one-off, bounded. What is allocated later is collected as before,
    the young generation less often: a delivery allocates thousands of short-lived objects, and
    at the default threshold each collection found most of a delivery's in use and promoted them,
    so older generations were scanned again and again (0.11 ms of GC per delivery, 0.05 now).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
