"""Facebook connector against the Facebook simulator over real HTTP: the conformance suite, plus
what is peculiar to Facebook (markers, link and photo posts, Graph codes and budgets, the
long-lived token exchange, insights that Meta deprecates)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from mcmp.config import Settings
from mcmp.config.settings import FacebookSettings
from mcmp.connectors import (
    AmbiguousError,
    AuthError,
    Credentials,
    LookupIncompleteError,
    MediaItem,
    MetricsRef,
    PostContent,
    PublishRequest,
    RateLimitedError,
    RetryableError,
    UsageReport,
    ValidationError,
    marker_for,
)
from mcmp.connectors.facebook import FacebookConnector
from mcmp.connectors.facebook import connector as fb_connector
from mcmp.connectors.testing import ConnectorConformance
from mcmp.simulators.facebook import FacebookSimulator
from tests.connectors.simulator_fixtures import simulator_fixtures

PAGE = "1000001"
TOKEN = "EAAB-test-page"


def _tune(sim: FacebookSimulator) -> None:
    sim.valid_metrics = {"post_media_view", "post_total_media_view_unique", "post_clicks"}
    sim.app_call_limit, sim.owner_call_limit = 200_000, 48_000


served, sim, base = simulator_fixtures(
    lambda: FacebookSimulator(app_id="app-1", app_secret="s3cret", metrics_per_second=50),
    hold_seconds=1.0,
    prepare=_tune,
)


def make_connector(base: str) -> FacebookConnector:
    cfg = FacebookSettings(base_url=base, timeout_seconds=0.5, app_id="app-1", app_secret="s3cret")
    return FacebookConnector(Settings(facebook=cfg))


@pytest.fixture
def connector(sim: FacebookSimulator, base: str) -> FacebookConnector:
    return make_connector(base)


def creds(token: str = TOKEN, page: str = PAGE) -> Credentials:
    return Credentials("acct-1", "facebook", token, external_account_id=page)


class TestFacebookConformance(ConnectorConformance):
    write_path = "/feed"
    token_path = "/oauth"
    body_limit = 63_206 - 25  # the delivery marker takes 25
    metric_names = frozenset({"impressions", "reach", "clicks", "likes", "comments", "shares"})
    lookup_budget = (fb_connector, "RECONCILE_PAGE_SIZE")

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        return creds(token or TOKEN)

    def content(self, key: str, body: str | None = None) -> PostContent:
        return PostContent("post-1", "client-1", "Title", f"Hello from MCMP {key}" if body is None else body)

    def refused_content(self, base: str) -> PostContent:
        return PostContent(
            "post-1", "client-1", "Title", "Read this", link="https://example.com/sim-scrape-fail"
        )

    def revoked_grant(self, base: str) -> Credentials:
        requests.post(f"{base}/_sim/tokens", json={"action": "revoke", "token": "EAAB-gone"}, timeout=2)
        return creds("EAAB-gone")

    def age(self, sim: FacebookSimulator, platform_post_id: str) -> None:
        sim.posts[platform_post_id]["created_time"] -= 10


def request(
    body: str = "Hello from MCMP",
    key: str = "delivery-1",
    media: tuple[MediaItem, ...] = (),
    link: str | None = None,
    c: Credentials | None = None,
) -> PublishRequest:
    now = datetime.now(UTC)
    content = PostContent("post-1", "client-1", "Title", body, media, link)
    return PublishRequest(key, key, "attempt-1", now, content, c or creds(), first_attempt_at=now)


def posts(sim: FacebookSimulator) -> list[dict]:
    return sim.state()["posts"]


# --- publishing ------------------------------------------------------------------------------------
def test_text_post_carries_the_delivery_marker(connector: FacebookConnector, sim: FacebookSimulator) -> None:
    result = connector.publish(request())
    [post] = posts(sim)
    assert result.platform_post_id == post["id"] and post["id"].startswith(f"{PAGE}_")
    assert post["message"].startswith("Hello from MCMP") and post["marker"] == marker_for("delivery-1")
    assert result.url and result.published_at is not None


def test_link_post_from_content_or_options(connector: FacebookConnector, sim: FacebookSimulator) -> None:
    connector.publish(request(link="https://example.com/a"))
    content = PostContent("p", "c", "T", "From options", options={"link": "https://example.com/b"})
    connector.publish(PublishRequest("d2", "d2", "a", datetime.now(UTC), content, creds()))
    assert sorted(p["link"] for p in posts(sim)) == ["https://example.com/a", "https://example.com/b"]
    assert all(p["type"] == "link" for p in posts(sim))


def test_single_photo_post_keeps_the_post_id(connector: FacebookConnector, sim: FacebookSimulator) -> None:
    result = connector.publish(request(media=(MediaItem("https://cdn.example/a.jpg", "image"),)))
    [post] = posts(sim)
    [photo] = sim.state()["photos"]
    assert result.platform_post_id == post["id"] == photo["post_id"] and photo["published"]


def test_several_photos_are_uploaded_unpublished_then_attached(
    connector: FacebookConnector, sim: FacebookSimulator
) -> None:
    media = tuple(MediaItem(f"https://cdn.example/{i}.jpg", "image") for i in range(3))
    result = connector.publish(request(media=media))
    [post] = posts(sim)
    photos = sim.state()["photos"]
    assert len(photos) == 3 and not any(p["published"] for p in photos)
    assert sorted(post["attached_photos"]) == sorted(p["id"] for p in photos)
    assert result.platform_post_id == post["id"]


def test_validation_before_any_call(connector: FacebookConnector, sim: FacebookSimulator) -> None:
    mixed = (MediaItem("https://cdn.example/a.jpg", "image"), MediaItem("https://cdn.example/v.mp4", "video"))
    with pytest.raises(ValidationError, match="cannot mix image and video"):
        connector.validate(request(media=mixed).content, creds())
    with pytest.raises(ValidationError, match="needs text, a link or a photo"):
        connector.validate(PostContent("p", "c", "", "  "), creds())
    with pytest.raises(ValidationError, match="Page id"):
        connector.validate(request().content, creds(page="my-page"))
    assert sim.state()["calls"] == 0


# --- error classes -----------------------------------------------------------------------------------
class _Front(BaseHTTPRequestHandler):
    """A front end answering 502 with HTML, or 500 with an empty body."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        html = b"<html><body>502 Bad Gateway</body></html>" if "/html/" in self.path else b""
        self.send_response(502 if html else 500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(html)))
        self.end_headers()
        self.wfile.write(html)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_html_5xx_is_retryable_and_an_empty_5xx_on_a_write_is_ambiguous() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Front)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(RetryableError) as err:
            make_connector(f"{base}/html").publish(request())
        assert not isinstance(err.value, AmbiguousError)
        with pytest.raises(AmbiguousError):
            make_connector(f"{base}/empty").publish(request())
    finally:
        server.shutdown()


def test_rate_limited_page_budget_uses_the_buc_estimate_and_reports_usage(
    connector: FacebookConnector, sim: FacebookSimulator, base: str, reports: list[UsageReport]
) -> None:
    requests.post(f"{base}/_sim/budget", json={"owner_call_limit": 1, "window_seconds": 600}, timeout=2)
    connector.publish(request())
    assert {(r.scope, r.account_id) for r in reports} >= {("app", None), ("account", "acct-1")}
    with pytest.raises(RateLimitedError) as err:
        connector.publish(request(key="delivery-2"))
    assert err.value.scope == "account" and err.value.platform_code == 80001
    assert 60 <= err.value.retry_after <= 600  # estimated_time_to_regain_access is in minutes
    assert any(r.scope == "account" and r.used_pct == 100 and r.retry_after for r in reports)
    assert len(posts(sim)) == 1


def test_rate_limited_app_budget_is_app_scope(connector: FacebookConnector, sim: FacebookSimulator) -> None:
    sim.app_call_limit = 0
    with pytest.raises(RateLimitedError) as err:
        connector.publish(request())
    assert err.value.scope == "app" and err.value.platform_code == 4


def test_auth_error_for_revoked_expired_or_unknown_tokens(
    connector: FacebookConnector, sim: FacebookSimulator, base: str
) -> None:
    requests.post(f"{base}/_sim/tokens", json={"action": "revoke", "token": "EAAB-gone"}, timeout=2)
    requests.post(f"{base}/_sim/tokens", json={"action": "expire", "token": "EAAB-old"}, timeout=2)
    for token, code in (("EAAB-gone", "190/460"), ("EAAB-old", "190/463"), ("not-a-token", 190)):
        with pytest.raises(AuthError) as err:
            connector.publish(request(c=creds(token=token)))
        assert err.value.platform_code == code
        assert token not in str(err.value)
    assert posts(sim) == []


def test_duplicate_506_is_ambiguous_then_found(connector: FacebookConnector, sim: FacebookSimulator) -> None:
    connector.publish(request())
    with pytest.raises(AmbiguousError) as err:
        connector.publish(request())  # the same delivery again: same text and marker
    assert err.value.platform_code == 506
    assert connector.find_published(request()) is not None and len(posts(sim)) == 1


# --- tokens ------------------------------------------------------------------------------------------------
def test_refresh_token_exchange(connector: FacebookConnector, sim: FacebookSimulator, base: str) -> None:
    requests.post(f"{base}/_sim/tokens", json={"token": "EAAB-user", "expires_in": 3600}, timeout=2)
    requests.post(f"{base}/_sim/tokens", json={"token": "EAAB-page", "expires_in": None}, timeout=2)
    grant = connector.refresh_token(creds(token="EAAB-user"))
    assert grant.access_token != "EAAB-user" and grant.expires_at is not None
    assert 59 <= (grant.expires_at - datetime.now(UTC)).days <= 60
    page = connector.refresh_token(creds(token="EAAB-page"))
    assert page.expires_at is None
    connector.publish(request(c=creds(token=grant.access_token)))  # the new token works
    assert sim.state()["refresh_calls"] == 2


def test_a_throttled_refresh_is_rate_limited(connector: FacebookConnector, sim: FacebookSimulator) -> None:
    sim.set_faults({"rules": [{"kind": "rate_limit", "count": 1, "methods": ["GET"], "retry_after": 30}]})
    with pytest.raises(RateLimitedError) as limited:
        connector.refresh_token(creds())
    assert limited.value.retry_after >= 30
    assert sim.state()["refresh_calls"] == 0  # the throttled call never reached the endpoint


# --- metrics -------------------------------------------------------------------------------------------------
def test_a_rejected_metric_does_not_fail_the_snapshot(
    connector: FacebookConnector, sim: FacebookSimulator
) -> None:
    result = connector.publish(request())
    sim.valid_metrics.discard("post_clicks")  # as after a deprecation
    [snap] = connector.fetch_metrics(creds(), [MetricsRef("post-1", result.platform_post_id)])
    assert "clicks" not in snap.metrics and {"impressions", "reach", "likes"} <= set(snap.metrics)
    assert "post_clicks" in connector.insights.rejected


def test_a_deleted_post_gives_a_deleted_snapshot(connector: FacebookConnector, base: str) -> None:
    kept = connector.publish(request(key="a"))
    gone = connector.publish(request(key="b", body="Another"))
    requests.delete(f"{base}/v21.0/{gone.platform_post_id}", params={"access_token": TOKEN}, timeout=2)
    snaps = connector.fetch_metrics(
        creds(), [MetricsRef("p", kept.platform_post_id), MetricsRef("p", gone.platform_post_id)]
    )
    assert [s.deleted for s in snaps] == [False, True] and snaps[1].metrics == {}


# --- reconciliation paging -------------------------------------------------------------------------
def _seed_newer(base: str, count: int) -> None:
    posts = [{"id": f"{PAGE}_9{i:05d}", "owner": PAGE, "age_seconds": 0} for i in range(count)]
    requests.post(f"{base}/_sim/seed", json={"posts": posts}, timeout=5).raise_for_status()


def test_lookup_follows_time_based_paging_to_our_post(
    connector: FacebookConnector, sim: FacebookSimulator, base: str
) -> None:
    """Graph pages some edges by time (``next`` with ``until``, no cursors): the lookup reads on."""
    ours = connector.publish(request())
    time.sleep(0.01)
    _seed_newer(base, 150)
    requests.post(f"{base}/_sim/paging", json={"style": "time", "owners": [PAGE]}, timeout=2)
    listing = requests.get(
        f"{base}/v21.0/{PAGE}/published_posts", params={"access_token": TOKEN, "limit": "100"}, timeout=2
    ).json()
    assert "cursors" not in listing["paging"] and "until=" in listing["paging"]["next"]
    found = connector.find_published(request())
    assert found is not None and found.platform_post_id == ours.platform_post_id
    assert connector.find_published(request(key="never-sent")) is None


def test_a_later_page_that_fails_is_lookup_incomplete_not_not_found(
    connector: FacebookConnector, sim: FacebookSimulator, base: str
) -> None:
    connector.publish(request())
    time.sleep(0.01)
    _seed_newer(base, 150)
    requests.post(f"{base}/_sim/paging", json={"style": "time"}, timeout=2)
    sim.set_faults({"rules": [{"kind": "http_500", "methods": ["GET"], "query": "__paging_token"}]})
    with pytest.raises(LookupIncompleteError, match="a later page failed"):
        connector.find_published(request(key="never-sent"))
    with pytest.raises(LookupIncompleteError):
        connector.find_published(request())
    sim.set_faults({"rules": []})
    assert connector.find_published(request()) is not None


def test_a_next_page_on_another_host_is_never_followed(connector: FacebookConnector) -> None:
    client = connector.client
    assert client.next_page(TOKEN, "https://graph.evil.example/v21.0/1/feed?until=1", account_id=None) is None
    assert client.next_page(TOKEN, "file:///etc/passwd", account_id=None) is None
