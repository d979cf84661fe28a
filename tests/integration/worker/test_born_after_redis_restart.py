"""Deliveries born taken when Redis has just restarted: its start keys are gone with its data.

A Redis of the test's own, restarted for real (the machine's Redis is shared by the suite): its
start keys, liveness keys and queues are lost exactly as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mcmp.config import get_settings, reset_settings
from mcmp.devstack import PrivateRedis, wait_until
from mcmp.worker import liveness
from mcmp.worker.publishing import delivery_states
from tests.integration.worker.helpers import born


@pytest.fixture
def private_redis(env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateRedis]:
    """This process's Redis (liveness, start keys) is one the test may restart, up for a liveness
    TTL already (as a production Redis long has been)."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    monkeypatch.setenv("MCMP_REDIS_URL", server.url)
    reset_settings()
    try:
        wait_until(lambda: _uptime() >= get_settings().liveness_ttl_seconds, 10, 0.2, "Redis not up")
        yield server
    finally:
        server.stop()


@pytest.fixture
def post(make_client, make_post):
    return make_post(make_client(), ["website"])


def _born(posts):
    ids, claim = born(posts)
    return ids, claim["attempt"], [delivery_states.parse_batch_item(i) for i in claim["items"]]


def _uptime() -> int:
    return int(redis.Redis.from_url(get_settings().redis_url).info("server")["uptime_in_seconds"])


def test_a_born_delivery_due_moments_after_a_redis_restart_is_started_not_left_for_the_resend(
    db, private_redis, post
):
    private_redis.restart(down_seconds=0.2)
    ids, attempt_id, items = _born([post])  # the dispatcher, back on the new Redis, sends it
    assert _uptime() < get_settings().liveness_ttl_seconds  # its message arrives at once

    taken = delivery_states.start_born(items, attempt_id, 60)

    # dropped, it would wait for the re-send of lost messages (seconds overdue, an empty queue)
    assert [str(t.id) for t in taken] == ids
    assert taken[0].attempt_id == attempt_id  # the birth attempt itself, no write
    assert not taken[0].uncertain  # born after the restart: no start of it was lost, nothing to look up
    assert delivery_states.start_born(items, attempt_id, 60) == []  # exactly one copy starts it


def test_a_start_a_live_worker_held_before_a_redis_restart_is_not_started_again(db, private_redis, post):
    ids, attempt_id, items = _born([post])
    [taken] = delivery_states.start_born(items, attempt_id, 60)
    with liveness.running(attempt_id, [taken.id]):  # this process is calling the platform
        private_redis.restart(down_seconds=0.2)
        assert _uptime() < get_settings().liveness_ttl_seconds
        # a copy of the message arriving now finds the key this live process set again
        assert delivery_states.start_born(items, attempt_id, 60) == []
    stored = db.deliveries.find_one({"_id": taken.id})
    assert stored["attemptId"] == attempt_id and stored["state"] == "in_flight"  # not taken over


def test_a_born_delivery_a_killed_worker_started_before_a_redis_restart_is_looked_up_before_posting(
    db, private_redis, post
):
    ids, attempt_id, items = _born([post])
    # a worker started it (its start key) and was killed mid-call; Redis then lost the key before
    # the reaper could judge it, so no key says it was ever started
    redis.Redis.from_url(get_settings().redis_url).set(
        f"{liveness.START_PREFIX}{attempt_id}:{ids[0]}", "gone-host:1:dead", px=60_000
    )
    private_redis.restart(down_seconds=0.2)

    [taken] = delivery_states.start_born(items, attempt_id, 60)  # the re-sent copy of its message

    assert taken.uncertain  # the killed worker's call may have posted it: look it up first
    assert db.deliveries.find_one({"_id": taken.id})["needsReconcile"] is True
