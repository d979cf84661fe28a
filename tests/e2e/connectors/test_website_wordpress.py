"""The WordPress connector against a real WordPress (../shared/tools/wordpress-up)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    PermanentError,
)
from mcmp.connectors.website.wordpress import classify, slug_for
from tests.unit.connectors import wordpress_fixture
from tests.unit.connectors.test_website_wordpress import (
    creds,
    featured,
    make_connector,
    make_request,
    posts_with_slug,
    wp_creds,
)
from tests.unit.connectors.wordpress_fixture import ImageHost, LossyProxy, WordPressSite

# Session fixtures shared with the simulator's tests (kept out of conftest.py on purpose).
wordpress = wordpress_fixture.wordpress
image_host = wordpress_fixture.image_host


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
