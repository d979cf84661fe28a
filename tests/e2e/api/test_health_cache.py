"""``/v1/health/ready`` keeps its answer a few seconds: a flood of probes is not a flood of connections.

Against a Redis of the test's own, stopped between two probes: within
``MCMP_HEALTH_CACHE_SECONDS`` (default 5 s) the last answer stands, after it the outage shows.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from mcmp.config import get_settings, reset_settings
from mcmp.devstack.redis import PrivateRedis


def test_readiness_is_checked_at_most_once_per_cache_period(
    api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    own = PrivateRedis(tmp_path / "redis")
    own.start()
    try:
        monkeypatch.setenv("MCMP_REDIS_URL", own.url)
        reset_settings()
        before = redis.Redis.from_url(own.url).info("stats")["total_connections_received"]
        first = time.monotonic()
        for _ in range(30):
            r = api.get("/v1/health/ready", params={"workerTimeout": 0})
            assert r.status_code == 200 and r.json()["redis"] == "ok"
        after = redis.Redis.from_url(own.url).info("stats")["total_connections_received"]
        assert after - before <= 2  # one check (and our own INFO), not thirty connections
        own.stop()
        if time.monotonic() - first < 4:
            assert api.get("/v1/health/ready", params={"workerTimeout": 0}).status_code == 200  # kept
        time.sleep(max(0.0, 5.2 - (time.monotonic() - first)))
        r = api.get("/v1/health/ready", params={"workerTimeout": 0})
        assert r.status_code == 503 and "redis" in r.json()["detail"]
        assert get_settings().health_cache_seconds == 5.0  # the default users get
    finally:
        own.stop()
