"""A call to action through a real worker reaches the Google Business simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcmp.devstack import wait_until
from tests.integration.worker.test_assets_cta import TEMPLATES


@pytest.mark.platforms("google-business")
def test_cta_reaches_the_google_business_simulator(
    env, db, platform_lab, make_client, make_account, make_post, start_worker, start_dispatcher
) -> None:
    client = make_client(ctaTemplates=TEMPLATES)
    make_account(client, "google-business", **platform_lab.account_fields("google-business", client))
    start_worker(platform_lab.env)
    start_dispatcher(platform_lab.env)
    post = make_post(
        client,
        ["google-business"],
        when=datetime.now(UTC) + timedelta(seconds=1),
        body="New menu this week.",
        cta={"template": "Book", "actionType": "BOOK", "url": "https://example.org/book"},
    )
    wait_until(lambda: db.posts.find_one({"_id": post["_id"]})["status"] in ("published", "failed"), 60)
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "published"
    [stored] = platform_lab.sims["google-business"].state()["posts"]
    assert stored["callToAction"] == {"actionType": "BOOK", "url": "https://example.org/book"}
    assert stored["summary"].startswith("New menu this week.\n\nBook your table tonight.")  # + marker
