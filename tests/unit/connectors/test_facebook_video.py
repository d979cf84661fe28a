"""Facebook connector: videos and Reels against the Facebook simulator over real HTTP, with the
bytes served by a loopback media host (what arrived is checked by its SHA-256)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from mcmp.config import Settings
from mcmp.config.settings import FacebookSettings
from mcmp.connectors.errors import AmbiguousError, PermanentError, RetryableError, ValidationError
from mcmp.connectors.facebook import FacebookConnector
from mcmp.connectors.media_source import clear_facts_cache, video_facts
from mcmp.connectors.tenant_fetch import TenantFetcher
from mcmp.connectors.types import Credentials, MediaItem, PostContent, PublishRequest
from mcmp.devstack.media import MediaHost, expected_sha256
from mcmp.simulators.core import start_in_thread
from mcmp.simulators.facebook import FacebookSimulator
from tests.conftest import LOOPBACK

PAGE = "1000001"
MB = 1024 * 1024

LOOPBACK_FETCHER = TenantFetcher.from_settings(Settings(fetch_allowed_networks=[LOOPBACK]))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FacebookSimulator, str]]:
    sim = FacebookSimulator(video_processing_seconds=0.5, video_chunk_bytes=MB)
    sim.hold_seconds = 1.0
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def sim(served: tuple[FacebookSimulator, str]) -> FacebookSimulator:
    served[0].reset()
    served[0].set_faults({"rules": []})
    return served[0]


@pytest.fixture(scope="module")
def host() -> Iterator[MediaHost]:
    media = MediaHost()
    yield media
    media.stop()


@pytest.fixture
def connector(sim: FacebookSimulator, served: tuple[FacebookSimulator, str]) -> FacebookConnector:
    base = served[1]
    cfg = FacebookSettings(
        base_url=base,
        video_base_url=base,
        timeout_seconds=0.5,
        video_poll_seconds=0.1,
        video_poll_timeout_seconds=5,
    )
    return FacebookConnector(Settings(facebook=cfg, fetch_allowed_networks=[LOOPBACK]))


def item(url: str) -> MediaItem:
    clear_facts_cache()
    facts = video_facts(url, what="assetUrls[0]", fetcher=LOOPBACK_FETCHER)
    assert facts is not None
    return MediaItem(url, "video", None, "video/mp4", None, facts.duration_seconds, facts.width, facts.height)


def request(
    media: MediaItem, key: str = "delivery-v", options: dict | None = None, ticks: list | None = None
) -> PublishRequest:
    now = datetime.now(UTC)
    content = PostContent(
        "post-1", "client-1", "Launch film", "Our launch, in motion", (media,), None, options or {}
    )
    creds = Credentials("acct-1", "facebook", "EAAB-test-page", external_account_id=PAGE)
    keep = (lambda: ticks.append(time.monotonic())) if ticks is not None else None
    return PublishRequest(key, key, "attempt-1", now, content, creds, first_attempt_at=now, keep_alive=keep)


def test_a_landscape_video_is_a_page_video_uploaded_in_chunks(connector, sim, host) -> None:
    url = host.video("launch.mp4", size=3 * MB + 12345, duration=42, width=1920, height=1080)
    ticks: list[float] = []
    result = connector.publish(request(item(url), ticks=ticks))
    state = sim.state()
    [video] = state["videos"]
    [post] = state["posts"]
    assert video["kind"] == "video" and video["title"] == "Launch film"
    assert video["sha256"] == expected_sha256(url)
    assert post["type"] == "video" and post["message"].startswith("Our launch, in motion")
    assert result.platform_post_id == post["id"] == video["post_id"]
    assert len(ticks) >= 4  # every chunk and every poll told the worker the attempt is alive


def test_a_short_vertical_video_is_a_reel(connector, sim, host) -> None:
    url = host.video("short.mp4", size=2 * MB, duration=20, width=1920, height=1080, rotate=90)
    result = connector.publish(request(item(url)))
    [video] = sim.state()["videos"]
    assert video["kind"] == "reel" and video["sha256"] == expected_sha256(url)
    assert result.platform_post_id == video["post_id"]


def test_video_type_overrides_and_reel_rules_are_checked_before_any_call(connector, sim, host) -> None:
    long_vertical = item(host.video("long.mp4", size=MB, duration=120, width=1080, height=1920))
    with pytest.raises(ValidationError) as err:
        connector.validate(
            request(long_vertical, options={"videoType": "reel"}).content, request(long_vertical).credentials
        )
    assert "lasts 120.0 s; a Reel takes 3 to 90 s" in str(err.value)
    assert str(err.value).startswith("publishOptions.facebook.videoType: reel: media[0] (")
    with pytest.raises(ValidationError, match="must be reel or video"):
        connector.validate(
            request(long_vertical, options={"videoType": "story"}).content, request(long_vertical).credentials
        )
    assert sim.state()["calls"] == 0
    short = item(host.video("s.mp4", size=MB, duration=10, width=1080, height=1920))
    connector.publish(request(short, options={"videoType": "video"}))
    [video] = sim.state()["videos"]
    assert video["kind"] == "video"


def test_timeout_after_finish_finds_the_processing_video_instead_of_uploading_again(
    connector, sim, host
) -> None:
    url = host.video("t.mp4", size=2 * MB, duration=30, width=1280, height=720)
    sim.set_faults({"rules": [{"kind": "commit_then_timeout", "body": "upload_phase=finish", "count": 1}]})
    req = request(item(url))
    with pytest.raises(AmbiguousError):
        connector.publish(req)
    found = connector.find_published(req)
    assert found is not None
    state = sim.state()
    assert len(state["videos"]) == 1 and state["count"] == 1
    assert found.platform_post_id == state["videos"][0]["post_id"]


def test_an_upload_cut_short_is_retryable_and_never_a_post(connector, sim, host) -> None:
    url = host.video("cut.mp4", size=3 * MB, duration=30, drop_after=MB + 100)
    req = request(MediaItem(url, "video"))
    with pytest.raises(RetryableError):
        connector.publish(req)
    assert sim.state()["count"] == 0
    assert connector.find_published(req) is None  # nothing to find: the next attempt starts over


def test_a_video_facebook_cannot_process_fails_permanently(connector, sim, host) -> None:
    url = host.video("bad.mp4", size=MB, duration=10)
    req = request(MediaItem(url, "video"))
    content = PostContent("p", "c", "T", "sim-processing-fail please", req.content.media)
    with pytest.raises(PermanentError, match="could not process the video"):
        connector.publish(PublishRequest("k", "k", "a", datetime.now(UTC), content, req.credentials))
    assert sim.state()["count"] == 0


def test_missing_media_fails_permanently_naming_the_item(connector, sim, host) -> None:
    url = host.video("gone.mp4", status=404)
    with pytest.raises(PermanentError, match=r"^assetUrls\[0\]: .*answered HTTP 404"):
        connector.publish(request(MediaItem(url, "video")))
    assert sim.state()["calls"] == 0
