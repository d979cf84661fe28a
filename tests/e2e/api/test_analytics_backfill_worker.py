"""The admin API's backfill runs the same job as the CLI, in a real worker (``mcmp.analytics.backfill``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from bson import ObjectId

from mcmp.devstack import wait_until
from tests.integration.api.conftest import headers

pytestmark = pytest.mark.platforms("facebook")


def test_api_backfill_is_run_by_a_worker_and_campaign_totals_read_back(
    api, db, platform_lab, make_key, make_client, make_account, start_worker
):
    lab = platform_lab
    client = make_client()
    cid = str(client["_id"])
    make_account(client, "facebook", **lab.account_fields("facebook", client))
    campaign = {"_id": ObjectId(), "clientId": cid, "name": "Launch", "tags": [], "__v": 0}
    db.campaigns.insert_one(campaign)
    now = datetime.now(UTC)
    posts, seeds = [], []
    for i in range(60):
        published = now - timedelta(hours=2 + i)
        pid = f"1000001_{7_000_000 + i}"
        posts.append(
            {
                "_id": ObjectId(),
                "clientId": cid,
                "campaignId": str(campaign["_id"]) if i < 40 else None,
                "title": "t",
                "body": "b",
                "platforms": ["facebook"],
                "status": "published",
                "platformPostIds": {"facebook": pid},
                "publishedAt": {"facebook": published},
            }
        )
        seeds.append({"id": pid, "owner": "1000001", "age_seconds": (now - published).total_seconds()})
    db.posts.insert_many(posts)
    requests.post(f"{lab.sims['facebook'].base_url}/_sim/seed", json={"posts": seeds}, timeout=10)
    start_worker(lab.env, concurrency=2)

    key = make_key(cid)
    since = (now - timedelta(hours=30)).isoformat()  # the 29 newest posts
    r = api.post(
        "/v1/analytics/backfills",
        json={"clientId": cid, "since": since, "platform": "facebook"},
        headers=headers(key),
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = wait_until(
        lambda: (
            (j := api.get(f"/v1/analytics/backfills/{job_id}", headers=headers(key)).json())["status"]
            == "done"
            and j
        ),
        60,
        0.3,
    )
    assert job["done"] == job["total"] == 29 and job["detail"]["recorded"] == 29
    assert db.analyticsrecords.count_documents({"clientId": cid}) == 29

    # Campaign totals: per platform, the latest snapshot of each campaign post (one aggregation).
    r = api.get(f"/v1/campaigns/{campaign['_id']}/analytics", headers=headers(key))
    assert r.status_code == 200, r.text
    body = r.json()
    in_campaign = {str(p["_id"]) for p in posts[:40]}
    recs = [r for r in db.analyticsrecords.find({"clientId": cid}) if r["postId"] in in_campaign]
    assert body["posts"] == len(recs) == 29
    assert body["byPlatform"]["facebook"]["impressions"] == sum(r["metrics"]["impressions"] for r in recs) > 0
    assert body["totals"]["likes"] == sum(r["metrics"]["likes"] for r in recs)
