"""Platform connectors share one kept-alive pool per process, counted at the simulator's side."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests

from mcmp.config import Settings, get_settings
from mcmp.config.settings import FacebookSettings
from mcmp.connectors import Credentials, PostContent, PublishRequest, registry
from mcmp.connectors.facebook import FacebookConnector
from mcmp.connectors.http import pool_size_for, shared_adapter
from mcmp.simulators.facebook import FacebookSimulator
from mcmp.worker import metrics
from tests.connectors.simulator_fixtures import simulator_fixtures

served, sim, base = simulator_fixtures(lambda: FacebookSimulator(app_id="app-1", app_secret="s3cret"))
PAGE = "1000001"


def connector(base: str) -> FacebookConnector:
    return FacebookConnector(Settings(facebook=FacebookSettings(base_url=base, timeout_seconds=5.0)))


def publish(connector: FacebookConnector, key: str) -> str:
    now = datetime.now(UTC)
    content = PostContent("post-1", "client-1", "Title", f"Hello {key}")
    creds = Credentials("acct-1", "facebook", "EAAB-test-page", external_account_id=PAGE)
    return connector.publish(PublishRequest(key, key, "attempt-1", now, content, creds)).platform_post_id


def accepted(base: str) -> int:
    return int(requests.get(f"{base}/_sim/connections", timeout=5).json()["accepted"])


def test_connectors_built_apart_reuse_one_connection(sim: FacebookSimulator, base: str) -> None:
    first, second = connector(base), connector(base)
    before = accepted(base)
    for i in range(20):
        publish(first if i % 2 else second, f"d{i}")
    # The reading of the counter itself opened one.
    assert accepted(base) - before - 1 <= 1
    assert len(sim.state()["posts"]) == 20


def test_publish_threads_keep_their_connections(sim: FacebookSimulator, base: str) -> None:
    threads = get_settings().batch_concurrency
    fb = connector(base)
    assert shared_adapter()._pool_maxsize >= threads == Settings().batch_concurrency  # type: ignore[attr-defined]
    before = accepted(base)
    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(lambda i: publish(fb, f"d{i}"), range(threads * 10)))
    assert len(set(ids)) == threads * 10
    # At most one connection per thread for ten posts per thread (the counter's reading opened one).
    assert accepted(base) - before - 1 <= threads


def test_the_pool_is_sized_for_every_thread_that_may_call_at_once() -> None:
    settings = Settings(batch_concurrency=60, readiness_concurrency=4, analytics_backfill_concurrency=8)
    assert pool_size_for(settings) == 72
    assert pool_size_for(Settings(http_pool_per_host=10)) == 10


def test_calls_over_the_shared_pool_are_still_timed_by_platform(sim: FacebookSimulator, base: str) -> None:
    """The registry hands each connector clients that report to the worker's request metric."""
    registry.clear_cache()
    registry.set_observer(metrics.observe_platform_request)
    try:
        built = registry.get_connector(
            "facebook", Settings(facebook=FacebookSettings(base_url=base, timeout_seconds=5.0))
        )
    finally:
        registry.set_observer(None)
        registry.clear_cache()
    assert isinstance(built, FacebookConnector)
    fb = built

    def observed() -> float:
        total = 0.0
        for family in metrics.PLATFORM_REQUEST_SECONDS.collect():
            for sample in family.samples:
                if sample.name.endswith("_count") and sample.labels.get("platform") == "facebook":
                    total += sample.value
        return total

    before = observed()
    publish(fb, "timed")
    assert observed() == before + 1
