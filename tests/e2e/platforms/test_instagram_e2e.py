"""Instagram through the real pipeline: Asset alt text, media limits before any call, quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from mcmp.devstack import wait_until
from tests.integration.worker import test_assets
from tests.integration.worker.test_assets import JPEG, MB, _asset

media = test_assets.media  # the real HTTP media server fixture, shared with the asset tests


def _status(db: Any, post: dict[str, Any]) -> str:
    return db.posts.find_one({"_id": post["_id"]})["status"]


@pytest.mark.platforms("instagram")
def test_alt_text_reaches_instagram_and_oversized_video_never_does(
    env,
    db,
    platform_lab,
    make_client,
    make_account,
    make_post,
    media,
    start_worker,
    start_dispatcher,
) -> None:
    client = make_client()
    make_account(client, "instagram", **platform_lab.account_fields("instagram", client))
    photo = media.add("/bike.jpg", "image/jpeg", len(JPEG), JPEG)
    _asset(db, client, photo, "image", "A red bicycle against a wall")
    huge = media.add("/launch.mp4", "video/mp4", 400 * MB)
    _asset(db, client, huge, "video")
    start_worker(platform_lab.env)
    start_dispatcher(platform_lab.env)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    good = make_post(client, ["instagram"], when=soon, assetUrls=[photo])
    too_big = make_post(client, ["instagram"], when=soon, assetUrls=[huge])
    wait_until(lambda: _status(db, good) in ("published", "failed") and _status(db, too_big) == "failed", 60)

    assert _status(db, good) == "published", db.posts.find_one({"_id": good["_id"]}).get("lastError")
    [stored] = platform_lab.sims["instagram"].state()["media"]
    assert stored["alt_text"] == "A red bicycle against a wall"
    failed = db.posts.find_one({"_id": too_big["_id"]})
    assert "video of 400.0 MB is larger than instagram's 300.0 MB limit" in failed["lastError"]
    containers = platform_lab.sims["instagram"].state()["containers"].values()
    assert all(c.get("video_url") != huge for c in containers), "the oversized video never reached Instagram"


@pytest.mark.platforms("instagram")
def test_post_over_the_publishing_quota_is_deferred_then_published(
    env,
    db,
    platform_lab,
    make_client,
    make_account,
    make_post,
    media,
    start_worker,
    start_dispatcher,
) -> None:
    client = make_client()
    make_account(client, "instagram", **platform_lab.account_fields("instagram", client))
    photo = media.add("/a.jpg", "image/jpeg", len(JPEG), JPEG)
    sim = platform_lab.sims["instagram"]
    requests.post(f"{sim.base_url}/_sim/quota", json={"quota_total": 1}, timeout=5).raise_for_status()
    platform_lab.env["MCMP_INSTAGRAM__QUOTA_RECHECK_SECONDS"] = "3"
    start_worker(platform_lab.env)
    start_dispatcher(platform_lab.env)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    first = make_post(client, ["instagram"], when=soon, assetUrls=[photo])
    second = make_post(client, ["instagram"], when=soon + timedelta(seconds=1), assetUrls=[photo])

    wait_until(
        lambda: db.deliveries.find_one({"postId": str(second["_id"]), "errorClass": "rate_limited"}), 30
    )
    waiting = db.deliveries.find_one({"postId": str(second["_id"])})
    assert waiting["state"] in ("pending", "queued", "in_flight") and waiting["attempt"] == 0
    assert _status(db, first) == "published" and _status(db, second) == "scheduled"
    assert len(sim.state()["media"]) == 1

    requests.post(f"{sim.base_url}/_sim/quota", json={"quota_total": 2}, timeout=5).raise_for_status()
    wait_until(lambda: _status(db, second) == "published", 30)
    assert len(sim.state()["media"]) == 2
    assert db.deliveries.find_one({"postId": str(second["_id"])})["attempt"] == 1


@pytest.mark.platforms("instagram")
def test_post_the_lookup_cannot_see_is_never_posted_again_and_is_recorded_once_it_can(
    env,
    db,
    platform_lab,
    make_client,
    make_account,
    make_post,
    media,
    start_worker,
    start_dispatcher,
) -> None:
    """Published, answer lost, then 1,000 newer media: the lookup cannot reach ours, so the
    delivery keeps looking instead of posting again; when it can see ours, it records that one."""
    client = make_client()
    make_account(client, "instagram", **platform_lab.account_fields("instagram", client))
    photo = media.add("/a.jpg", "image/jpeg", len(JPEG), JPEG)
    sim = platform_lab.sims["instagram"]
    user = platform_lab.account_fields("instagram", client)["externalAccountId"]
    requests.post(f"{sim.base_url}/_sim/quota", json={"quota_total": 10_000}, timeout=5).raise_for_status()
    sim.faults([{"kind": "commit_then_timeout", "count": 1, "path": "/media_publish"}])
    slow_retries = dict(
        platform_lab.env,
        MCMP_INSTAGRAM__TIMEOUT_SECONDS="1",
        MCMP_RETRY_BASE_SECONDS="8",
        MCMP_RETRY_MAX_SECONDS="8",
    )
    start_worker(slow_retries)
    start_dispatcher(slow_retries)
    post = make_post(client, ["instagram"], when=datetime.now(UTC) + timedelta(seconds=1), assetUrls=[photo])
    ours = {"postId": str(post["_id"])}

    wait_until(lambda: db.deliveries.find_one({**ours, "attempt": 1, "state": "pending"}), 30)
    [published] = sim.state()["media"]
    newer = [{"id": f"9{i:08d}", "owner": user, "age_seconds": 0} for i in range(1_000)]
    requests.post(f"{sim.base_url}/_sim/seed", json={"posts": newer}, timeout=10).raise_for_status()

    wait_until(
        lambda: "lookup read 1000 recent posts" in (db.deliveries.find_one(ours)["lastError"] or ""), 40
    )
    delivery = db.deliveries.find_one(ours)
    assert delivery["needsReconcile"] and delivery["state"] in ("pending", "queued", "in_flight")
    waiting = db.posts.find_one({"_id": post["_id"]})
    assert waiting["status"] == "scheduled" and "not publishing again" in waiting["lastError"]
    assert [m["id"] for m in sim.state()["media"] if m.get("marker")] == [published["id"]]

    for item in newer[:10]:  # ten fewer newer media: ours is now on the pages the lookup reads
        requests.post(f"{sim.base_url}/_sim/delete", json={"id": item["id"]}, timeout=5).raise_for_status()
    wait_until(lambda: _status(db, post) == "published", 40)
    recorded = db.posts.find_one({"_id": post["_id"]})
    assert recorded["platformPostIds"]["instagram"] == published["id"]
    assert [m["id"] for m in sim.state()["media"] if m.get("marker")] == [published["id"]]
