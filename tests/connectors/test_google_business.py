"""Google Business Profile connector against its simulator over real HTTP: the conformance suite,
plus what is peculiar to Google (STANDARD posts with CTA and photo, scopes and managed locations,
a lookup across pages, insights that may be retired, deleted posts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from mcmp.config import Settings
from mcmp.config.settings import GoogleBusinessSettings
from mcmp.connectors import (
    AmbiguousError,
    AuthError,
    Credentials,
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
from mcmp.connectors.google_business import GoogleBusinessConnector
from mcmp.connectors.google_business import connector as gbp_connector
from mcmp.connectors.testing import ConnectorConformance
from mcmp.simulators.google_business import GoogleBusinessSimulator
from tests.connectors.simulator_fixtures import simulator_fixtures

LOCATION = "accounts/111/locations/222"
PHOTO = "https://cdn.example.com/shop.jpg"


def _tune(sim: GoogleBusinessSimulator) -> None:
    sim.insights_available = True
    sim.quota_per_minute = 300


served, sim, base = simulator_fixtures(GoogleBusinessSimulator, prepare=_tune)


@pytest.fixture
def connector(sim: GoogleBusinessSimulator, base: str) -> GoogleBusinessConnector:
    cfg = GoogleBusinessSettings(
        base_url=base, token_url=f"{base}/token", timeout_seconds=1.0, app_id="cid", app_secret="csecret"
    )
    return GoogleBusinessConnector(Settings(google_business=cfg))


def creds(
    token: str = "gbp-test-abc", refresh: str | None = "gbp-test-refresh-1", location: str = LOCATION
) -> Credentials:
    return Credentials(
        "acct-g", "google-business", token, refresh_token=refresh, external_account_id=location
    )


def content(
    body: str = "Fresh bread every morning", media: tuple[MediaItem, ...] = (), **options: object
) -> PostContent:
    return PostContent("p1", "c1", "Title", body, media, options=options)


class TestGoogleBusinessConformance(ConnectorConformance):
    write_path = "/localPosts"
    token_path = "/token"
    body_limit = 1_500 - 25  # the delivery marker takes 25
    metric_names = frozenset({"impressions", "clicks"})
    lookup_budget = (gbp_connector, "PAGE_SIZE")
    post_id_field = "name"

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        return creds(token or "gbp-test-abc")

    def content(self, key: str, body: str | None = None) -> PostContent:
        return content(f"Fresh bread every morning {key}" if body is None else body)

    def refused_content(self, base: str) -> PostContent:
        return content(media=(MediaItem("ftp://bad/x.jpg", "image"),))  # Google fetches http(s) only

    def revoked_grant(self, base: str) -> Credentials:
        requests.post(
            f"{base}/_sim/tokens", json={"action": "revoke", "refresh_token": "gbp-test-refresh-x"}, timeout=2
        )
        return creds(refresh="gbp-test-refresh-x")

    def age(self, sim: GoogleBusinessSimulator, platform_post_id: str) -> None:
        sim.created_at[platform_post_id] -= 90


def request(
    key: str = "delivery-g", c: Credentials | None = None, post: PostContent | None = None
) -> PublishRequest:
    now = datetime.now(UTC)
    return PublishRequest(
        key, key, "a1", now, post or content(), c or creds(), first_attempt_at=now - timedelta(seconds=5)
    )


def test_publish_standard_post_with_cta_and_photo(
    connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator
) -> None:
    post = content(
        media=(MediaItem(PHOTO, "image"),),
        callToAction={"actionType": "ORDER", "url": "https://shop.example/order"},
    )
    result = connector.publish(request(post=post))
    (stored,) = sim.state()["posts"]
    assert result.platform_post_id == stored["name"] and stored["name"].startswith(LOCATION + "/localPosts/")
    assert stored["topicType"] == "STANDARD" and stored["languageCode"] == "en"
    assert stored["summary"] == "Fresh bread every morning" + marker_for("delivery-g")
    assert stored["callToAction"] == {"actionType": "ORDER", "url": "https://shop.example/order"}
    assert stored["media"] == [{"mediaFormat": "PHOTO", "sourceUrl": PHOTO}]
    assert result.url == stored["searchUrl"] and result.published_at is not None


def test_validate_rejects_what_google_would(connector: GoogleBusinessConnector) -> None:
    with pytest.raises(ValidationError, match="photos"):
        connector.validate(content(media=(MediaItem("https://x/v.mp4", "video"),)), creds())
    with pytest.raises(ValidationError, match="actionType"):
        connector.validate(content(callToAction={"actionType": "BUY_NOW", "url": "https://x"}), creds())
    with pytest.raises(ValidationError, match="url"):
        connector.validate(content(callToAction={"actionType": "BOOK"}), creds())
    with pytest.raises(ValidationError, match="accounts/"):
        connector.validate(content(), creds(location="222"))
    connector.validate(content(callToAction={"actionType": "CALL"}), creds())


def test_rate_limited_quota_reports_usage(
    connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator, reports: list[UsageReport]
) -> None:
    sim.quota_per_minute = 0
    with pytest.raises(RateLimitedError) as info:
        connector.publish(request())
    assert info.value.scope == "app" and info.value.retry_after == 60
    assert reports[-1].platform == "google-business"


def register_token(base: str, token: str, **grant: object) -> Credentials:
    """A token the simulator knows with only the given scopes or locations."""
    requests.post(f"{base}/_sim/tokens", json={"action": "register", "token": token, **grant}, timeout=2)
    return creds(token=token)


def test_auth_missing_scope_asks_for_reauthorisation(connector: GoogleBusinessConnector, base: str) -> None:
    noscope = register_token(base, "noscope", scopes=["openid"])
    with pytest.raises(AuthError, match="re-authorised"):
        connector.publish(request(c=noscope))


def test_permanent_location_not_managed(connector: GoogleBusinessConnector, base: str) -> None:
    other = register_token(base, "other", locations=["accounts/1/locations/2"])
    with pytest.raises(PermanentError, match="PERMISSION_DENIED"):
        connector.publish(request(c=other))


def test_ambiguous_commit_then_timeout_is_reconciled_across_pages(
    connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator
) -> None:
    sim.set_faults({"rules": [{"kind": "commit_then_timeout", "path": "/localPosts", "count": 1}]})
    req = request()
    with pytest.raises(AmbiguousError):
        connector.publish(req)
    for i in range(105):  # newer posts push ours to the second page
        connector.publish(request(key=f"other-{i}", post=content(f"other {i}")))
    found = connector.find_published(req)
    assert found is not None and found.platform_post_id.startswith(LOCATION)
    assert sim.posts[found.platform_post_id]["summary"].endswith(marker_for("delivery-g"))
    assert connector.find_published(request(key="never-sent")) is None


def test_refresh_ok(connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator) -> None:
    grant = connector.refresh_token(creds())
    assert grant.access_token.startswith("gbp-test-") and grant.refresh_token is None
    assert grant.expires_at is not None and grant.expires_at > datetime.now(UTC) + timedelta(minutes=50)
    assert sim.state()["refresh_calls"] == 1
    connector.publish(request(c=creds(token=grant.access_token)))


def test_metrics_mapping_and_retired_insights(
    connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator
) -> None:
    post = connector.publish(request())
    sim.created_at[post.platform_post_id] -= 90
    (snap,) = connector.fetch_metrics(creds(), [MetricsRef("p1", post.platform_post_id)])
    assert set(snap.metrics) == {"impressions", "clicks"} and snap.metrics["impressions"] >= 360
    sim.insights_available = False
    (snap,) = connector.fetch_metrics(creds(), [MetricsRef("p1", post.platform_post_id)])
    assert snap.metrics == {}


def delete_on_google(connector: GoogleBusinessConnector, name: str) -> None:
    """``DELETE v4/{name}`` (localPosts.delete), as the owner deleting the post would."""
    response = requests.delete(
        f"{connector.base}/{name}", headers={"Authorization": "Bearer gbp-test-abc"}, timeout=2
    )
    assert response.status_code == 200


def test_metrics_post_deleted_on_google_is_reported_deleted(
    connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator
) -> None:
    kept = connector.publish(request()).platform_post_id
    deleted = connector.publish(request(key="delivery-2", post=content("Closed on Monday"))).platform_post_id
    delete_on_google(connector, deleted)
    sim.request_log.clear()
    snaps = connector.fetch_metrics(creds(), [MetricsRef("p1", kept), MetricsRef("p2", deleted)])
    assert [(s.platform_post_id, s.deleted) for s in snaps] == [(kept, False), (deleted, True)]
    assert set(snaps[0].metrics) == {"impressions", "clicks"} and snaps[1].metrics == {}
    # One batched reportInsights call; only the post missing from its answer is looked up.
    calls = [(r["method"], r["path"]) for r in sim.request_log]
    assert calls == [("POST", f"/v4/{LOCATION}/localPosts:reportInsights"), ("GET", f"/v4/{deleted}")]


def test_metrics_refused_insights_still_tell_deleted_from_present(
    connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator
) -> None:
    name = connector.publish(request()).platform_post_id
    deleted = connector.publish(request(key="delivery-2", post=content("Closed on Monday"))).platform_post_id
    delete_on_google(connector, deleted)
    sim.insights_available = False  # reportInsights answers 404: each post is looked up
    snaps = connector.fetch_metrics(creds(), [MetricsRef("p1", name), MetricsRef("p2", deleted)])
    assert [(s.deleted, s.metrics) for s in snaps] == [(False, {}), (True, {})]


def test_metrics_existence_check_5xx_is_retryable_not_deleted(
    connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator
) -> None:
    name = connector.publish(request()).platform_post_id
    delete_on_google(connector, name)
    sim.set_faults({"rules": [{"kind": "http_500", "methods": ["GET"], "path": "/localPosts/"}]})
    with pytest.raises(RetryableError) as info:
        connector.fetch_metrics(creds(), [MetricsRef("p1", name)])
    assert not isinstance(info.value, AmbiguousError)
    assert sim.fault_log and sim.fault_log[-1]["method"] == "GET"


def test_four_photos_in_one_local_post_and_a_video_refused_naming_the_item(
    connector: GoogleBusinessConnector, sim: GoogleBusinessSimulator
) -> None:
    photos = tuple(MediaItem(f"https://cdn.example/p{i}.jpg", "image", None, "image/jpeg") for i in range(4))
    connector.publish(request(post=content(media=photos)))
    (stored,) = sim.state()["posts"]
    assert stored["media"] == [{"mediaFormat": "PHOTO", "sourceUrl": p.url} for p in photos]
    clip = MediaItem("https://cdn.example/clip.mp4?sig=secret", "video")
    with pytest.raises(ValidationError) as err:
        connector.validate(content(media=(photos[0], clip)), creds())
    assert str(err.value) == (
        "media: media[1] (https://cdn.example/clip.mp4): Google Business Profile local posts take photos only "
        "(the API refuses videos in posts)"
    )
