"""Asset metadata and media checks: Asset type/altText reach the connector, URLs without an
Asset are probed over real HTTP, and media a platform cannot take fails that platform before
any call to it (the simulator's request log stays empty)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bson import ObjectId

from mcmp.connectors.errors import ValidationError
from mcmp.connectors.media import MB, MediaLimits, check_media, media_problems
from mcmp.connectors.types import MediaItem
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
