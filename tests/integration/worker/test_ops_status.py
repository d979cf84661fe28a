"""What ``mcmp status`` and the fleet gauges read, on the real SecantusDB and Redis.

Each trouble an operator must hear about is written as it happens in production (documents as
Mongoose and the worker write them, a throttle recorded through the limiter, a dispatcher tick)
and the report must name it, while the harmless look-alikes beside it stay unnamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from bson import ObjectId


def _now() -> datetime:
    return datetime.now(UTC)


def _delivery(db: Any, client: dict[str, Any], platform: str, **fields: Any) -> dict[str, Any]:
    doc = {
        "_id": ObjectId(),
        "postId": str(ObjectId()),
        "clientId": str(client["_id"]),
        "platform": platform,
        "state": "pending",
        "dueAt": _now() + timedelta(minutes=5),
        "attempt": 1,
        "needsReconcile": False,
        "createdAt": _now(),
        "updatedAt": _now(),
        **fields,
    }
    db.deliveries.insert_one(doc)
    return doc


@dataclass
class Troubles:
    expired: dict[str, Any]  # linkedin account, expired, 2 scheduled posts
    expiring: dict[str, Any]  # facebook account, token ends in 2 h, no refresh token, 1 post
    throttled: dict[str, Any]  # facebook account throttled for 35 min


@pytest.fixture
def troubles(db, env, make_client, make_account, make_post) -> Troubles:
    from mcmp.models.delivery import ANALYTICS_PAUSED
    from mcmp.worker import rate_limit

    acme, beta, idle = make_client(slug="acme"), make_client(slug="beta"), make_client(slug="idle")
    expired = make_account(acme, "linkedin", status="expired", accountName="Acme LinkedIn")
    for _ in range(2):
        make_post(acme, ["linkedin", "website"], when=_now() + timedelta(hours=3))
    make_post(acme, ["linkedin"], when=_now() - timedelta(days=1), status="published")  # history
    expiring = make_account(beta, "facebook", accountName="Beta Page", expiresAt=_now() + timedelta(hours=2))
    make_post(beta, ["facebook"], when=_now() + timedelta(hours=1))
    make_account(idle, "instagram", status="expired")  # no scheduled post: nothing at risk
    make_account(idle, "facebook", expiresAt=_now() + timedelta(hours=2), refreshToken="r")  # refreshable

    # awaiting reconciliation for 20 min on facebook; one in flight (normal) and one fresh elsewhere
    _delivery(db, beta, "facebook", needsReconcile=True, firstTakenAt=_now() - timedelta(minutes=20))
    _delivery(
        db, beta, "facebook", state="in_flight", needsReconcile=True, firstTakenAt=_now() - timedelta(hours=1)
    )
    _delivery(db, acme, "website", needsReconcile=True, firstTakenAt=_now() - timedelta(seconds=30))
    # analytics: one slot 2 h overdue on instagram, one paused account's (never due)
    _delivery(db, idle, "instagram", state="published", analyticsDueAt=_now() - timedelta(hours=2))
    _delivery(db, idle, "instagram", state="published", analyticsDueAt=ANALYTICS_PAUSED)
    # failures: linkedin gave up 10 min ago, is retrying now; an old failure is outside the hour
    _delivery(
        db, acme, "linkedin", state="failed", errorClass="retryable", lastError="HTTP 503 from LinkedIn"
    )
    _delivery(db, acme, "linkedin", errorClass="retryable", lastError="HTTP 503 from LinkedIn")
    _delivery(
        db, beta, "facebook", state="failed", errorClass="permanent", updatedAt=_now() - timedelta(hours=3)
    )
    # a throttle recorded by the limiter, its episode begun 35 minutes ago
    throttled = make_account(beta, "facebook", accountName="Beta Second Page")
    rate_limit.throttled("facebook", "account", str(throttled["_id"]), 600.0)
    member = f"facebook|account|{throttled['_id']}"
    redis.Redis.from_url(env["MCMP_REDIS_URL"]).zadd(
        rate_limit.EPISODE_STARTS, {member: _now().timestamp() - 2100}
    )
    return Troubles(expired, expiring, throttled)


def test_the_report_names_each_trouble_and_nothing_else(troubles: Troubles) -> None:
    from mcmp.worker.ops_status import report

    found = report()
    at_risk = {(a.client, a.platform, a.reason, a.scheduled_posts) for a in found.accounts_at_risk}
    assert at_risk == {("acme", "linkedin", "expired", 2), ("beta", "facebook", "expires_soon", 1)}
    assert [(u.platform, u.count) for u in found.uncertain] == [("facebook", 1), ("website", 1)]
    assert 1190 <= found.uncertain[0].oldest_age_seconds <= 1300
    assert [(a.platform, a.count) for a in found.analytics_due] == [("instagram", 1)]
    assert {(f.platform, f.reason, f.failed, f.retrying) for f in found.failures} == {
        ("linkedin", "retryable", 1, 1)
    }
    assert found.failures[0].example == "HTTP 503 from LinkedIn"
    [throttle] = found.throttled
    assert (throttle.platform, throttle.scope, throttle.client, throttle.account) == (
        "facebook",
        "account",
        "beta",
        "Beta Second Page",
    )
    assert 2090 <= throttle.seconds <= 2200
    # (this test process may be a registered worker itself: earlier tests ran attempts in it; the
    # no-worker note is asserted with real processes in tests/e2e/deploy/test_prometheus_e2e.py)
    assert found.dispatchers == 0
    attention = "\n".join(found.attention)
    for expected in (
        "no dispatcher has ever ticked",
        "linkedin: 1 deliveries failed for good (retryable)",
        "linkedin account 'Acme LinkedIn' of acme is expired with 2 scheduled posts",
        "facebook account 'Beta Page' of beta is expires soon with 1 scheduled posts",
        "facebook: 1 deliveries await reconciliation, oldest 20 min",
        "facebook account throttled for 35 min (Beta Second Page of beta)",
        "instagram: analytics snapshots behind by 120 min (1 due)",
    ):
        assert expected in attention
    assert "website: 1 deliveries await" not in attention  # 30 s old: normal


def test_a_dispatcher_tick_and_a_live_worker_clear_their_notes(env) -> None:
    from mcmp.devstack import wait_until
    from mcmp.worker import fleet, liveness
    from mcmp.worker.ops_status import report

    before = report()
    assert before.dispatchers == 0 and before.last_dispatch_tick_age_seconds is None
    fleet.TickRecorder("test-dispatcher").ticked(claimed=3)
    liveness.announce()  # this process's key is renewed within a quarter TTL
    after = wait_until(lambda: (r := report()).worker_processes and r, 5, 0.2, "no live worker seen")
    assert after.dispatchers == 1 and after.last_dispatch_tick_age_seconds is not None
    assert after.last_dispatch_tick_age_seconds < 5
    assert after.attention == []


def test_mcmp_status_prints_the_troubles_and_exits_1(troubles: Troubles) -> None:
    import json

    from typer.testing import CliRunner

    from mcmp.cli.main import app

    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 1, result.output
    text = result.output
    for expected in (
        "Failures in the last hour",
        "HTTP 503 from LinkedIn",
        "Accounts at risk with scheduled posts",
        "Acme LinkedIn",
        "Throttled now",
        "Beta Second Page",
        "Needs attention:",
        "linkedin account 'Acme LinkedIn' of acme is expired with 2 scheduled posts",
    ):
        assert expected in text, text
    as_json = CliRunner().invoke(app, ["status", "--json"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert data["dispatchers"] == 0 and len(data["accounts_at_risk"]) == 2
    assert any("no dispatcher has ever ticked" in note for note in data["attention"])
