"""Assets through real workers: alt text reaches LinkedIn, bad media never reaches a platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcmp.connectors.media import MB
from mcmp.devstack import wait_until
from tests.integration.worker import test_assets as assets
from tests.integration.worker.test_assets import JPEG, _asset

media = assets.media  # the media server fixture, shared with the in-process tests


@pytest.mark.platforms("linkedin", "google-business")
def test_alt_text_reaches_linkedin_and_bad_media_never_reaches_the_platforms(
    env, db, platform_lab, make_client, make_account, make_post, media, start_worker, start_dispatcher
) -> None:
    client = make_client()
    for platform in ("linkedin", "google-business"):
        make_account(client, platform, **platform_lab.account_fields(platform, client))
    photo = media.add("/bike.jpg", "image/jpeg", len(JPEG), JPEG)
    _asset(db, client, photo, "image", "A red bicycle against a wall")
    huge = media.add("/poster.png", "image/png", 6 * MB)
    clip = media.add("/teaser.mp4", "video/mp4", 600 * MB)  # LinkedIn takes videos up to 500 MB
    _asset(db, client, clip, "video")
    start_worker(platform_lab.env)
    start_dispatcher(platform_lab.env)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    good = make_post(client, ["linkedin"], when=soon, assetUrls=[photo])
    too_big = make_post(client, ["google-business"], when=soon, assetUrls=[huge])
    video = make_post(client, ["linkedin"], when=soon, assetUrls=[clip])

    def status(post: dict[str, Any]) -> str:
        return db.posts.find_one({"_id": post["_id"]})["status"]

    wait_until(lambda: all(status(p) in ("published", "failed") for p in (good, too_big, video)), 60)
    assert status(good) == "published", db.posts.find_one({"_id": good["_id"]}).get("lastError")
    [stored] = platform_lab.sims["linkedin"].state()["posts"]
    assert stored["content"]["media"]["altText"] == "A red bicycle against a wall"

    failed = db.posts.find_one({"_id": too_big["_id"]})
    assert failed["status"] == "failed"
    assert failed["lastError"] == (
        f"google-business: media: media[0] ({huge}): image of 6.0 MB is larger than "
        "google-business's 5.0 MB limit"
    )
    assert platform_lab.sims["google-business"].requests_log() == []
    failed = db.posts.find_one({"_id": video["_id"]})
    assert failed["lastError"] == (
        f"linkedin: media: media[0] ({clip}): video of 600.0 MB is larger than linkedin's 500.0 MB limit"
    )
    linkedin_posts = [r for r in platform_lab.sims["linkedin"].requests_log() if r["path"] == "/rest/posts"]
    assert len(linkedin_posts) == 1  # only the good post
