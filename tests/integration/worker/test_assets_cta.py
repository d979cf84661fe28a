"""Google Business call-to-action from the client's ``ctaTemplates`` (post field ``cta``)."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from mcmp.connectors.errors import ValidationError
from mcmp.worker.publishing.content import build_content

TEMPLATES = [
    {"_id": ObjectId(), "label": "Book", "text": "Book your table tonight."},
    {"_id": ObjectId(), "label": "Shop", "text": "Shop the collection."},
]


def _post(client: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "clientId": str(client["_id"]),
        "title": "Dinner",
        "body": "New menu this week.",
        "assetUrls": [],
        **fields,
    }


def test_cta_becomes_a_google_business_button_and_the_template_text(db, make_client) -> None:
    client = make_client(ctaTemplates=TEMPLATES)
    post = _post(client, cta={"template": "Book", "actionType": "book", "url": "https://example.org/book"})
    gbp = build_content(post, "google-business")
    assert gbp.options["callToAction"] == {"actionType": "BOOK", "url": "https://example.org/book"}
    assert gbp.body == "New menu this week.\n\nBook your table tonight."
    linkedin = build_content(post, "linkedin")
    assert "callToAction" not in linkedin.options
    assert linkedin.body == gbp.body

    plain = build_content(_post(client, cta={"template": "Shop", "appendText": False}), "google-business")
    assert plain.options["callToAction"] == {"actionType": "LEARN_MORE"}  # url falls back to the link
    assert plain.body == "New menu this week."
    explicit = _post(
        client,
        cta={"template": "Shop"},
        publishOptions={"google-business": {"callToAction": {"actionType": "CALL"}}},
    )
    assert build_content(explicit, "google-business").options["callToAction"] == {"actionType": "CALL"}
    assert build_content(_post(client), "google-business").options == {}


def test_a_bad_cta_fails_with_the_field_named(db, make_client) -> None:
    client = make_client(ctaTemplates=TEMPLATES)
    with pytest.raises(
        ValidationError,
        match=r"^cta.template: the client has no CTA template 'Call' \(known: 'Book', 'Shop'\)$",
    ):
        build_content(_post(client, cta={"template": "Call"}), "google-business")
    with pytest.raises(ValidationError, match="^cta: must be an object"):
        build_content(_post(client, cta="Book"), "google-business")
