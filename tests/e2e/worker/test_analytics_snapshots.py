"""Scheduled snapshots end to end: real dispatcher + worker, the Facebook simulator, slots of seconds.

The controllable clock is the slot configuration itself (``MCMP_ANALYTICS_SLOTS=2s,4s,6s``);
the slot arithmetic is tested with explicit instants in test_analytics_slots.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from bson import ObjectId

from mcmp.devstack import wait_until
from mcmp.models.delivery import ANALYTICS_PAUSED

SLOTS = ["2s", "4s", "6s"]
pytestmark = pytest.mark.platforms("facebook")


@pytest.fixture
def fast_slots(platform_lab: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mcmp.config import reset_settings

    monkeypatch.setenv("MCMP_ANALYTICS_SLOTS", ",".join(SLOTS))
    platform_lab.env["MCMP_ANALYTICS_SLOTS"] = ",".join(SLOTS)
    monkeypatch.setenv("MCMP_FACEBOOK__BASE_URL", platform_lab.env["MCMP_FACEBOOK__BASE_URL"])
    reset_settings()
    from mcmp.worker.rate_limit import install

    install()
    return platform_lab


def _send_snapshot(client_id: str, platform: str, ids: list[str]) -> None:
    from mcmp.worker.analytics.snapshots import SNAPSHOT_TASK
    from mcmp.worker.app import app

    app.send_task(SNAPSHOT_TASK, args=[client_id, platform, ids])


def _records(db: Any, post_id: str) -> list[dict[str, Any]]:
    return list(db.analyticsrecords.find({"postId": post_id}).sort("fetchedAt", 1))


def test_published_posts_get_one_record_per_slot_even_with_duplicated_tasks(
    env, db, fast_slots, make_client, make_account, make_post, start_worker, start_dispatcher
):
    from mcmp.worker.analytics.snapshots import plan_due

    lab = fast_slots
    client = make_client()
    make_account(client, "facebook", **lab.account_fields("facebook", client))
    start_worker(lab.env, concurrency=3)
    start_dispatcher(lab.env)
    posts = [make_post(client, ["facebook"], when=datetime.now(UTC) + timedelta(seconds=1)) for _ in range(3)]
    wait_until(
        lambda: db.deliveries.count_documents({"state": "published", "analyticsDueAt": {"$ne": None}}) == 3,
        60,
    )
    for d in db.deliveries.find({}):
        # The publish itself scheduled the first slot: publishedAt + 2 s.
        assert abs((d["analyticsDueAt"] - d["publishedAt"]).total_seconds() - 2.0) < 0.01

    deleted_post = posts[0]
    deleted = db.deliveries.find_one({"postId": str(deleted_post["_id"])})
    client_id = str(client["_id"])
    all_ids = [str(d["_id"]) for d in db.deliveries.find({})]
    deleted_at = None
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        plan_due(lambda c, p, ids: (_send_snapshot(c, p, ids), _send_snapshot(c, p, ids)))  # planned twice
        _send_snapshot(client_id, "facebook", all_ids)  # and re-sent as if from Flower
        if deleted_at is None and _records(db, str(deleted_post["_id"])):
            requests.post(
                f"{lab.sims['facebook'].base_url}/_sim/delete",
                json={"id": deleted["platformPostId"]},
                timeout=5,
            )
            deleted_at = time.time()
        if db.deliveries.count_documents({"analyticsDueAt": {"$ne": None}}) == 0:
            break
        time.sleep(0.3)
    assert db.deliveries.count_documents({"analyticsDueAt": {"$ne": None}}) == 0

    for post in posts[1:]:
        recs = _records(db, str(post["_id"]))
        assert [r["slot"] for r in recs] == SLOTS, recs  # exactly one per slot, in order
        impressions = [r["metrics"]["impressions"] for r in recs]
        assert impressions == sorted(impressions) and impressions[-1] > impressions[0] > 0
        assert set(recs[-1]["metrics"]) == {"impressions", "reach", "clicks", "likes", "comments", "shares"}
        assert all(r["clientId"] == client_id and r["platform"] == "facebook" for r in recs)
        d = db.deliveries.find_one({"postId": str(post["_id"])})
        assert d["analyticsSlot"] == "6s" and "analyticsStoppedReason" not in d

    # The deleted post: recorded until it disappeared, then stopped with the reason, no more records.
    stopped = db.deliveries.find_one({"_id": deleted["_id"]})
    assert stopped["analyticsStoppedReason"] == "deleted on the platform"
    gone = _records(db, str(deleted_post["_id"]))
    assert 1 <= len(gone) < len(SLOTS) and len({r["slot"] for r in gone}) == len(gone)
    calls = lab.sims["facebook"].state()["calls"]
    for _ in range(3):  # re-sent tasks for a stopped delivery make no platform request
        _send_snapshot(client_id, "facebook", [str(deleted["_id"])])
        plan_due(lambda c, p, ids: _send_snapshot(c, p, ids))
    time.sleep(2)
    assert lab.sims["facebook"].state()["calls"] == calls
    assert len(_records(db, str(deleted_post["_id"]))) == len(gone)


def test_an_expired_account_pauses_snapshots_until_it_is_connected_again(
    env, db, fast_slots, make_client, make_account
):
    from mcmp.worker.analytics.snapshots import plan_due, snapshot_batch

    lab = fast_slots
    client = make_client()
    account = make_account(client, "facebook", status="expired", **lab.account_fields("facebook", client))
    client_id = str(client["_id"])
    published = datetime.now(UTC) - timedelta(seconds=5)  # the 4s slot is due
    post_ids, deliveries = [], []
    for i in range(4):
        platform_post_id = f"1000001_{900 + i}"
        post_id = str(ObjectId())
        post_ids.append(post_id)
        deliveries.append(
            {
                "_id": ObjectId(),
                "postId": post_id,
                "clientId": client_id,
                "platform": "facebook",
                "state": "published",
                "dueAt": published,
                "attempt": 1,
                "platformPostId": platform_post_id,
                "publishedAt": published,
                "analyticsDueAt": published + timedelta(seconds=2),
            }
        )
    db.deliveries.insert_many(deliveries)
    requests.post(
        f"{lab.sims['facebook'].base_url}/_sim/seed",
        json={
            "posts": [{"id": d["platformPostId"], "owner": "1000001", "age_seconds": 5} for d in deliveries]
        },
        timeout=5,
    ).raise_for_status()
    sent: list[tuple[str, str, list[str]]] = []
    assert plan_due(lambda c, p, ids: sent.append((c, p, ids))) == 4
    calls = lab.sims["facebook"].state()["calls"]
    counts = snapshot_batch(*sent[0])
    assert counts["paused"] == 4 and lab.sims["facebook"].state()["calls"] == calls  # no request
    for d in db.deliveries.find({}):
        assert d["analyticsPaused"] == f"{client_id}|facebook" and d["analyticsDueAt"] == ANALYTICS_PAUSED
        assert d["analyticsPausedReason"] == "account is expired"
    assert plan_due(lambda c, p, ids: sent.append((c, p, ids))) == 0  # paused: nothing planned

    db.integrationaccounts.update_one({"_id": account["_id"]}, {"$set": {"status": "connected"}})
    sent.clear()
    assert plan_due(lambda c, p, ids: sent.append((c, p, ids))) == 4  # resumed by the planner
    counts = snapshot_batch(*sent[0])
    assert counts["recorded"] == 4
    recs = list(db.analyticsrecords.find({"clientId": client_id}))
    assert sorted(r["postId"] for r in recs) == sorted(post_ids) and {r["slot"] for r in recs} == {"4s"}
    for d in db.deliveries.find({}):
        assert "analyticsPaused" not in d and d["analyticsSlot"] == "4s"
