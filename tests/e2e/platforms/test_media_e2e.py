"""Acceptance, end to end: one post with a video and one with four images, published through a real
worker and dispatcher on every platform that takes them, each simulator recording what it got
(ids, and the media's SHA-256 where the bytes pass through us)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcmp.devstack import wait_until
from mcmp.devstack.media import MediaHost, expected_sha256

MB = 1024 * 1024
VIDEO_PLATFORMS = ["facebook", "linkedin", "instagram", "website"]
IMAGE_PLATFORMS = ["facebook", "linkedin", "instagram", "google-business", "website"]


@pytest.fixture
def host() -> Iterator[MediaHost]:
    media = MediaHost()
    yield media
    media.stop()


def _post(db: Any, post: dict[str, Any]) -> dict[str, Any]:
    return db.posts.find_one({"_id": post["_id"]})


@pytest.mark.platforms("facebook", "linkedin", "instagram", "google-business", "website")
def test_a_video_post_and_a_four_image_post_on_every_platform_that_takes_them(
    env, db, platform_lab, make_client, make_account, make_post, host, start_worker, start_dispatcher
) -> None:
    lab_env = platform_lab.env
    lab_env["MCMP_FACEBOOK__VIDEO_BASE_URL"] = lab_env["MCMP_FACEBOOK__BASE_URL"]
    for platform in ("FACEBOOK", "LINKEDIN"):
        lab_env[f"MCMP_{platform}__VIDEO_POLL_SECONDS"] = "0.3"
    client = make_client()
    for platform in IMAGE_PLATFORMS:
        make_account(client, platform, **platform_lab.account_fields(platform, client))
    video = host.video("launch.mp4", size=6 * MB + 321, duration=45, width=1920, height=1080)
    photos = [host.image(f"photo{i}.jpg", size=40_000 + i) for i in range(4)]
    start_worker(lab_env, concurrency=3)
    start_dispatcher(lab_env)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    with_video = make_post(client, VIDEO_PLATFORMS, when=soon, body="Our launch film", assetUrls=[video])
    with_photos = make_post(client, IMAGE_PLATFORMS, when=soon, body="Four photos", assetUrls=photos)

    wait_until(
        lambda: all(_post(db, p)["status"] in ("published", "failed") for p in (with_video, with_photos)), 120
    )
    done_video, done_photos = _post(db, with_video), _post(db, with_photos)
    assert done_video["status"] == "published", done_video.get("lastError")
    assert done_photos["status"] == "published", done_photos.get("lastError")
    sims = platform_lab.sims

    # Facebook: one Page video (bytes as served) whose post is the recorded id; one 4-photo post.
    fb = sims["facebook"].state()
    [fb_video] = fb["videos"]
    assert fb_video["sha256"] == expected_sha256(video) and fb_video["kind"] == "video"
    assert done_video["platformPostIds"]["facebook"] == fb_video["post_id"]
    photo_post = next(p for p in fb["posts"] if p["id"] == done_photos["platformPostIds"]["facebook"])
    assert len(photo_post["attached_photos"]) == 4 and fb["count"] == 2

    # LinkedIn: the video through the Videos API, the photos as one multiImage post.
    li = sims["linkedin"].state()
    [li_video] = li["videos"]
    assert li_video["sha256"] == expected_sha256(video)
    by_id = {p["id"]: p for p in li["posts"]}
    assert by_id[done_video["platformPostIds"]["linkedin"]]["content"]["media"]["id"] == li_video["id"]
    images = by_id[done_photos["platformPostIds"]["linkedin"]]["content"]["multiImage"]["images"]
    assert sorted(li["images"][i["id"]]["sha256"] for i in images) == sorted(
        expected_sha256(u) for u in photos
    )

    # Instagram: a Reel and a 4-item carousel, by URL.
    ig = {m["id"]: m for m in sims["instagram"].state()["media"]}
    assert set(ig) == {
        done_video["platformPostIds"]["instagram"],
        done_photos["platformPostIds"]["instagram"],
    }

    # Google Business: the four photos in one local post (it takes no video, so it was not asked).
    [local_post] = sims["google-business"].state()["posts"]
    assert local_post["name"] == done_photos["platformPostIds"]["google-business"]
    assert [m["sourceUrl"] for m in local_post["media"]] == photos

    # Website (signed webhook): each media URL with its type (and the video's facts).
    received = {p["id"]: p for p in sims["website"].state()["posts"]}
    sent_video = received[done_video["platformPostIds"]["website"]]["media"]
    assert [(m["url"], m["type"], m["durationSeconds"], m["width"]) for m in sent_video] == [
        (video, "video", 45.0, 1920)
    ]
    sent_photos = received[done_photos["platformPostIds"]["website"]]["media"]
    assert [(m["url"], m["type"]) for m in sent_photos] == [(u, "image") for u in photos]


@pytest.mark.platforms("google-business")
def test_a_video_for_google_business_fails_naming_the_item_before_any_call(
    env, db, platform_lab, make_client, make_account, make_post, host, start_worker, start_dispatcher
) -> None:
    client = make_client()
    make_account(client, "google-business", **platform_lab.account_fields("google-business", client))
    video = host.video("clip.mp4", size=MB)
    start_worker(platform_lab.env)
    start_dispatcher(platform_lab.env)
    post = make_post(
        client, ["google-business"], when=datetime.now(UTC) + timedelta(seconds=1), assetUrls=[video]
    )
    wait_until(lambda: _post(db, post)["status"] in ("published", "failed"), 60)
    failed = _post(db, post)
    assert failed["status"] == "failed"
    assert failed["lastError"].startswith("google-business: media: media[0] (")
    assert "does not accept video media (accepts image): local posts take photos only" in failed["lastError"]
    assert platform_lab.sims["google-business"].requests_log() == []
