"""The signed-webhook website connector against its simulator: the conformance suite, plus what is
peculiar to the webhook (the signature, a wrong secret, a 503 that says the site took nothing)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcmp.config import Settings
from mcmp.connectors import (
    AmbiguousError,
    AuthError,
    Credentials,
    PostContent,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.testing import ConnectorConformance
from mcmp.connectors.website import WebsiteConnector
from mcmp.simulators.website import DEFAULT_SECRET, WebhookSimulator
from tests.conftest import LOOPBACK
from tests.connectors.simulator_fixtures import simulator_fixtures

served, sim, base = simulator_fixtures(WebhookSimulator)


@pytest.fixture
def connector(sim: WebhookSimulator) -> WebsiteConnector:
    return WebsiteConnector(Settings(website={"timeout_seconds": 0.8}, fetch_allowed_networks=[LOOPBACK]))


class TestWebhookConformance(ConnectorConformance):
    write_path = "/hooks/"
    body_limit = 1_000_000

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        return Credentials(
            "acct", "website", token or DEFAULT_SECRET, metadata={"webhookUrl": f"{base}/hooks/acme"}
        )

    def content(self, key: str, body: str | None = None) -> PostContent:
        return PostContent("p1", "c1", "Title", f"Hello {key}" if body is None else body)

    def refused_content(self, base: str) -> PostContent:
        return PostContent("p1", "c1", "", "a post without the title the site requires")


site = TestWebhookConformance()


def test_posts_carry_the_delivery_idempotency_key(
    connector: WebsiteConnector, sim: WebhookSimulator, base: str
) -> None:
    result = connector.publish(site.request(base, "d1"))
    [stored] = sim.state()["posts"]
    assert stored["idempotencyKey"] == "d1" and stored["id"] == result.platform_post_id


def test_503_on_a_write_says_the_site_took_nothing(
    connector: WebsiteConnector, sim: WebhookSimulator, base: str
) -> None:
    sim.set_faults({"rules": [{"kind": "http_503", "count": 1}]})
    with pytest.raises(RetryableError) as info:
        connector.publish(site.request(base))
    assert not isinstance(info.value, AmbiguousError)


def test_auth_on_a_wrong_secret(connector: WebsiteConnector, sim: WebhookSimulator, base: str) -> None:
    with pytest.raises(AuthError):
        connector.publish(site.request(base, credentials=site.credentials(base, "a-wrong-but-long-secret")))


def test_an_account_without_webhook_url_fails_validation(connector: WebsiteConnector) -> None:
    bad = Credentials("acct", "website", DEFAULT_SECRET, metadata={})
    with pytest.raises(ValidationError, match="webhookUrl"):
        connector.validate(PostContent("p", "c", "t", "b"), bad)


def test_the_payload_carries_each_media_url_with_type_alt_text_and_facts(
    connector: WebsiteConnector, sim: WebhookSimulator, base: str
) -> None:
    from mcmp.connectors.types import MediaItem, PublishRequest

    media = (
        MediaItem("https://cdn.example/a.jpg", "image", "A red bicycle", "image/jpeg", 20_000),
        MediaItem("https://cdn.example/clip.mp4", "video", None, "video/mp4", 9_000_000, 12.5, 1080, 1920),
    )
    creds = Credentials(
        "acct", "website", "dev-webhook-secret", metadata={"webhookUrl": f"{base}/hooks/acme"}
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
