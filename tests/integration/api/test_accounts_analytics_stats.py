"""Accounts (no token ever shown; new token keeps the refresh token), analytics totals, queue stats."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import redis
from bson import ObjectId

from tests.integration.api.conftest import headers


def test_accounts_never_show_tokens(api, make_key, make_tenant):
    tenant = make_tenant()
    key = make_key(tenant.id)
    listed = api.get("/v1/accounts", headers=headers(key))
    one = api.get(f"/v1/accounts/{tenant.account['_id']}", headers=headers(key))
    for r in (listed, one):
        assert r.status_code == 200
        assert "secret" not in r.text and "AT-" not in r.text and "RT-" not in r.text
    body = one.json()
    assert body["hasAccessToken"] and body["hasRefreshToken"]
    assert "accessToken" not in body and "refreshToken" not in body


def test_put_token_connects_and_keeps_the_refresh_token(api, db, make_key, make_tenant):
    tenant = make_tenant()
    db.integrationaccounts.update_one(
        {"_id": tenant.account["_id"]}, {"$set": {"status": "expired", "metadata.authError": "revoked"}}
    )
    db.deliveries.update_one({"postId": str(tenant.post["_id"])}, {"$set": {"platform": "linkedin"}})
    key = make_key(tenant.id)
    expires = (datetime.now(UTC) + timedelta(days=60)).replace(microsecond=0)
    r = api.put(
        f"/v1/accounts/{tenant.account['_id']}/token",
        json={"accessToken": "new-access", "expiresAt": expires.isoformat()},
        headers=headers(key),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "connected" and r.json()["authError"] is None
    assert "new-access" not in r.text
    stored = db.integrationaccounts.find_one({"_id": tenant.account["_id"]})
    assert stored["refreshToken"] == tenant.account["refreshToken"]  # not dropped
    assert stored["expiresAt"] == expires and stored["status"] == "connected"
    from mcmp.worker.accounts import secrets

    assert stored["accessToken"].startswith("mcmpenc:v2:")  # encrypted at rest, never plaintext
    assert secrets.reveal(stored["accessToken"], str(stored["_id"])) == "new-access"
    r = api.put(
        f"/v1/accounts/{tenant.account['_id']}/token",
        json={"accessToken": "a2", "refreshToken": "r2"},
        headers=headers(key),
    )
    stored = db.integrationaccounts.find_one({"_id": tenant.account["_id"]})
    assert secrets.reveal(stored["refreshToken"], str(stored["_id"])) == "r2" and "expiresAt" not in stored


def test_refresh_enqueues_the_token_task_with_the_account_id_only(api, env, make_key, make_tenant):
    tenant = make_tenant()
    r = api.post(f"/v1/accounts/{tenant.account['_id']}/refresh", headers=headers(make_key(tenant.id)))
    assert r.status_code == 202, r.text
    assert r.json()["args"] == [str(tenant.account["_id"])]
    raw = redis.Redis.from_url(env["MCMP_REDIS_URL"]).lrange("maintenance", 0, -1)  # mcmp.tokens.*
    headers_ = [json.loads(m)["headers"] for m in raw]
    assert any(h["task"] == r.json()["task"] and h["id"] == r.json()["taskId"] for h in headers_)
    assert all("secret" not in m.decode() for m in raw)


def test_campaign_totals_use_the_latest_snapshot_per_post_and_platform(
    api, db, make_key, make_tenant, make_post
):
    tenant = make_tenant()
    other = make_post(tenant.client, ["facebook"], campaignId=str(tenant.campaign["_id"]))
    stray = make_post(tenant.client, ["facebook"])  # not in the campaign
    now = datetime.now(UTC)

    def record(post, platform, hours_ago, **metrics):
        db.analyticsrecords.insert_one(
            {
                "clientId": tenant.id,
                "postId": str(post["_id"]),
                "platform": platform,
                "metrics": metrics,
                "fetchedAt": now - timedelta(hours=hours_ago),
            }
        )

    record(tenant.post, "website", 5, impressions=10, clicks=1)
    record(tenant.post, "website", 1, impressions=50, clicks=4)  # latest
    record(other, "facebook", 2, impressions=7, likes=3)
    record(stray, "facebook", 1, impressions=1000)
    r = api.get(f"/v1/campaigns/{tenant.campaign['_id']}/analytics", headers=headers(make_key(tenant.id)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["posts"] == 2
    assert (
        body["totals"]["impressions"] == 57 and body["totals"]["clicks"] == 4 and body["totals"]["likes"] == 3
    )
    assert body["byPlatform"]["website"]["impressions"] == 50


def test_backfill_is_recorded_enqueued_and_its_progress_readable(api, make_key, make_tenant):
    tenant = make_tenant()
    key = make_key(tenant.id)
    r = api.post(
        "/v1/analytics/backfills",
        json={"clientId": tenant.id, "since": "2024-01-01T00:00:00Z", "platform": "facebook"},
        headers=headers(key),
    )
    assert r.status_code == 202, r.text
    job = r.json()
    r = api.get(f"/v1/analytics/backfills/{job['id']}", headers=headers(key))
    assert r.status_code == 200 and r.json()["clientId"] == tenant.id and r.json()["platform"] == "facebook"
    assert api.get(f"/v1/analytics/backfills/{ObjectId()}", headers=headers(key)).status_code == 404


def test_queue_stats_count_positions(api, db, make_key, make_client):
    client = make_client()
    cid = str(client["_id"])
    now = datetime.now(UTC)
    docs = [
        ("pending", now - timedelta(seconds=30), 0, None),
        ("pending", now - timedelta(seconds=5), 0, None),
        ("pending", now + timedelta(seconds=60), 2, "retryable"),
        ("pending", now + timedelta(hours=2), 0, None),  # simply not due yet
        ("queued", now, 0, None),
        ("in_flight", now, 1, None),
        ("waiting_auth", now, 0, "auth"),
        ("published", now, 1, None),
    ]
    db.deliveries.insert_many(
        [
            {
                "postId": str(ObjectId()),
                "clientId": cid,
                "platform": "website",
                "state": s,
                "dueAt": due,
                "attempt": a,
                "errorClass": e,
            }
            for s, due, a, e in docs
        ]
    )
    body = api.get("/v1/stats/queue", headers=headers(make_key(cid))).json()
    assert body["dueBacklog"] == 2 and body["queued"] == 1 and body["inFlight"] == 1
    assert body["retryWaiting"] == 1 and body["waitingAuth"] == 1
    assert 29 <= body["oldestDueAgeSeconds"] < 60
    metrics = api.get("/metrics").text
    assert 'mcmp_delivery_backlog{position="due"} 2.0' in metrics
    assert "mcmp_delivery_oldest_due_age_seconds" in metrics
