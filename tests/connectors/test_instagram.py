"""Instagram connector against the Instagram simulator over real HTTP: the conformance suite, plus
what is peculiar to Instagram (containers, carousels and reels, the publishing quota, container
errors, a lookup behind many newer media, insights that Meta deprecates)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import requests

from mcmp.config import Settings
from mcmp.config.settings import InstagramSettings
from mcmp.connectors import (
    AmbiguousError,
    Credentials,
    LookupIncompleteError,
    MediaItem,
    MetricsRef,
    PermanentError,
    PostContent,
    PublishRequest,
    RateLimitedError,
    RetryableError,
    UsageReport,
    ValidationError,
    marker_for,
)
from mcmp.connectors.instagram import InstagramConnector
from mcmp.connectors.instagram import connector as ig_connector
from mcmp.connectors.testing import ConnectorConformance
from mcmp.simulators.instagram import InstagramSimulator
from tests.connectors.simulator_fixtures import simulator_fixtures

USER = "17841400000001"
TOKEN = "EAAB-test-ig"
IMAGE = MediaItem("https://cdn.example/a.jpg", "image", "A red bicycle")
IMAGE2 = MediaItem("https://cdn.example/b.jpg", "image")
VIDEO = MediaItem("https://cdn.example/v.mp4", "video")


def _tune(sim: InstagramSimulator) -> None:
    sim.quota_total, sim.container_polls, sim.container_ttl_seconds = 50, 1, 86_400.0
    sim.valid_metrics = {"views", "reach", "likes", "comments", "shares", "saved", "total_interactions"}
    sim.owner_call_limit = 48_000


served, sim, base = simulator_fixtures(
    lambda: InstagramSimulator(app_id="app-1", app_secret="s3cret", metrics_per_second=50),
    hold_seconds=1.0,
    prepare=_tune,
)


def make_connector(base: str, **overrides: object) -> InstagramConnector:
    values: dict[str, object] = {
        "base_url": base,
        "timeout_seconds": 0.5,
        "app_id": "app-1",
        "app_secret": "s3cret",
        "container_poll_seconds": 0.02,
        "container_poll_timeout_seconds": 2.0,
        "quota_recheck_seconds": 7.0,
    }
    values.update(overrides)
    return InstagramConnector(Settings(instagram=InstagramSettings(**values)))


@pytest.fixture
def connector(sim: InstagramSimulator, base: str) -> InstagramConnector:
    return make_connector(base)


def creds(token: str = TOKEN) -> Credentials:
    return Credentials("acct-1", "instagram", token, external_account_id=USER)


class TestInstagramConformance(ConnectorConformance):
    write_path = "/media_publish"
    token_path = "/oauth"
    body_limit = 2_200 - 25  # the delivery marker takes 25
    metric_names = frozenset({"impressions", "reach", "likes", "comments", "shares", "saves"})
    lookup_budget = (ig_connector, "RECONCILE_PAGE_SIZE")

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        return creds(token or TOKEN)

    def content(self, key: str, body: str | None = None) -> PostContent:
        return PostContent(
            "post-1", "client-1", "Title", f"Hello #summer {key}" if body is None else body, (IMAGE,)
        )

    def refused_content(self, base: str) -> PostContent:
        return PostContent("post-1", "client-1", "Title", "Buy now SIM-SPAM", (IMAGE,))

    def revoked_grant(self, base: str) -> Credentials:
        requests.post(f"{base}/_sim/tokens", json={"action": "revoke", "token": "EAAB-gone"}, timeout=2)
        return creds("EAAB-gone")

    def age(self, sim: InstagramSimulator, platform_post_id: str) -> None:
        sim.media[platform_post_id]["created_at"] -= 10


def request(
    media: tuple[MediaItem, ...] = (IMAGE,),
    body: str = "Hello #summer",
    key: str = "delivery-1",
    c: Credentials | None = None,
) -> PublishRequest:
    now = datetime.now(UTC)
    content = PostContent("post-1", "client-1", "Title", body, media)
    return PublishRequest(key, key, "attempt-1", now, content, c or creds(), first_attempt_at=now)


def media(sim: InstagramSimulator) -> list[dict]:
    return sim.state()["media"]


# --- publishing --------------------------------------------------------------------------------------
def test_image_post_with_alt_text_and_marker(connector: InstagramConnector, sim: InstagramSimulator) -> None:
    result = connector.publish(request())
    [stored] = media(sim)
    assert result.platform_post_id == stored["id"] and result.url == stored["permalink"]
    assert stored["media_type"] == "IMAGE" and stored["alt_text"] == "A red bicycle"
    assert stored["caption"].startswith("Hello #summer") and stored["marker"] == marker_for("delivery-1")
    [container] = sim.state()["containers"].values()
    assert container["polls"] >= 1  # polled until FINISHED


def test_carousel_of_images_and_a_video(connector: InstagramConnector, sim: InstagramSimulator) -> None:
    connector.publish(request(media=(IMAGE, IMAGE2, VIDEO)))
    [stored] = media(sim)
    assert stored["media_type"] == "CAROUSEL_ALBUM"
    assert [c["media_type"] for c in stored["children"]] == ["IMAGE", "IMAGE", "VIDEO"]
    assert stored["children"][0]["alt_text"] == "A red bicycle"
    assert sum(1 for c in sim.state()["containers"].values() if c["is_carousel_item"]) == 3


def test_reel_from_a_single_video(connector: InstagramConnector, sim: InstagramSimulator) -> None:
    connector.publish(request(media=(VIDEO,)))
    [stored] = media(sim)
    assert stored["media_product_type"] == "REELS"
    [container] = sim.state()["containers"].values()
    assert container["video_url"] == VIDEO.url and container["media_type"] == "REELS"


def test_validation_before_any_call(connector: InstagramConnector, sim: InstagramSimulator) -> None:
    cases = [
        (request(media=()), "at least one image or video"),
        (request(media=(IMAGE,) * 11), "2 to 10"),
        (request(body=" ".join(f"#t{i}" for i in range(31))), "31 hashtags"),
        (request(body=" ".join(f"@u{i}" for i in range(21))), "21 @mentions"),
        (request(media=(MediaItem("https://cdn.example/doc.pdf", "file"),)), "images and videos"),
    ]
    for req, reason in cases:
        with pytest.raises(ValidationError, match=reason):
            connector.validate(req.content, req.credentials)
    assert sim.state()["calls"] == 0


# --- quota -----------------------------------------------------------------------------------------------
def test_quota_used_up_defers_before_any_container(
    connector: InstagramConnector, sim: InstagramSimulator, base: str, reports: list[UsageReport]
) -> None:
    requests.post(f"{base}/_sim/quota", json={"quota_total": 2, "user": USER, "used": 2}, timeout=2)
    with pytest.raises(RateLimitedError) as err:
        connector.publish(request())
    assert err.value.scope == "ig-publish-quota" and err.value.retry_after == 7.0
    assert sim.state()["containers"] == {}
    assert any(r.scope == "ig-publish-quota" and r.used_pct == 100 for r in reports)


def test_quota_refusal_at_media_publish_is_rate_limited(
    connector: InstagramConnector, sim: InstagramSimulator
) -> None:
    # A publish just inside the 24 h window but before our ``since``: the pre-check sees room,
    # media_publish does not (Graph 9/2207042).
    sim.quota_total = 1
    sim.publishes[USER] = [time.time() - 86_400 + 30]
    with pytest.raises(RateLimitedError) as err:
        connector.publish(request())
    assert err.value.scope == "ig-publish-quota" and err.value.platform_code == "9/2207042"
    assert err.value.retry_after == 7.0 and media(sim) == []


# --- error classes -----------------------------------------------------------------------------------------
def test_retryable_when_container_creation_fails(
    connector: InstagramConnector, sim: InstagramSimulator
) -> None:
    sim.set_faults({"rules": [{"kind": "http_500", "count": 1, "path": "/media"}]})
    with pytest.raises(RetryableError) as err:
        connector.publish(request())
    assert not isinstance(err.value, AmbiguousError)  # a container is not a post


def test_container_error_status_retryable_or_permanent(connector: InstagramConnector) -> None:
    with pytest.raises(RetryableError, match="2207003"):
        connector.publish(request(media=(MediaItem("https://cdn.example/sim-error-2207003.jpg", "image"),)))
    with pytest.raises(PermanentError, match="2207004"):
        connector.publish(request(media=(MediaItem("https://cdn.example/sim-error-2207004.jpg", "image"),)))


def test_container_never_finishing_or_expired_is_retryable(sim: InstagramSimulator, base: str) -> None:
    sim.container_polls = 10_000
    with pytest.raises(RetryableError, match="IN_PROGRESS"):
        make_connector(base, container_poll_timeout_seconds=0.2).publish(request())
    sim.container_polls, sim.container_ttl_seconds = 1, 0.0
    with pytest.raises(RetryableError, match="expired"):
        make_connector(base).publish(request())
    assert media(sim) == []


def test_rate_limited_account_budget_reports_usage(
    connector: InstagramConnector, sim: InstagramSimulator, reports: list[UsageReport]
) -> None:
    sim.owner_call_limit = 2
    with pytest.raises(RateLimitedError) as err:
        connector.publish(request())
    assert err.value.scope == "account" and err.value.platform_code == 80002 and err.value.retry_after >= 60
    assert any(r.scope == "account" and r.account_id == "acct-1" and r.used_pct == 100 for r in reports)


def test_reconcile_finds_a_post_behind_250_newer_media(
    connector: InstagramConnector, sim: InstagramSimulator, base: str
) -> None:
    """The chaos run's case: a worker killed after media_publish, reaped while 250 more went out."""
    sim.quota_total = 1_000
    sim.set_faults({"rules": [{"kind": "commit_then_timeout", "count": 1, "path": "/media_publish"}]})
    with pytest.raises(AmbiguousError):
        connector.publish(request())
    for i in range(5):  # a few through the real publishing flow, the rest seeded as published
        connector.publish(request(key=f"other-{i}", body=f"Other {i}"))
    time.sleep(0.01)
    newer = [{"id": f"178{i:08d}", "owner": USER, "age_seconds": 0} for i in range(245)]
    requests.post(f"{base}/_sim/seed", json={"posts": newer}, timeout=5).raise_for_status()
    found = connector.find_published(request())
    [ours] = [m for m in media(sim) if marker_for("delivery-1") in m["caption"]]
    assert found is not None and found.platform_post_id == ours["id"] and len(media(sim)) == 251


# --- metrics ---------------------------------------------------------------------------------------------------
def test_fetch_metrics_mapping_rejected_metric_and_deleted_media(
    connector: InstagramConnector, sim: InstagramSimulator, base: str
) -> None:
    kept = connector.publish(request(key="a"))
    gone = connector.publish(request(key="b"))
    sim.media[kept.platform_post_id]["created_at"] -= 10
    sim.valid_metrics.discard("saved")  # as after a deprecation
    requests.post(f"{base}/_sim/delete", json={"id": gone.platform_post_id}, timeout=2)
    snaps = connector.fetch_metrics(
        creds(), [MetricsRef("p", kept.platform_post_id), MetricsRef("p", gone.platform_post_id)]
    )
    assert set(snaps[0].metrics) == {"impressions", "reach", "likes", "comments", "shares"}
    assert snaps[0].metrics["impressions"] > snaps[0].metrics["reach"] > snaps[0].metrics["likes"] > 0
    assert snaps[1].deleted and snaps[1].metrics == {}


def test_lookup_follows_time_based_paging_and_a_failed_page_is_incomplete(
    connector: InstagramConnector, sim: InstagramSimulator, base: str
) -> None:
    """More than 100 newer media listed with time-based paging (``until``, no cursors)."""
    ours = connector.publish(request())
    time.sleep(0.01)
    seeded = [{"id": f"179{i:08d}", "owner": USER, "age_seconds": 0} for i in range(130)]
    requests.post(f"{base}/_sim/seed", json={"posts": seeded}, timeout=5).raise_for_status()
    requests.post(f"{base}/_sim/paging", json={"style": "time", "owners": [USER]}, timeout=2)
    found = connector.find_published(request())
    assert found is not None and found.platform_post_id == ours.platform_post_id
    sim.set_faults(
        {"rules": [{"kind": "http_503", "methods": ["GET"], "query": "__paging_token", "count": 1}]}
    )
    with pytest.raises(LookupIncompleteError, match="a later page failed"):
        connector.find_published(request())
