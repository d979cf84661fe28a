"""Instagram connector against its simulator over real HTTP: flows and every error class."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from config import Settings
from connectors.errors import (
    AmbiguousError,
    AuthError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from connectors.instagram import InstagramConnector
from connectors.types import Credentials, MediaItem, MetricsRef, PostContent, PublishRequest
from connectors.usage import set_sink
from simulators.core import start_in_thread
from simulators.instagram import InstagramSimulator

IMAGE = MediaItem("https://cdn.example/a.jpg", "image", "A red bicycle")
VIDEO = MediaItem("https://cdn.example/v.mp4", "video")


@pytest.fixture
def sim():
    simulator = InstagramSimulator(processing_polls=1)
    simulator.hold_seconds = 1.5
    server, url = start_in_thread(simulator)
    simulator.url = url
    yield simulator
    server.shutdown()


@pytest.fixture
def connector(sim):
    settings = Settings()
    settings.instagram.base_url = sim.url
    settings.instagram.timeout_seconds = 1.0
    settings.instagram.container_poll_seconds = 0.05
    settings.instagram.quota_recheck_seconds = 7
    return InstagramConnector(settings)


def request(media=(IMAGE,), body="Hello #summer", key="delivery-1", token="EAAB-test"):
    creds = Credentials("acct-1", "instagram", token, external_account_id="17841400000001")
    content = PostContent("p1", "c1", "Title", body, tuple(media))
    return PublishRequest(key, key, "a1", datetime.now(UTC), content, creds)


def test_image_post_with_alt_text(connector, sim):
    result = connector.publish(request())
    media = sim.state()["media"]
    assert [m["id"] for m in media] == [result.platform_post_id]
    assert media[0]["alt_text"] == "A red bicycle" and media[0]["media_type"] == "IMAGE"
    assert media[0]["caption"].startswith("Hello #summer")


def test_carousel_and_reel(connector, sim):
    connector.publish(request(media=(IMAGE, IMAGE, VIDEO), key="carousel"))
    connector.publish(request(media=(VIDEO,), key="reel"))
    kinds = sorted(m["media_type"] for m in sim.state()["media"])
    assert kinds == ["CAROUSEL", "REELS"]
    carousel = next(m for m in sim.state()["media"] if m["media_type"] == "CAROUSEL")
    assert len(carousel["children"]) == 3


def test_validation_names_field(connector):
    with pytest.raises(ValidationError, match="assetUrls"):
        connector.validate(request(media=()).content, request().credentials)
    with pytest.raises(ValidationError, match="body"):
        connector.validate(request(body="x" * 2200).content, request().credentials)


def test_quota_used_up_is_rate_limited_not_failed(connector, sim):
    sim.quota_total = 1
    connector.publish(request(key="first"))
    with pytest.raises(RateLimitedError) as info:
        connector.publish(request(key="second"))
    assert info.value.scope == "ig-publish-quota" and info.value.retry_after == 7
    assert len(sim.state()["media"]) == 1


def test_ambiguous_publish_is_found_by_reconciliation(connector, sim):
    sim.set_faults({"rules": [{"kind": "commit_then_timeout", "count": 1, "path": "media_publish"}]})
    req = request(key="lost-answer")
    with pytest.raises(AmbiguousError):
        connector.publish(req)
    found = connector.find_published(req)
    assert found is not None and found.platform_post_id == sim.state()["media"][0]["id"]
    assert connector.find_published(request(key="other")) is None


def test_error_classes(connector, sim):
    with pytest.raises(AuthError):
        connector.publish(request(token="bad-token"))
    sim.set_faults({"rules": [{"kind": "http_500", "count": 1, "path": "/media"}]})
    with pytest.raises(RetryableError):
        connector.publish(request(key="five-hundred"))  # container creation: nothing was published
    sim.set_faults({"rules": [{"kind": "rate_limit", "count": 1, "retry_after": 3}]})
    seen = []
    set_sink(seen.append)
    try:
        with pytest.raises(RateLimitedError) as info:
            connector.publish(request(key="throttled"))
    finally:
        set_sink(None)
    assert info.value.scope == "app" and seen[-1].used_pct == 100.0 and seen[-1].retry_after == 3
    sim.set_faults({"rules": []})
    with pytest.raises(PermanentError):
        connector.publish(request(media=(MediaItem("", "image"),), key="no-url"))


def test_metrics_mapping_and_deleted_post(connector, sim):
    result = connector.publish(request(key="metrics"))
    creds = request().credentials
    snap = connector.fetch_metrics(
        creds, [MetricsRef("p1", result.platform_post_id), MetricsRef("p2", "999")]
    )
    assert set(snap[0].metrics) == {"impressions", "reach", "likes", "comments", "shares", "saves"}
    assert "clicks" not in snap[0].metrics and snap[1].deleted
