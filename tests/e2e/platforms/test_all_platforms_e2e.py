"""End to end: every connector through the real pipeline and its simulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from mcmp.devstack import wait_until
from tests.integration.worker import test_assets
from tests.integration.worker.test_assets import JPEG
from tests.platform_lab import ACCOUNT_SPECS

media = test_assets.media  # a real HTTP server for the post's photo (Instagram needs media)


def _post(db, post):
    return db.posts.find_one({"_id": post["_id"]})


def _stored_ids(lab, platform):
    state = lab.sims[platform].state()
    posts = state.get("posts")
    if isinstance(posts, dict):
        posts = list(posts.values())
    return posts or []


def test_one_post_on_every_platform(
    env, db, platform_lab, make_client, make_account, make_post, media, start_worker, start_dispatcher
):
    platforms = list(ACCOUNT_SPECS)
    client = make_client()
    for platform in platforms:
        make_account(client, platform, **platform_lab.account_fields(platform, client))
    photo = media.add("/launch.jpg", "image/jpeg", len(JPEG), JPEG)
    start_worker(platform_lab.env, concurrency=3)
    start_dispatcher(platform_lab.env)
    post = make_post(client, platforms, when=datetime.now(UTC) + timedelta(seconds=2), assetUrls=[photo])
    wait_until(lambda: _post(db, post)["status"] in ("published", "failed"), 60)
    done = _post(db, post)
    assert done["status"] == "published", done.get("lastError")
    for platform in platforms:
        assert done["platformPostIds"].get(platform), platform
        assert done["publishedAt"].get(platform), platform
        assert len(_stored_ids(platform_lab, platform)) == 1, platform


def test_one_platform_down_for_a_while_others_publish_at_once(
    env, db, platform_lab, make_client, make_account, make_post, media, start_worker, start_dispatcher
):
    platforms = list(ACCOUNT_SPECS)
    down, down_for = "linkedin", 30.0
    client = make_client()
    for platform in platforms:
        make_account(client, platform, **platform_lab.account_fields(platform, client))
    platform_lab.env["MCMP_MAX_ATTEMPTS"] = (
        "60"  # tests compress backoff to ≤5 s; keep retrying for the outage
    )
    photo = media.add("/launch.jpg", "image/jpeg", len(JPEG), JPEG)
    start_worker(platform_lab.env, concurrency=3)
    start_dispatcher(platform_lab.env)
    outage_ends = time.time() + down_for  # from now: processes start slowly on a loaded machine
    platform_lab.sims[down].faults([{"kind": "http_500", "rate": 1.0, "until": outage_ends}])
    when = datetime.now(UTC) + timedelta(seconds=2)
    post = make_post(client, platforms, when=when, assetUrls=[photo])

    others = [p for p in platforms if p != down]
    wait_until(lambda: all(_post(db, post)["platformPostIds"].get(p) for p in others), 30)
    assert _post(db, post)["status"] == "scheduled"
    assert _post(db, post)["lastError"].startswith(f"{down}: ")
    wait_until(lambda: _post(db, post)["status"] == "published", down_for + 90, interval=1)
    done = _post(db, post)
    delivery = db.deliveries.find_one({"postId": str(post["_id"]), "platform": down})
    assert delivery["attempt"] > 1
    # the call that succeeded came after the outage (counted from when it began, not from the
    # post's time: starting the worker and dispatcher under load can take several seconds)
    assert delivery["callStartedAt"].timestamp() >= outage_ends - 1
    assert len(_stored_ids(platform_lab, down)) == 1
    last = done["statusHistory"][-1]
    assert (last["fromStatus"], last["toStatus"]) == ("scheduled", "published")
    assert f"{down} (after {delivery['attempt']} attempts)" in last["note"]
    assert "lastError" not in done
