"""LinkedIn connector: videos (Videos API) and multi-image posts against the LinkedIn simulator
over real HTTP, the bytes served by a loopback media host and checked by their SHA-256."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mcmp.config import Settings
from mcmp.config.settings import LinkedInSettings
from mcmp.connectors.errors import AmbiguousError, PermanentError, RetryableError, ValidationError
from mcmp.connectors.linkedin import LinkedInConnector
from mcmp.connectors.types import Credentials, MediaItem, PostContent, PublishRequest
from mcmp.devstack.media import MediaHost, expected_sha256
from mcmp.simulators.core import start_in_thread
from mcmp.simulators.linkedin import LinkedInSimulator
from tests.conftest import LOOPBACK

ORG = "urn:li:organization:2414183"
VERSION = datetime.now(UTC).strftime("%Y%m")
MB = 1024 * 1024


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LinkedInSimulator, str]]:
    sim = LinkedInSimulator(video_part_bytes=MB, video_processing_seconds=0.3)
    sim.hold_seconds = 1.5
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def sim(served: tuple[LinkedInSimulator, str]) -> LinkedInSimulator:
    served[0].reset()
    served[0].set_faults({"rules": []})
    return served[0]


@pytest.fixture(scope="module")
def host() -> Iterator[MediaHost]:
    media = MediaHost()
    yield media
    media.stop()


@pytest.fixture
def connector(sim: LinkedInSimulator, served: tuple[LinkedInSimulator, str]) -> LinkedInConnector:
    cfg = LinkedInSettings(
        base_url=served[1],
        api_version=VERSION,
        timeout_seconds=1.0,
        video_poll_seconds=0.1,
        video_poll_timeout_seconds=5,
    )
    return LinkedInConnector(Settings(linkedin=cfg, fetch_allowed_networks=[LOOPBACK]))


def request(
    media: tuple[MediaItem, ...], key: str = "delivery-m", ticks: list | None = None
) -> PublishRequest:
    now = datetime.now(UTC)
    keep = (lambda: ticks.append(time.monotonic())) if ticks is not None else None
    return PublishRequest(
        key,
        key,
        "a1",
        now,
        PostContent("p1", "c1", "Launch film", "Our launch", media),
        Credentials("acct-1", "linkedin", "li-test-abc", external_account_id=ORG),
        first_attempt_at=now - timedelta(seconds=5),
        keep_alive=keep,
    )


def test_a_video_is_uploaded_in_parts_and_posted_once_available(connector, sim, host) -> None:
    url = host.video("launch.mp4", size=3 * MB + 5000, duration=42)
    ticks: list[float] = []
    result = connector.publish(request((MediaItem(url, "video"),), ticks=ticks))
    state = sim.state()
    [video] = state["videos"]
    [post] = state["posts"]
    assert video["sha256"] == expected_sha256(url) and video["parts"] == 4
    assert post["content"] == {"media": {"id": video["id"], "title": "Launch film"}}
    assert result.platform_post_id == post["id"]
    assert len(ticks) >= 5


def test_four_images_make_a_multi_image_post_with_alt_texts(connector, sim, host) -> None:
    urls = [host.image(f"p{i}.jpg", size=20_000 + i) for i in range(4)]
    media = tuple(MediaItem(u, "image", f"photo {i}", "image/jpeg") for i, u in enumerate(urls))
    result = connector.publish(request(media))
    [post] = sim.state()["posts"]
    images = post["content"]["multiImage"]["images"]
    assert [i["altText"] for i in images] == ["photo 0", "photo 1", "photo 2", "photo 3"]
    stored = sim.state()["images"]
    for entry, url in zip(images, urls, strict=True):
        assert stored[entry["id"]]["sha256"] == expected_sha256(url)
    assert result.platform_post_id == post["id"]


def test_media_rules_refuse_before_any_call(connector, sim) -> None:
    one = (MediaItem("http://127.0.0.1:9/a.jpg", "image"),) * 21
    with pytest.raises(ValidationError, match="at most 20 media items"):
        connector.validate(request(one).content, request(one).credentials)
    two_videos = (MediaItem("http://127.0.0.1:9/a.mp4", "video"),) * 2
    with pytest.raises(ValidationError, match="at most 1 video per post"):
        connector.validate(request(two_videos).content, request(two_videos).credentials)
    assert sim.state()["count"] == 0 and sim.request_log == []


def test_a_video_linkedin_cannot_process_fails_permanently_and_no_post(connector, sim, host) -> None:
    url = host.image("not-a-video.jpg", size=200_000)  # bytes that are no MP4
    with pytest.raises(PermanentError, match="PROCESSING_FAILED"):
        connector.publish(request((MediaItem(url, "video"),)))
    assert sim.state()["count"] == 0


def test_a_part_upload_failure_is_retryable_and_leaves_no_post(connector, sim, host) -> None:
    sim.set_faults({"rules": [{"kind": "http_500", "path": "/dms-uploads/video", "count": 1}]})
    with pytest.raises(RetryableError) as info:
        connector.publish(request((MediaItem(host.video("x.mp4", size=2 * MB), "video"),)))
    assert not isinstance(info.value, AmbiguousError)
    assert sim.state()["count"] == 0


def test_timeout_after_the_post_is_created_is_found_by_its_marker(connector, sim, host) -> None:
    sim.set_faults({"rules": [{"kind": "commit_then_timeout", "path": "/rest/posts", "count": 1}]})
    req = request((MediaItem(host.video("y.mp4", size=MB + 10), "video"),))
    with pytest.raises(AmbiguousError):
        connector.publish(req)
    sim.set_faults({"rules": []})
    found = connector.find_published(req)
    [post] = sim.state()["posts"]
    assert found is not None and found.platform_post_id == post["id"]
