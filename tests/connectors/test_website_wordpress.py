"""The WordPress variant of the website connector, against the simulator (fast: the conformance
suite plus what is peculiar to WordPress) and a real WordPress.

The same behaviours run twice: once against ``mcmp.simulators.wordpress`` (milliseconds, with fault
injection) and once, marked ``wordpress``, against Debian's WordPress started by
``shared/tools/wordpress-up`` — the simulator is only trusted because the real tests agree.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from mcmp.config.settings import Settings
from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    PermanentError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.testing import ConnectorConformance
from mcmp.connectors.types import Credentials, MediaItem, PostContent, PublishRequest
from mcmp.connectors.website import WebsiteConnector
from mcmp.connectors.website.wordpress import classify, slug_for
from mcmp.simulators.core import start_in_thread
from mcmp.simulators.wordpress import DEFAULT_APP_PASSWORD, DEFAULT_USER, WordPressSimulator
from tests.conftest import LOOPBACK
from tests.connectors import wordpress_fixture
from tests.connectors.wordpress_fixture import ImageHost, LossyProxy, WordPressSite

# Session fixtures shared with other WordPress tests (kept out of conftest.py on purpose).
wordpress = wordpress_fixture.wordpress
image_host = wordpress_fixture.image_host

STATUSES = "publish,future,draft,pending,private"


# --- helpers -------------------------------------------------------------------------------------
def make_connector(timeout: float = 10.0) -> WebsiteConnector:
    return WebsiteConnector(Settings(website={"timeout_seconds": timeout}, fetch_allowed_networks=[LOOPBACK]))


def creds(site_url: str, user: str, password: str, **metadata: Any) -> Credentials:
    return Credentials(
        account_id="acct-wp",
        platform="website",
        access_token=password,
        metadata={"mode": "wordpress", "siteUrl": site_url, "username": user, **metadata},
    )


def make_request(
    credentials: Credentials, *, media: tuple[MediaItem, ...] = (), key: str | None = None
) -> PublishRequest:
    key = key or uuid.uuid4().hex[:24]
    return PublishRequest(
        delivery_id=key,
        idempotency_key=key,
        attempt_id=uuid.uuid4().hex,
        attempt_started_at=datetime.now(UTC),
        content=PostContent(
            post_id=f"post-{key}",
            client_id="client-1",
            title=f"Spring menu {key[:6]}",
            body="<p>Fresh asparagus &amp; wild garlic.</p>",
            media=media,
        ),
        credentials=credentials,
    )


def featured(
    host: ImageHost, name: str = "featured.png", alt: str | None = "A plate of asparagus"
) -> MediaItem:
    return MediaItem(url=host.image(name), kind="image", alt_text=alt, mime_type="image/png")


def posts_with_slug(site_url: str, auth: tuple[str, str], slug: str) -> list[dict[str, Any]]:
    """Every post (any status) whose slug is ours or a WordPress rename of it, straight from the API."""
    slugs = ",".join([slug, *(f"{slug}-{n}" for n in range(2, 10))])
    response = requests.get(
        f"{site_url}/wp-json/wp/v2/posts",
        params={"slug": slugs, "status": STATUSES, "per_page": 100, "context": "edit"},
        auth=auth,
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


# --- fast: simulator -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_server() -> Iterator[tuple[WordPressSimulator, str]]:
    simulator = WordPressSimulator()
    simulator.hold_seconds = 2.0
    server, url = start_in_thread(simulator)
    yield simulator, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim(sim_server: tuple[WordPressSimulator, str]) -> tuple[WordPressSimulator, str]:
    """The module's simulator, emptied: no posts, no faults, documented auth behaviour."""
    simulator, _ = sim_server
    simulator.reset()
    simulator.set_faults({"rules": []})
    simulator.bad_auth_is_anonymous = False
    return sim_server


def sim_creds(url: str, password: str = DEFAULT_APP_PASSWORD, user: str = DEFAULT_USER) -> Credentials:
    return creds(url, user, password)


class TestWordPressConformance(ConnectorConformance):
    """The website connector in ``wordpress`` mode against the WordPress simulator."""

    write_path = "/wp/v2/posts"
    body_limit = None

    @pytest.fixture
    def sim(self, sim_server: tuple[WordPressSimulator, str]) -> WordPressSimulator:
        simulator = sim_server[0]
        simulator.reset()
        simulator.set_faults({"rules": []})
        simulator.bad_auth_is_anonymous = False
        return simulator

    @pytest.fixture
    def base(self, sim_server: tuple[WordPressSimulator, str]) -> str:
        return sim_server[1]

    @pytest.fixture
    def connector(self, sim: WordPressSimulator) -> WebsiteConnector:
        return make_connector(timeout=0.8)

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        return sim_creds(base, password=token or DEFAULT_APP_PASSWORD)

    def content(self, key: str, body: str | None = None) -> PostContent:
        return PostContent(f"post-{key}", "client-1", f"Spring menu {key}", body or "<p>Asparagus.</p>")

    def refused_content(self, base: str) -> PostContent:
        # A featured image its host refuses (404): nothing can be posted, and trying again won't help.
        missing = MediaItem(url=f"{base}/no-such-image.png", kind="image", mime_type="image/png")
        return PostContent("post-refused", "client-1", "Refused", "<p>x</p>", (missing,))


def test_sim_publishes_post_with_featured_image(
    sim: tuple[WordPressSimulator, str], image_host: ImageHost
) -> None:
    simulator, url = sim
    connector = make_connector()
    request = make_request(sim_creds(url), media=(featured(image_host),))
    connector.validate(request.content, request.credentials)

    result = connector.publish(request)

    post = simulator.posts[int(result.platform_post_id)]
    assert post["title"]["raw"] == request.content.title
    assert post["content"]["raw"] == request.content.body
    assert post["status"] == "publish"
    assert post["slug"] == slug_for(request.idempotency_key)
    media = simulator.media[post["featured_media"]]
    assert media["alt_text"] == "A plate of asparagus"
    assert media["size"] == len(image_host.png)
    assert result.url == post["link"] and result.published_at is not None


def test_sim_duplicate_slug_is_renamed_and_still_found(sim: tuple[WordPressSimulator, str]) -> None:
    simulator, url = sim
    connector = make_connector()
    request = make_request(sim_creds(url))
    first = connector.publish(request)
    second = connector.publish(request)  # e.g. two workers racing after a lease expiry
    slug = slug_for(request.idempotency_key)
    assert simulator.posts[int(second.platform_post_id)]["slug"] == f"{slug}-2"
    assert simulator.state()["duplicates"] == 1

    found = connector.find_published(request)
    assert found is not None and found.platform_post_id == first.platform_post_id
    requests.delete(
        f"{url}/wp-json/wp/v2/posts/{first.platform_post_id}",
        auth=(DEFAULT_USER, DEFAULT_APP_PASSWORD),
        timeout=5,
    ).raise_for_status()
    found = connector.find_published(request)
    assert found is not None and found.platform_post_id == second.platform_post_id


@pytest.mark.parametrize("anonymous", [False, True], ids=["documented", "wp61-php-server"])
def test_sim_wrong_password_is_auth_error(sim: tuple[WordPressSimulator, str], anonymous: bool) -> None:
    simulator, url = sim
    simulator.bad_auth_is_anonymous = anonymous
    connector = make_connector()
    for credentials in (sim_creds(url, password="wrong-password"), sim_creds(url, user="nobody")):
        request = make_request(credentials)
        with pytest.raises(AuthError):
            connector.publish(request)
        with pytest.raises(AuthError):
            connector.find_published(request)
    assert simulator.state()["count"] == 0


def test_sim_media_upload_failures_are_never_ambiguous(
    sim: tuple[WordPressSimulator, str],
    image_host: ImageHost,
) -> None:
    simulator, url = sim
    connector = make_connector(timeout=0.5)
    request = make_request(sim_creds(url), media=(featured(image_host),))

    simulator.set_faults({"rules": [{"kind": "commit_then_timeout", "path": "/wp/v2/media", "count": 1}]})
    with pytest.raises(RetryableError) as lost:
        connector.publish(request)
    assert not isinstance(lost.value, AmbiguousError)

    simulator.set_faults({"rules": [{"kind": "http_500", "path": "/wp/v2/media", "count": 1}]})
    with pytest.raises(RetryableError) as failed:
        connector.publish(request)
    assert not isinstance(failed.value, AmbiguousError)
    assert simulator.state()["count"] == 0

    simulator.set_faults({"rules": []})
    assert connector.publish(request).platform_post_id


def test_sim_bad_request_is_permanent_with_wordpress_message(sim: tuple[WordPressSimulator, str]) -> None:
    _, url = sim
    response = requests.post(
        f"{url}/wp-json/wp/v2/posts",
        json={"title": "x", "status": "bogus"},
        auth=(DEFAULT_USER, DEFAULT_APP_PASSWORD),
        timeout=5,
    )
    error = classify(response, step="post", account_id="acct-wp")
    assert type(error) is PermanentError
    assert "rest_invalid_param" in error.message and "status is not one of" in error.message


def test_sim_featured_image_download_errors(
    sim: tuple[WordPressSimulator, str],
    image_host: ImageHost,
) -> None:
    _, url = sim
    connector = make_connector()
    missing = MediaItem(url=f"{image_host.url}/gone.png", kind="image")
    broken = MediaItem(url=f"{image_host.url}/fail/x.png", kind="image")
    not_image = MediaItem(url=f"{image_host.url}/img/notes.txt", kind="image", mime_type=None)
    with pytest.raises(PermanentError):
        connector.publish(make_request(sim_creds(url), media=(missing,)))
    with pytest.raises(RetryableError):
        connector.publish(make_request(sim_creds(url), media=(broken,)))
    with pytest.raises(PermanentError, match="text/plain"):
        connector.publish(make_request(sim_creds(url), media=(not_image,)))


@pytest.mark.parametrize(
    ("content_kw", "metadata", "field"),
    [
        ({"title": "  "}, {}, "title"),
        ({}, {"siteUrl": "ftp://example.com"}, "account.metadata.siteUrl"),
        ({}, {"siteUrl": None}, "account.metadata.siteUrl"),
        ({}, {"username": None}, "account.metadata.username"),
        ({"media": (MediaItem(url="https://cdn.example/brochure.pdf", kind="file"),)}, {}, "media[0]"),
        ({"media": (MediaItem(url="https://cdn.example/a.svg", kind="image"),)}, {}, "media[0]"),
    ],
)
def test_validate_refuses(content_kw: dict[str, Any], metadata: dict[str, Any], field: str) -> None:
    credentials = creds("https://blog.example", "editor", "pw", **metadata)
    content = PostContent(
        **{"post_id": "p", "client_id": "c", "title": "Title", "body": "Body", **content_kw}
    )
    with pytest.raises(ValidationError) as refused:
        make_connector().validate(content, credentials)
    assert refused.value.field == field


def test_validate_accepts_image_and_username_from_account_name() -> None:
    credentials = Credentials(
        account_id="a",
        platform="website",
        access_token="pw",
        account_name="editor",
        metadata={"mode": "wordpress", "siteUrl": "https://blog.example/"},
    )
    content = PostContent(
        post_id="p", client_id="c", title="T", body="B", media=(MediaItem(url="https://cdn.example/a.jpg"),)
    )
    make_connector().validate(content, credentials)


def test_slug_is_stable_lowercase_bounded_and_never_ends_in_digits() -> None:
    assert slug_for("65A1B2C3D4E5F60718293A4B") == slug_for("65A1B2C3D4E5F60718293A4B")
    assert slug_for("65a1b2c3d4e5f60718293a4b") == "65a1b2c3d4e5f60718293a4b-mcmp"
    long_key = "X/" * 300
    assert len(slug_for(long_key)) <= 190 and slug_for(long_key) == slug_for(long_key).lower()
    assert slug_for("ABC") != slug_for("abc") and slug_for("ABC") == slug_for("ABC").lower()
    assert slug_for("a-b") != slug_for("a_b")  # rewritten keys get a digest: no collisions
    assert slug_for("key-2") != f"{slug_for('key')}-2"


# --- real WordPress ---------------------------------------------------------------------------------
def wp_creds(site: WordPressSite, *, url: str | None = None, password: str | None = None) -> Credentials:
    return creds(url or site.url, site.user, site.app_password if password is None else password)


@pytest.mark.wordpress
def test_real_publishes_post_with_featured_image(wordpress: WordPressSite, image_host: ImageHost) -> None:
    connector = make_connector()
    request = make_request(wp_creds(wordpress), media=(featured(image_host),))

    result = connector.publish(request)

    auth = (wordpress.user, wordpress.app_password)
    post = requests.get(
        f"{wordpress.url}/wp-json/wp/v2/posts/{result.platform_post_id}",
        params={"context": "edit"},
        auth=auth,
        timeout=10,
    ).json()
    assert post["status"] == "publish"
    assert post["title"]["raw"] == request.content.title
    assert post["content"]["raw"] == request.content.body
    assert post["slug"] == slug_for(request.idempotency_key)
    assert post["featured_media"] > 0
    media = requests.get(
        f"{wordpress.url}/wp-json/wp/v2/media/{post['featured_media']}",
        params={"context": "edit"},
        auth=auth,
        timeout=10,
    ).json()
    assert media["alt_text"] == "A plate of asparagus"
    assert media["mime_type"] == "image/png"
    # wordpress-up's PHP server does not serve the uploads dir, so read the stored file from disk.
    stored = wordpress.data_dir / "wp-content" / media["source_url"].split("/wp-content/", 1)[1]
    assert stored.read_bytes() == image_host.png
    assert result.url == post["link"]
    assert (
        result.published_at is not None
        and abs((datetime.now(UTC) - result.published_at).total_seconds()) < 120
    )


@pytest.mark.wordpress
def test_real_lost_response_is_found_instead_of_posting_again(wordpress: WordPressSite) -> None:
    connector = make_connector()
    request = make_request(wp_creds(wordpress))
    assert connector.find_published(request) is None

    first = connector.publish(request)  # the answer is "lost": only the lookup tells the worker
    found = connector.find_published(request)

    assert found is not None and found.platform_post_id == first.platform_post_id
    posts = posts_with_slug(
        wordpress.url, (wordpress.user, wordpress.app_password), slug_for(request.idempotency_key)
    )
    assert [p["id"] for p in posts] == [int(first.platform_post_id)]


@pytest.mark.wordpress
def test_real_dropped_answer_is_ambiguous_then_reconciled(
    wordpress: WordPressSite, image_host: ImageHost
) -> None:
    proxy = LossyProxy(wordpress.url, drop=lambda method, path: method == "POST" and "/wp/v2/posts" in path)
    try:
        connector = make_connector()
        request = make_request(wp_creds(wordpress, url=proxy.url), media=(featured(image_host),))

        with pytest.raises(AmbiguousError):
            connector.publish(request)
        assert len(proxy.dropped) == 1  # WordPress did receive (and answer) the create
        found = connector.find_published(request)
    finally:
        proxy.close()

    assert found is not None
    posts = posts_with_slug(
        wordpress.url, (wordpress.user, wordpress.app_password), slug_for(request.idempotency_key)
    )
    assert [p["id"] for p in posts] == [int(found.platform_post_id)]
    assert posts[0]["featured_media"] > 0


@pytest.mark.wordpress
def test_real_duplicate_slug_is_renamed_and_still_found(wordpress: WordPressSite) -> None:
    connector = make_connector()
    auth = (wordpress.user, wordpress.app_password)
    request = make_request(wp_creds(wordpress))
    first = connector.publish(request)
    second = connector.publish(request)  # e.g. two workers racing after a lease expiry
    slug = slug_for(request.idempotency_key)
    by_id = {p["id"]: p["slug"] for p in posts_with_slug(wordpress.url, auth, slug)}
    assert by_id == {int(first.platform_post_id): slug, int(second.platform_post_id): f"{slug}-2"}

    found = connector.find_published(request)
    assert found is not None and found.platform_post_id == first.platform_post_id
    # Trashing the original renames its slug to <slug>__trashed: only the "-2" copy remains.
    requests.delete(
        f"{wordpress.url}/wp-json/wp/v2/posts/{first.platform_post_id}", auth=auth, timeout=10
    ).raise_for_status()
    found = connector.find_published(request)
    assert found is not None and found.platform_post_id == second.platform_post_id


@pytest.mark.wordpress
def test_real_wrong_application_password_is_auth_error(wordpress: WordPressSite) -> None:
    connector = make_connector()
    auth = (wordpress.user, wordpress.app_password)
    request = make_request(wp_creds(wordpress, password="abcd efgh ijkl mnop qrst uvwx"))
    with pytest.raises(AuthError):
        connector.publish(request)
    # Without valid credentials the lookup must not look like "no post yet" (that would re-post).
    with pytest.raises(AuthError):
        connector.find_published(request)
    unknown = make_request(creds(wordpress.url, "nobody", wordpress.app_password))
    with pytest.raises(AuthError):
        connector.publish(unknown)
    assert posts_with_slug(wordpress.url, auth, slug_for(request.idempotency_key)) == []


@pytest.mark.wordpress
def test_real_bad_request_is_permanent_with_wordpress_message(wordpress: WordPressSite) -> None:
    response = requests.post(
        f"{wordpress.url}/wp-json/wp/v2/posts",
        json={"title": "x", "status": "bogus"},
        auth=(wordpress.user, wordpress.app_password),
        timeout=10,
    )
    error = classify(response, step="post", account_id="acct-wp")
    assert type(error) is PermanentError
    assert "rest_invalid_param" in error.message and "status is not one of" in error.message


def test_sim_video_and_extra_images_go_to_the_media_library_and_into_the_post(
    sim: tuple[WordPressSimulator, str],
) -> None:
    from mcmp.devstack.media import MediaHost, expected_sha256

    simulator, url = sim
    host = MediaHost()
    try:
        images = [host.image(f"dish{i}.jpg", size=30_000 + i) for i in range(3)]
        video = host.video("kitchen.mp4", size=3 * 1024 * 1024 + 7)
        media = (
            MediaItem(images[0], "image", "Asparagus", "image/jpeg"),
            MediaItem(video, "video", None, "video/mp4"),
            MediaItem(images[1], "image", "Wild garlic", "image/jpeg"),
            MediaItem(images[2], "image", None, "image/jpeg"),
        )
        result = make_connector().publish(make_request(sim_creds(url), media=media))
    finally:
        host.stop()
    post = simulator.posts[int(result.platform_post_id)]
    by_url = {m["sha256"]: m for m in simulator.media.values()}
    first, clip, second, third = (
        by_url[expected_sha256(u)] for u in (images[0], video, images[1], images[2])
    )
    assert post["featured_media"] == first["id"] and first["alt_text"] == "Asparagus"
    assert (
        clip["mime_type"] == "video/mp4"
        and clip["media_type"] == "file"
        and clip["size"] == 3 * 1024 * 1024 + 7
    )
    raw = post["content"]["raw"]
    assert raw.startswith(make_request(sim_creds(url)).content.body)
    assert f'<!-- wp:video {{"id":{clip["id"]}}} -->' in raw and f'src="{clip["source_url"]}"' in raw
    assert f'<img src="{second["source_url"]}" alt="Wild garlic" class="wp-image-{second["id"]}"/>' in raw
    assert f'class="wp-image-{third["id"]}"' in raw and f'class="wp-image-{first["id"]}"' not in raw
    assert raw.index(f'"id":{clip["id"]}') < raw.index(f'"id":{second["id"]}')  # in the post's order
