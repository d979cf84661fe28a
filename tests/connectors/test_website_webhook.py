"""The signed-webhook website connector against its simulator: every error class."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcmp.config import Settings
from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.types import Credentials, PostContent, PublishRequest
from mcmp.connectors.website import WebsiteConnector
from mcmp.connectors.website.signing import sign, verify
from mcmp.simulators.core import start_in_thread
from mcmp.simulators.website import WebhookSimulator


@pytest.fixture
def sim():
    simulator = WebhookSimulator()
    simulator.hold_seconds = 1.5
    server, url = start_in_thread(simulator)
    simulator.url = url
    yield simulator
    server.shutdown()


@pytest.fixture
def connector():
    settings = Settings()
    settings.website.timeout_seconds = 0.8
    return WebsiteConnector(settings)


def request(sim, key="d1", secret="dev-webhook-secret", body="Hello", title="T"):
    creds = Credentials("acct", "website", secret, metadata={"webhookUrl": f"{sim.url}/hooks/acme"})
    return PublishRequest(key, key, "a1", datetime.now(UTC), PostContent("p1", "c1", title, body), creds)


def test_signature_is_hmac_over_timestamp_and_body():
    assert sign("s", "1700000000", b"{}") == sign("s", "1700000000", b"{}")
    assert verify("s", "1700000000", b"{}", sign("s", "1700000000", b"{}"), now=1700000010) is None
    assert (
        verify("s", "1700000000", b"{}", sign("s", "1700000000", b"{}"), now=1700009999)
        == "timestamp outside tolerance"
    )
    assert (
        verify("other", "1700000000", b"{}", sign("s", "1700000000", b"{}"), now=1700000000)
        == "signature mismatch"
    )


def test_published_with_idempotency_key(connector, sim):
    result = connector.publish(request(sim))
    [stored] = sim.state()["posts"]
    assert stored["idempotencyKey"] == "d1" and stored["id"] == result.platform_post_id


def test_retryable_5xx_on_a_read_and_ambiguous_on_a_write(connector, sim):
    sim.set_faults({"rules": [{"kind": "http_503", "count": 1}]})
    with pytest.raises(RetryableError) as info:
        connector.publish(request(sim))
    assert not isinstance(info.value, AmbiguousError)  # 503: the site says it did not take it
    sim.set_faults({"rules": [{"kind": "http_500", "count": 1}]})
    with pytest.raises(AmbiguousError):
        connector.publish(request(sim))
    sim.set_faults({"rules": [{"kind": "http_500", "count": 1, "methods": ["GET"]}]})
    with pytest.raises(RetryableError):
        connector.find_published(request(sim))


def test_rate_limited_honours_retry_after(connector, sim):
    sim.set_faults({"rules": [{"kind": "rate_limit", "count": 1, "retry_after": 7}]})
    with pytest.raises(RateLimitedError) as info:
        connector.publish(request(sim))
    assert info.value.retry_after == 7


def test_auth_on_bad_secret(connector, sim):
    with pytest.raises(AuthError):
        connector.publish(request(sim, secret="wrong"))


def test_permanent_on_refused_post_and_validation(connector, sim):
    with pytest.raises(PermanentError, match="422"):
        connector.publish(request(sim, title=""))
    bad = Credentials("acct", "website", "s", metadata={})
    with pytest.raises(ValidationError, match="webhookUrl"):
        connector.validate(PostContent("p", "c", "t", "b"), bad)


def test_ambiguous_commit_then_timeout_is_reconciled_not_reposted(connector, sim):
    sim.set_faults({"rules": [{"kind": "commit_then_timeout", "count": 1}]})
    req = request(sim, key="lost")
    with pytest.raises(AmbiguousError):
        connector.publish(req)
    found = connector.find_published(req)
    assert found is not None and sim.state()["count"] == 1
    assert connector.find_published(request(sim, key="never-sent")) is None


def test_the_payload_carries_each_media_url_with_type_alt_text_and_facts(connector, sim):
    from mcmp.connectors.types import MediaItem

    media = (
        MediaItem("https://cdn.example/a.jpg", "image", "A red bicycle", "image/jpeg", 20_000),
        MediaItem("https://cdn.example/clip.mp4", "video", None, "video/mp4", 9_000_000, 12.5, 1080, 1920),
    )
    creds = Credentials(
        "acct", "website", "dev-webhook-secret", metadata={"webhookUrl": f"{sim.url}/hooks/acme"}
    )
    content = PostContent("p1", "c1", "T", "With media", media)
    connector.publish(PublishRequest("dm", "dm", "a1", datetime.now(UTC), content, creds))
    [stored] = sim.state()["posts"]
    assert stored["media"] == [
        {
            "url": "https://cdn.example/a.jpg",
            "type": "image",
            "altText": "A red bicycle",
            "mimeType": "image/jpeg",
            "sizeBytes": 20_000,
            "durationSeconds": None,
            "width": None,
            "height": None,
        },
        {
            "url": "https://cdn.example/clip.mp4",
            "type": "video",
            "altText": None,
            "mimeType": "video/mp4",
            "sizeBytes": 9_000_000,
            "durationSeconds": 12.5,
            "width": 1080,
            "height": 1920,
        },
    ]
