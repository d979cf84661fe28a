"""Campaign bounds through real workers and dispatchers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mcmp.devstack import wait_until
from tests.integration.worker.test_campaign_bounds import _campaign


def test_pipeline_fails_ended_holds_not_started_and_honours_override(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
) -> None:
    client = make_client()
    make_webhook_account(client)
    start_worker(env)
    start_dispatcher(env)
    # The campaigns' times count from now, once the processes run (their start may take seconds).
    now = datetime.now(UTC)
    ended = _campaign(db, client, "Spring Sale", now - timedelta(days=30), now - timedelta(hours=1))
    starts_at = now + timedelta(seconds=6)
    upcoming = _campaign(db, client, "Summer Launch", starts_at, None)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    late = make_post(client, ["website"], when=soon, campaignId=ended)
    early = make_post(client, ["website"], when=soon, campaignId=upcoming)
    forced = make_post(client, ["website"], when=soon, campaignId=ended, campaignOverride=True)

    def post(p: dict[str, Any]) -> dict[str, Any]:
        return db.posts.find_one({"_id": p["_id"]})

    wait_until(
        lambda: (
            post(late)["status"] == "failed"
            and post(forced)["status"] == "published"
            and "lastError" in post(early)
        ),
        30,
    )
    assert post(late)["lastError"].startswith("website: campaign 'Spring Sale' ended ")
    assert post(late)["statusHistory"][-1]["note"] == "failed on website"
    held = post(early)
    assert held["status"] == "scheduled"
    assert held["lastError"].startswith("website: campaign 'Summer Launch' starts ")
    delivery = db.deliveries.find_one({"postId": str(early["_id"])})
    assert delivery["state"] in ("pending", "queued", "in_flight")
    assert abs(delivery["dueAt"].timestamp() - starts_at.timestamp()) < 0.01

    wait_until(lambda: post(early)["status"] == "published", 30)
    published = db.deliveries.find_one({"postId": str(early["_id"])})
    assert published["callStartedAt"].timestamp() >= starts_at.timestamp() - 0.01
    assert published["attempt"] == 1  # holding consumed no attempt
    assert "lastError" not in post(early)
    delivered = [r for r in webhook_sim.requests_log() if r["method"] == "POST"]
    assert len(delivered) == 2  # the override and the held post; never the ended one
