"""Retry and reschedule refuse a post that would fail again: 422 naming the post's field, nothing re-opened.

A worker and a dispatcher run beside the API, so anything re-opened would really be published:
the simulator proves nothing reached it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcmp.models import DeliveryState, ErrorClass
from mcmp.worker.publishing import delivery_states
from mcmp.worker.publishing.delivery_states import NewDelivery
from tests.integration.api.conftest import headers


def _failed_post(db, make_post, client, platforms, **fields):
    post = make_post(
        client, platforms, when=datetime.now(UTC) - timedelta(minutes=1), status="failed", **fields
    )
    delivery_states.ensure(
        [
            NewDelivery(
                str(post["_id"]),
                post["clientId"],
                platform,
                post["scheduleTime"],
                state=DeliveryState.FAILED,
                last_error="refused",
                error_class=ErrorClass.PERMANENT,
            )
            for platform in platforms
        ]
    )
    return post


def test_retry_runs_the_platforms_own_check_with_the_account_but_no_token(
    api, db, make_key, make_client, make_account, make_post
):
    client = make_client()
    make_account(
        client, "linkedin", accessToken="not-readable-here", externalAccountId="urn:li:organization:1"
    )
    post = _failed_post(db, make_post, client, ["linkedin"], body="x" * 3500)
    r = api.post(
        f"/v1/posts/{post['_id']}/retry",
        json={"platform": "linkedin"},
        headers=headers(make_key(post["clientId"])),
    )
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["field"] == "post.body" and "LinkedIn allows 3000 characters" in error["message"]
    assert db.deliveries.find_one({"postId": str(post["_id"])})["state"] == "failed"
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "failed"
    # fixed by the frontend, the same retry goes through
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"body": "short enough"}})
    r = api.post(f"/v1/posts/{post['_id']}/retry", headers=headers(make_key(post["clientId"])))
    assert r.status_code == 200 and r.json()["platforms"] == ["linkedin"]


def test_retrying_a_website_post_is_checked_without_decrypting_its_secret(
    api, db, make_key, make_client, make_account, make_post
):
    """The API's checks carry no token: a website account's strong secret is not judged "0 bytes"."""
    client = make_client()
    make_account(
        client,
        "website",
        accessToken="a-webhook-secret-of-32-bytes-len",
        metadata={"mode": "webhook", "webhookUrl": "http://127.0.0.1:9/hook"},
    )
    post = _failed_post(db, make_post, client, ["website"], body="Back in stock")
    key = make_key(str(client["_id"]))

    r = api.post(f"/v1/posts/{post['_id']}/retry", headers=headers(key))

    assert r.status_code == 200 and r.json()["platforms"] == ["website"], r.text
    delivery = db.deliveries.find_one({"postId": str(post["_id"]), "platform": "website"})
    assert delivery["state"] == DeliveryState.PENDING
