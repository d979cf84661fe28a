"""Each connector's refusal, as its ``validate`` words it, gets the documented problem code."""

from __future__ import annotations

import pytest

from mcmp.connectors.errors import ValidationError
from mcmp.connectors.types import Credentials, MediaItem, PostContent
from mcmp.worker.readiness import codes

MB = 1024 * 1024
IMG = MediaItem("https://cdn.example/a.jpg", "image", None, "image/jpeg", 100_000)
VIDEO = MediaItem("https://cdn.example/v.mp4", "video", None, "video/mp4", 5 * MB, 20.0, 1080, 1920)

ACCOUNTS = {
    "linkedin": "urn:li:organization:1",
    "instagram": "17841400000001",
    "facebook": "1000001",
    "google-business": "accounts/1/locations/2",
}

CASES = [
    ("linkedin", {"body": "x" * 70_000}, "body_too_long"),
    (
        "linkedin",
        {"media": (VIDEO.__class__(**{**VIDEO.__dict__, "duration_seconds": 3600.0}),)},
        "media_duration",
    ),
    ("linkedin", {"media": (IMG, VIDEO)}, "media_count"),
    ("instagram", {"body": " ".join(f"#t{i}" for i in range(31)), "media": (IMG,)}, "too_many_hashtags"),
    ("instagram", {"body": " ".join(f"@u{i}" for i in range(21)), "media": (IMG,)}, "too_many_mentions"),
    ("instagram", {"media": ()}, "media_required"),
    ("instagram", {"media": (MediaItem("https://cdn.example/a.pdf", "file"),)}, "media_kind_unsupported"),
    ("instagram", {"media": (IMG,) * 11}, "media_count"),
    ("google-business", {"media": (VIDEO,)}, "media_kind_unsupported"),
    (
        "google-business",
        {"media": (MediaItem(IMG.url, "image", None, "image/jpeg", 6 * MB),)},
        "media_too_large",
    ),
    (
        "google-business",
        {"media": (MediaItem(IMG.url, "image", None, "image/gif", 1000),)},
        "media_type_unsupported",
    ),
    ("facebook", {"link": "ftp://example.com/x"}, "link_invalid"),
    ("facebook", {"account": "not-a-page"}, "account_settings_invalid"),
]


@pytest.mark.parametrize(("platform", "change", "code"), CASES, ids=[f"{p}-{c}" for p, _, c in CASES])
def test_each_refusal_has_its_code(env, platform, change, code):
    from mcmp.connectors.registry import get_connector

    content = PostContent(
        post_id="p",
        client_id="c",
        title="Title",
        body=change.get("body", "Hello"),
        media=change.get("media", ()),
        link=change.get("link"),
    )
    credentials = Credentials(
        "a", platform, "", external_account_id=change.get("account", ACCOUNTS[platform])
    )
    with pytest.raises(ValidationError) as refused:
        get_connector(platform).validate(content, credentials)
    assert codes.for_field(refused.value.field, refused.value.reason) == code, refused.value.message


def test_a_field_no_rule_knows_still_gets_a_code():
    assert codes.for_field("publishOptions.facebook.videoType", "reel needs a video") == "options_invalid"
    assert codes.for_field("someNewField.inner", "whatever") == "some_new_field_invalid"
    assert (
        codes.for_field("media[3]", "type image/tiff is not accepted by WordPress")
        == "media_type_unsupported"
    )
