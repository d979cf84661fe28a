"""Asset metadata and media checks: Asset type/altText reach the connector, URLs without an
Asset are probed over real HTTP, and media a platform cannot take fails that platform before
any call to it (the simulator's request log stays empty)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bson import ObjectId

from mcmp.connectors.errors import ValidationError
from mcmp.connectors.media import MB, MediaLimits, check_media, media_problems
from mcmp.connectors.types import MediaItem
from mcmp.devstack import wait_until
from mcmp.worker.publishing import media_checks
from mcmp.worker.publishing.content import build_content, media_for

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 2048 + b"\xff\xd9"


class MediaServer:
    """A real HTTP server for media files: ``files[path] = (content type, size, body or None)``."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, int, bytes | None]] = {}
        self.heads: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _answer(self, with_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                entry = server.files.get(path)
                if entry is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                ctype, size, body = entry
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if with_body and body is not None:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802 - stdlib hook
                server.heads.append(self.path)
                self._answer(False)

            def do_GET(self) -> None:  # noqa: N802 - stdlib hook
                self._answer(True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, ctype: str, size: int, body: bytes | None = None) -> str:
        self.files[path] = (ctype, size, body)
        return self.base + path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def media() -> Iterator[MediaServer]:
    media_checks.clear_probe_cache()
    server = MediaServer()
    yield server
    server.stop()


def _asset(db: Any, client: dict[str, Any], url: str, type_: str, alt: str | None = None) -> None:
    db.assets.insert_one(
        {
            "_id": ObjectId(),
            "clientId": str(client["_id"]),
            "type": type_,
            "url": url,
            "altText": alt,
            "tags": [],
            "createdAt": datetime.now(UTC),
            "updatedAt": datetime.now(UTC),
            "__v": 0,
        }
    )


def test_assets_give_kind_and_alt_text_and_probes_give_type_and_size(db, make_client, media) -> None:
    client, other = make_client(), make_client()
    photo = media.add("/photo.jpg", "image/jpeg", len(JPEG), JPEG)
    clip = media.add("/clip", "video/mp4", 12 * MB)
    blob = media.add("/blob.mp4", "application/octet-stream", 3 * MB)
    signed = media.add("/signed.jpg", "image/jpeg", 10) + "?X-Amz-Signature=secret"
    _asset(db, client, photo, "image", "A red bicycle against a wall")
    _asset(db, other, clip, "file", "not this client's")  # another tenant's asset is ignored
    unreachable = "http://127.0.0.1:9/nothing.png"
    items = media_for(str(client["_id"]), [photo, clip, blob, unreachable, signed])
    assert items[0] == MediaItem(photo, "image", "A red bicycle against a wall", "image/jpeg", len(JPEG))
    assert items[1] == MediaItem(clip, "video", None, "video/mp4", 12 * MB)  # kind from the probe
    assert items[2].kind == "video"  # generic type: the extension decides
    assert items[3] == MediaItem(unreachable, "image")  # probe failed: unknown, not refused
    assert items[4].size_bytes == 10
    with pytest.raises(ValidationError) as err:
        media_for(str(client["_id"]), [media.base + "/gone.jpg?token=secret"])
    assert str(err.value) == f"assetUrls: {media.base}/gone.jpg answered 404 (media not found)"
    # One probe per URL for all platforms of a post.
    before = len(media.heads)
    media_for(str(client["_id"]), [photo])
    assert len(media.heads) == before


def test_platform_neutral_checks_name_the_item_and_the_limit() -> None:
    limits = MediaLimits(
        kinds=frozenset({"image", "video"}),
        max_bytes={"video": 100 * MB},
        mime_types={"image": frozenset({"image/jpeg"})},
        max_items=2,
    )
    ok = MediaItem("https://cdn/x.jpg", "image", None, "image/jpeg", 5 * MB)
    unknown = MediaItem("https://cdn/y", None)
    assert media_problems([ok, unknown], limits, "instagram") == []
    problems = media_problems(
        [
            MediaItem("https://cdn/big.mp4?sig=secret", "video", None, "video/mp4", 150 * MB),
            MediaItem("https://cdn/a.png", "image", None, "image/png", 1),
            MediaItem("https://cdn/doc.pdf", "file"),
        ],
        limits,
        "instagram",
    )
    assert problems == [
        "instagram takes at most 2 media items, got 3",
        "media[0] (https://cdn/big.mp4): video of 150.0 MB is larger than instagram's 100.0 MB limit",
        "media[1] (https://cdn/a.png): image/png is not accepted by instagram for images (accepted: image/jpeg)",
        "media[2] (https://cdn/doc.pdf): instagram does not accept file media (accepts image, video)",
    ]
    with pytest.raises(ValidationError, match="^media: instagram takes at most 2"):
        check_media([ok, ok, ok], limits, "instagram")


def test_an_oversized_video_fails_instagram_content_with_a_readable_reason(db, make_client, media) -> None:
    client = make_client()
    video = media.add("/launch.mp4", "video/mp4", 400 * MB)
    _asset(db, client, video, "video")
    post = {
        "_id": ObjectId(),
        "clientId": str(client["_id"]),
        "title": "t",
        "body": "b",
        "assetUrls": [video],
    }
    with pytest.raises(ValidationError) as err:
        build_content(post, "instagram")
    assert "video of 400.0 MB is larger than instagram's 300.0 MB limit" in str(err.value)
    assert build_content(post, "website").media[0].size_bytes == 400 * MB  # no limits there


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
