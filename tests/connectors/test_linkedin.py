"""LinkedIn connector against the LinkedIn simulator over real HTTP: the conformance suite, plus
what is peculiar to LinkedIn (little-format escapes, image uploads, versions, app and member
budgets, missing roles, organisation and member statistics, deleted posts)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
import requests

from mcmp.config import Settings
from mcmp.config.settings import LinkedInSettings
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
from mcmp.connectors.linkedin import LinkedInConnector
from mcmp.connectors.linkedin import connector as li_connector
from mcmp.connectors.testing import ConnectorConformance
from mcmp.simulators.linkedin import LinkedInSimulator
from tests.conftest import LOOPBACK
from tests.connectors.simulator_fixtures import simulator_fixtures

VERSION = datetime.now(UTC).strftime("%Y%m")
ORG = "urn:li:organization:2414183"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        status, body = (200, PNG) if self.path == "/img.png" else (404, b"")
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def image_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/img.png"
    server.shutdown()


served, sim, base = simulator_fixtures(LinkedInSimulator)


def make_connector(base: str, version: str = VERSION) -> LinkedInConnector:
    cfg = LinkedInSettings(
        base_url=base,
        api_version=version,
        token_url=f"{base}/oauth/v2/accessToken",
        timeout_seconds=1.0,
        app_id="cid",
        app_secret="csecret",
    )
    return LinkedInConnector(Settings(linkedin=cfg, fetch_allowed_networks=[LOOPBACK]))


@pytest.fixture
def connector(sim: LinkedInSimulator, base: str) -> LinkedInConnector:
    return make_connector(base)


def creds(
    token: str = "li-test-abc", author: str = ORG, refresh: str | None = "li-test-refresh-1", **meta: object
) -> Credentials:
    return Credentials(
        "acct-1", "linkedin", token, refresh_token=refresh, external_account_id=author, metadata=meta
    )


class TestLinkedInConformance(ConnectorConformance):
    write_path = "/rest/posts"
    token_path = "/oauth"
    body_limit = 3_000 - 25  # the delivery marker takes 25 (plain text needs no escapes)
    metric_names = frozenset({"impressions", "reach", "clicks", "likes", "comments", "shares"})
    lookup_budget = (li_connector, "RECONCILE_PAGE_SIZE")

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        return creds(token or "li-test-abc")

    def content(self, key: str, body: str | None = None) -> PostContent:
        return PostContent("p1", "c1", "Title", f"Hello {key}" if body is None else body)

    def refused_content(self, base: str) -> PostContent:
        return PostContent("p1", "c1", "Title", "x" * 3_000)  # over the limit once the marker is added

    def revoked_grant(self, base: str) -> Credentials:
        requests.post(
            f"{base}/_sim/tokens", json={"action": "revoke", "refresh_token": "li-test-refresh-x"}, timeout=2
        )
        return creds(refresh="li-test-refresh-x")

    def age(self, sim: LinkedInSimulator, platform_post_id: str) -> None:
        sim.posts[platform_post_id]["createdAt"] -= 100_000  # 100 s old


def request(
    body: str = "Hello (world) #launch",
    key: str = "delivery-1",
    media: tuple[MediaItem, ...] = (),
    c: Credentials | None = None,
) -> PublishRequest:
    now = datetime.now(UTC)
    return PublishRequest(
        delivery_id=key,
        idempotency_key=key,
        attempt_id="a1",
        attempt_started_at=now,
        content=PostContent("p1", "c1", "Title", body, media),
        credentials=c or creds(),
        first_attempt_at=now - timedelta(seconds=5),
    )


def test_publish_text_escapes_little_format_and_marks_the_post(
    connector: LinkedInConnector, sim: LinkedInSimulator
) -> None:
    result = connector.publish(request())
    post = sim.state()["posts"][0]
    assert result.platform_post_id == post["id"] and post["id"].startswith("urn:li:share:")
    assert post["commentary"] == "Hello \\(world\\) #launch" + marker_for("delivery-1")
    assert post["author"] == ORG and post["lifecycleState"] == "PUBLISHED"
    assert result.url == f"https://www.linkedin.com/feed/update/{post['id']}/"


def test_publish_image_uploads_then_references_it(
    connector: LinkedInConnector, sim: LinkedInSimulator, image_url: str
) -> None:
    connector.publish(request(media=(MediaItem(image_url, "image", alt_text="a logo"),)))
    state = sim.state()
    ((urn, image),) = state["images"].items()
    assert image["uploaded"] and image["size"] == len(PNG) and image["owner"] == ORG
    assert state["posts"][0]["content"] == {"media": {"id": urn, "altText": "a logo"}}


def test_validate_rejects_what_linkedin_would(connector: LinkedInConnector) -> None:
    mixed = (MediaItem("https://x/a.jpg", "image"), MediaItem("https://x/v.mp4", "video"))
    with pytest.raises(ValidationError, match="cannot mix image and video"):
        connector.validate(PostContent("p", "c", "", "hi", mixed), creds())
    long = MediaItem("https://x/v.mp4", "video", duration_seconds=31 * 60.0, width=1280, height=720)
    with pytest.raises(ValidationError, match=r"media\[0\] \(https://x/v.mp4\): video lasts 1860.0 s"):
        connector.validate(PostContent("p", "c", "", "hi", (long,)), creds())
    with pytest.raises(ValidationError, match="externalAccountId"):
        connector.validate(PostContent("p", "c", "", "hi"), creds(author=""))
    connector.validate(PostContent("p", "c", "", "hi"), creds(author="12345"))  # bare org id
    connector.validate(PostContent("p", "c", "", "hi"), creds(author="abC_9", authorType="person"))


def test_image_upload_failure_is_retryable_not_ambiguous(
    connector: LinkedInConnector, sim: LinkedInSimulator, image_url: str
) -> None:
    sim.set_faults({"rules": [{"kind": "http_500", "path": "/rest/images"}]})
    with pytest.raises(RetryableError) as info:
        connector.publish(request(media=(MediaItem(image_url, "image"),)))
    assert not isinstance(info.value, AmbiguousError)
    assert sim.state()["count"] == 0


def test_rate_limited_app_budget_defers_to_midnight_and_reports(
    connector: LinkedInConnector, sim: LinkedInSimulator, reports: list[UsageReport]
) -> None:
    sim.set_faults({"rules": [{"kind": "rate_limit", "path": "/rest/posts"}]})
    with pytest.raises(RateLimitedError) as info:
        connector.publish(request())
    assert info.value.scope == "app"
    midnight = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs((info.value.until - midnight).total_seconds()) < 5
    assert reports and reports[-1].platform == "linkedin" and reports[-1].scope == "app"


def test_rate_limited_honours_retry_after_and_member_scope(
    sim: LinkedInSimulator, base: str, reports: list[UsageReport]
) -> None:
    connector = make_connector(base)
    sim.set_faults({"rules": [{"kind": "rate_limit", "retry_after": 7, "count": 1}]})
    with pytest.raises(RateLimitedError) as info:
        connector.publish(request())
    assert info.value.retry_after == 7
    sim.member_daily_limit = 1
    try:
        connector.publish(request(key="k2"))
        with pytest.raises(RateLimitedError) as info:
            connector.publish(request(key="k3"))
    finally:
        sim.member_daily_limit = 10_000
    assert info.value.scope == "account" and reports[-1].account_id == "acct-1"


def test_auth_missing_role_asks_for_reauthorisation(
    connector: LinkedInConnector, sim: LinkedInSimulator
) -> None:
    requests.post(
        f"{connector.base}/_sim/tokens",
        json={"action": "register", "token": "scoped", "authors": ["urn:li:organization:1"]},
        timeout=2,
    )
    with pytest.raises(AuthError, match="re-authorised"):
        connector.publish(request(c=creds(token="scoped")))


def test_permanent_sunset_version(sim: LinkedInSimulator, base: str) -> None:
    with pytest.raises(PermanentError, match="NONEXISTENT_VERSION"):
        make_connector(base, version="202401").publish(request())


def test_refresh_ok_keeps_refresh_token(connector: LinkedInConnector, sim: LinkedInSimulator) -> None:
    grant = connector.refresh_token(creds())
    assert grant.access_token.startswith("li-test-") and grant.refresh_token is None
    assert grant.expires_at is not None and grant.expires_at > datetime.now(UTC) + timedelta(days=59)
    assert sim.state()["refresh_calls"] == 1
    connector.publish(request(c=creds(token=grant.access_token)))


def test_metrics_org_mapping(connector: LinkedInConnector, sim: LinkedInSimulator) -> None:
    post = connector.publish(request())
    sim.posts[post.platform_post_id]["createdAt"] -= 100_000  # 100 s old
    (snap,) = connector.fetch_metrics(creds(), [MetricsRef("p1", post.platform_post_id)])
    assert set(snap.metrics) == {"impressions", "reach", "clicks", "likes", "comments", "shares"}
    assert (
        snap.metrics["impressions"] >= 1000 and snap.metrics["reach"] >= 700 and snap.metrics["shares"] >= 10
    )


def test_metrics_member_mapping(connector: LinkedInConnector, sim: LinkedInSimulator) -> None:
    member = creds(author="urn:li:person:sim")
    post = connector.publish(request(c=member))
    sim.posts[post.platform_post_id]["createdAt"] -= 100_000
    (snap,) = connector.fetch_metrics(member, [MetricsRef("p1", post.platform_post_id)])
    # impressions/reach/likes/comments/shares always; saves + clicks since version 202603.
    assert set(snap.metrics) == {"impressions", "reach", "likes", "comments", "shares", "saves", "clicks"}
    assert snap.metrics["impressions"] >= 1000


def delete_on_linkedin(base: str, urn: str) -> None:
    """``DELETE /rest/posts/{encoded urn}``, as the member deleting the post would."""
    headers = {
        "Authorization": "Bearer li-test-abc",
        "LinkedIn-Version": VERSION,
        "X-Restli-Protocol-Version": "2.0.0",
    }
    response = requests.delete(f"{base}/rest/posts/{quote(urn, safe='')}", headers=headers, timeout=2)
    assert response.status_code == 204


def test_metrics_post_deleted_on_linkedin_is_reported_deleted(
    connector: LinkedInConnector, sim: LinkedInSimulator, base: str
) -> None:
    kept = connector.publish(request()).platform_post_id
    deleted = connector.publish(request(key="delivery-2")).platform_post_id
    delete_on_linkedin(base, deleted)
    sim.request_log.clear()
    snaps = connector.fetch_metrics(creds(), [MetricsRef("p1", kept), MetricsRef("p2", deleted)])
    assert [(s.platform_post_id, s.deleted) for s in snaps] == [(kept, False), (deleted, True)]
    assert snaps[0].metrics and snaps[1].metrics == {}
    # Still one batched statistics call; only the post missing from its answer is looked up.
    paths = [r["path"] for r in sim.request_log]
    assert paths == ["/rest/organizationalEntityShareStatistics", f"/rest/posts/{quote(deleted, safe='')}"]


def test_metrics_member_post_deleted_on_linkedin_is_reported_deleted(
    connector: LinkedInConnector, sim: LinkedInSimulator, base: str
) -> None:
    member = creds(author="urn:li:person:sim")
    urn = connector.publish(request(c=member)).platform_post_id
    delete_on_linkedin(base, urn)
    sim.request_log.clear()
    (snap,) = connector.fetch_metrics(member, [MetricsRef("p1", urn)])
    assert snap.deleted and snap.metrics == {}
    assert len(sim.request_log) == 2  # the first 404ing metric, then the post lookup


def test_metrics_post_without_statistics_is_not_deleted(
    connector: LinkedInConnector, sim: LinkedInSimulator
) -> None:
    urn = connector.publish(request()).platform_post_id
    sim.posts[urn]["author"] = "urn:li:organization:1"  # statistics leave it out; the post exists
    (snap,) = connector.fetch_metrics(creds(), [MetricsRef("p1", urn)])
    assert not snap.deleted and snap.metrics == {}


def test_metrics_existence_check_5xx_is_retryable_not_deleted(
    connector: LinkedInConnector, sim: LinkedInSimulator, base: str
) -> None:
    urn = connector.publish(request()).platform_post_id
    delete_on_linkedin(base, urn)
    sim.set_faults({"rules": [{"kind": "http_500", "methods": ["GET"], "path": "/rest/posts/"}]})
    with pytest.raises(RetryableError) as info:
        connector.fetch_metrics(creds(), [MetricsRef("p1", urn)])
    assert not isinstance(info.value, AmbiguousError)
    assert sim.fault_log and sim.fault_log[-1]["path"].startswith("/rest/posts/")
