"""Token refresh end to end — real workers, dispatcher, Redis and the LinkedIn twin.

What a user sees: posts go out with a freshly refreshed token (one refresh for many publishes),
a revoked grant parks deliveries without failing them until the account is reconnected, a
flaky token endpoint never disconnects an account, and reconnecting never loses a token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from mcmp.devstack import wait_until

pytestmark = pytest.mark.platforms("linkedin")
ORG = "urn:li:organization:2414183"


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def li_env(platform_lab: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment of the workers, also applied to this process (for in-process checks)."""
    from mcmp.config import reset_settings
    from mcmp.connectors import registry

    base = platform_lab.env["MCMP_LINKEDIN__BASE_URL"]
    env = dict(
        platform_lab.env,
        MCMP_LINKEDIN__APP_ID="cid",
        MCMP_LINKEDIN__APP_SECRET="csecret",
        MCMP_LINKEDIN__TOKEN_URL=f"{base}/oauth/v2/accessToken",
    )
    for key in ("MCMP_LINKEDIN__APP_ID", "MCMP_LINKEDIN__APP_SECRET", "MCMP_LINKEDIN__TOKEN_URL"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("MCMP_LINKEDIN__BASE_URL", base)
    reset_settings()
    registry.clear_cache()
    return env


def _sim(platform_lab: Any) -> Any:
    return platform_lab.sims["linkedin"]


def _account(make_account: Callable[..., Any], client: dict[str, Any], **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "accessToken": "li-test-old-access",
        "refreshToken": "li-test-refresh-original",
        "expiresAt": _now() + timedelta(minutes=1),
        "externalAccountId": ORG,
    }
    return make_account(client, "linkedin", **{**defaults, **fields})


def _posts(make_post: Callable[..., Any], client: dict[str, Any], n: int, when: datetime) -> list[Any]:
    return [make_post(client, ["linkedin"], when)["_id"] for _ in range(n)]


def _all_published(db: Any, post_ids: list[Any]) -> bool:
    return db.posts.count_documents({"_id": {"$in": post_ids}, "status": "published"}) == len(post_ids)


def _open(doc: dict[str, Any], field: str) -> str:
    from mcmp.worker.accounts import secrets

    return secrets.reveal(doc[field], str(doc["_id"]))


def test_twenty_concurrent_publishes_share_one_refresh(
    li_env, db, platform_lab, make_client, make_account, make_post, start_worker, start_dispatcher
):
    client = make_client()
    account = _account(make_account, client)  # plaintext, as a frontend writes it; expires in 1 min
    post_ids = _posts(make_post, client, 20, _now() + timedelta(seconds=4))
    start_worker(li_env, concurrency=10, pool="threads", name="worker-a")
    start_worker(li_env, concurrency=10, pool="threads", name="worker-b")
    start_dispatcher(li_env)
    wait_until(lambda: _all_published(db, post_ids), 90, 0.5, "20 posts were not all published")

    state = _sim(platform_lab).state()
    print(f"refresh requests: {state['refresh_calls']} for {len(post_ids)} concurrent publishes")
    assert state["refresh_calls"] == 1
    (new_token,) = state["issued_tokens"]
    assert state["count"] == 20 and state["duplicates"] == 0
    assert set(state["post_tokens"].values()) == {new_token}  # every post used the new token
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert stored["status"] == "connected"
    assert stored["accessToken"].startswith("mcmpenc:v2:") and _open(stored, "accessToken") == new_token
    assert stored["refreshToken"].startswith("mcmpenc:v2:")
    assert _open(stored, "refreshToken") == "li-test-refresh-original"  # not replaced → kept
    assert stored["expiresAt"] > _now() + timedelta(days=59)


def test_revoked_grant_parks_deliveries_until_reconnected_then_each_publishes_once(
    li_env, db, platform_lab, make_client, make_account, make_post, start_worker, start_dispatcher
):
    sim = _sim(platform_lab)
    requests.post(
        f"{sim.base_url}/_sim/tokens",
        json={"action": "revoke", "refresh_token": "li-test-refresh-revoked"},
        timeout=5,
    ).raise_for_status()
    client = make_client()
    account = _account(make_account, client, refreshToken="li-test-refresh-revoked")
    post_ids = _posts(make_post, client, 10, _now() + timedelta(seconds=3))
    start_worker(li_env, concurrency=6, pool="threads")
    start_dispatcher(li_env)

    def parked() -> bool:
        return db.deliveries.count_documents({"state": "waiting_auth"}) == 10

    wait_until(parked, 60, 0.5, "deliveries did not all wait for re-authorisation")
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert stored["status"] == "expired" and "invalid" in stored["metadata"]["authError"]
    for d in db.deliveries.find({}):
        assert d["state"] == "waiting_auth" and d["attempt"] == 0  # no attempt consumed
        assert "must be reconnected" in d["lastError"]
    assert db.posts.count_documents({"_id": {"$in": post_ids}, "status": "failed"}) == 0
    assert sim.state()["refresh_calls"] == 1 and sim.state()["count"] == 0
    time.sleep(3)  # a few maintenance rounds: still parked, nothing failed
    assert parked()

    # The frontend reconnects the account (plaintext, Mongoose-style update, no refresh token given).
    db.integrationaccounts.update_one(
        {"_id": account["_id"]},
        {
            "$set": {
                "accessToken": "li-test-reconnected",
                "status": "connected",
                "expiresAt": _now() + timedelta(days=60),
                "updatedAt": _now(),
            }
        },
    )
    wait_until(lambda: _all_published(db, post_ids), 60, 0.5, "posts did not publish after reconnecting")
    state = sim.state()
    assert state["count"] == 10 and state["duplicates"] == 0  # each exactly once
    assert set(state["post_tokens"].values()) == {"li-test-reconnected"}
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert _open(stored, "accessToken") == "li-test-reconnected"
    assert _open(stored, "refreshToken") == "li-test-refresh-revoked"  # the frontend did not replace it


def test_not_reconnected_within_the_deadline_fails_with_the_reason(
    li_env, db, platform_lab, make_client, make_account, make_post, start_worker, start_dispatcher
):
    env = dict(li_env, MCMP_REAUTH_DEADLINE_HOURS="0.001")  # 3.6 s after scheduleTime
    client = make_client()
    _account(make_account, client, status="expired", metadata={"authError": "invalid_grant (revoked)"})
    post_ids = _posts(make_post, client, 3, _now() + timedelta(seconds=1))
    start_worker(env, concurrency=2, pool="threads")
    start_dispatcher(env)
    wait_until(
        lambda: db.posts.count_documents({"_id": {"$in": post_ids}, "status": "failed"}) == 3,
        60,
        0.5,
        "waiting deliveries did not fail after the deadline",
    )
    for d in db.deliveries.find({}):
        assert d["state"] == "failed" and "not reconnected within" in d["lastError"]
        assert "invalid_grant" in d["lastError"]


def test_transient_refresh_failures_never_expire_the_account(
    li_env, db, platform_lab, make_client, make_account, make_post, start_worker, start_dispatcher
):
    sim = _sim(platform_lab)
    sim.faults([{"kind": "http_503", "path": "/oauth"}])  # every refresh call fails with 503
    client = make_client()
    valid = _account(make_account, client)  # old token valid 1 more minute: publish with it
    other = make_client()
    lapsed = _account(
        make_account,
        other,
        accessToken="li-test-lapsed",
        refreshToken="li-test-refresh-lapsed",
        expiresAt=_now() - timedelta(minutes=1),
    )
    with_valid = _posts(make_post, client, 2, _now() + timedelta(seconds=2))
    with_lapsed = _posts(make_post, other, 2, _now() + timedelta(seconds=2))
    start_worker(li_env, concurrency=4, pool="threads")
    start_dispatcher(li_env)

    wait_until(
        lambda: _all_published(db, with_valid), 60, 0.5, "posts with a still-valid token did not go out"
    )
    assert set(sim.state()["post_tokens"].values()) == {"li-test-old-access"}
    lapsed_ids = [str(p) for p in with_lapsed]
    wait_until(
        lambda: (
            db.deliveries.count_documents(
                {"postId": {"$in": lapsed_ids}, "lastError": {"$regex": "temporarily failed"}}
            )
            == 2
        ),
        60,
        0.5,
        "deliveries with a lapsed token were not deferred",
    )
    for acc in (valid, lapsed):
        assert db.integrationaccounts.find_one({"_id": acc["_id"]})["status"] == "connected"
    assert all(d["attempt"] <= 1 for d in db.deliveries.find({"postId": {"$in": lapsed_ids}}))

    sim.clear_faults()  # the endpoint recovers: the deferred posts go out with a new token
    wait_until(lambda: _all_published(db, with_lapsed), 90, 0.5, "deferred posts did not publish")
    assert db.integrationaccounts.find_one({"_id": lapsed["_id"]})["status"] == "connected"
    assert db.deliveries.count_documents({"state": "failed"}) == 0


def test_a_reconnect_during_a_refresh_is_never_overwritten(
    li_env, db, platform_lab, make_client, make_account
):
    from mcmp.models import IntegrationAccount
    from mcmp.worker.accounts import tokens

    sim = _sim(platform_lab)
    sim.faults([], latency_ms=1500)  # the token endpoint answers slowly
    client = make_client()
    account = _account(make_account, client)
    doc = IntegrationAccount.objects(pk=account["_id"]).first()
    result: list[Any] = []
    refresher = threading.Thread(target=lambda: result.append(tokens.ensure_fresh(doc)))
    refresher.start()
    time.sleep(0.7)  # the refresh is on the wire now
    db.integrationaccounts.update_one(
        {"_id": account["_id"]},
        {"$set": {"accessToken": "li-test-from-frontend", "expiresAt": _now() + timedelta(days=60)}},
    )
    refresher.join(30)
    fresh = result[0]
    assert sim.state()["refresh_calls"] == 1
    assert fresh.outcome is tokens.Outcome.ALREADY_REFRESHED
    assert fresh.credentials is not None and fresh.credentials.access_token == "li-test-from-frontend"
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert _open(stored, "accessToken") == "li-test-from-frontend"
    assert _open(stored, "refreshToken") == "li-test-refresh-original"


def test_refresh_task_by_name_returns_no_token_and_refreshes_ahead_of_expiry(
    li_env, db, platform_lab, make_client, make_account, start_worker
):
    """The admin API sends ``mcmp.tokens.refresh_account`` by name; beat sends ``refresh_due``."""
    from celery import Celery

    client = make_client()
    soon = _account(make_account, client)  # inside the 7-day margin
    later = _account(make_account, make_client(), expiresAt=_now() + timedelta(days=30))
    start_worker(li_env, concurrency=2, pool="threads")
    app = Celery(broker=li_env["MCMP_REDIS_URL"])
    app.send_task("mcmp.tokens.refresh_due", queue="maintenance")
    wait_until(lambda: _sim(platform_lab).state()["refresh_calls"] == 1, 30, 0.3, "refresh_due did nothing")
    wait_until(
        lambda: (
            db.integrationaccounts.find_one({"_id": soon["_id"]})["expiresAt"] > _now() + timedelta(days=59)
        ),
        30,
        0.3,
        "the due account was not refreshed",
    )
    assert db.integrationaccounts.find_one({"_id": later["_id"]})["expiresAt"] < _now() + timedelta(days=31)
    app.send_task("mcmp.tokens.refresh_account", args=[str(later["_id"])], queue="maintenance")
    wait_until(
        lambda: _sim(platform_lab).state()["refresh_calls"] == 2, 30, 0.3, "forced refresh did nothing"
    )


def test_token_refused_on_publish_is_refreshed_once_instead_of_asking_to_reconnect(
    li_env, db, platform_lab, make_client, make_account, make_post, start_worker, start_dispatcher
):
    """LinkedIn invalidated the access token early (401) but the refresh grant is still good."""
    sim = _sim(platform_lab)
    requests.post(
        f"{sim.base_url}/_sim/tokens", json={"action": "revoke", "token": "li-test-killed-access"}, timeout=5
    ).raise_for_status()
    client = make_client()
    account = _account(  # far from expiry: only the platform's 401 can reveal the problem
        make_account, client, accessToken="li-test-killed-access", expiresAt=_now() + timedelta(days=30)
    )
    post_ids = _posts(make_post, client, 3, _now() + timedelta(seconds=2))
    start_worker(li_env, concurrency=3, pool="threads")
    start_dispatcher(li_env)
    wait_until(lambda: _all_published(db, post_ids), 60, 0.5, "posts were not published after the refresh")

    state = sim.state()
    assert state["refresh_calls"] == 1 and state["count"] == 3 and state["duplicates"] == 0
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert stored["status"] == "connected" and "authError" not in stored.get("metadata", {})
    for delivery in db.deliveries.find({"postId": {"$in": [str(p) for p in post_ids]}}):
        assert delivery["attempt"] <= 2  # the refused attempt plus the one with the new token


def test_admin_refresh_action_is_carried_out_by_a_worker(
    li_env, db, platform_lab, make_client, make_account, start_worker
):
    """The admin API's refresh action (same enqueue code) refreshes a token that is not yet due."""
    from mcmp.api.tasks import TOKEN_REFRESH_TASK, enqueue

    client = make_client()
    account = _account(make_account, client, expiresAt=_now() + timedelta(days=30))
    start_worker(li_env, concurrency=2, pool="threads")
    sent = enqueue(TOKEN_REFRESH_TASK, str(account["_id"]))
    assert sent.args == [str(account["_id"])]  # ids only on the broker
    sim = _sim(platform_lab)
    wait_until(lambda: sim.state()["refresh_calls"] == 1, 30, 0.3, "the refresh task did not run")
    (new_token,) = sim.state()["issued_tokens"]
    wait_until(
        lambda: _open(db.integrationaccounts.find_one({"_id": account["_id"]}), "accessToken") == new_token,
        10,
        0.2,
    )
