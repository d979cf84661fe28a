"""A retry of an invalid post, through the API and a real worker: refused, nothing published."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.integration.api.conftest import headers
from tests.integration.api.test_retry_validation import _failed_post


def test_retrying_a_post_with_an_empty_body_is_refused_and_nothing_is_published(
    api,
    env,
    db,
    make_key,
    make_client,
    make_webhook_account,
    make_post,
    webhook_sim,
    start_worker,
    start_dispatcher,
):
    client = make_client()
    make_webhook_account(client)
    start_worker(env, concurrency=1)
    start_dispatcher(env)
    post = _failed_post(db, make_post, client, ["website"], body="")
    before = db.posts.find_one({"_id": post["_id"]})
    key = make_key(str(client["_id"]))

    r = api.post(f"/v1/posts/{post['_id']}/retry", headers=headers(key))
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"] == "urn:mcmp:problem:post-invalid"
    assert problem["errors"] == [{"field": "post.body", "message": "must not be empty"}]
    assert "website" in problem["detail"]

    when = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    r = api.post(f"/v1/posts/{post['_id']}/reschedule", json={"scheduleTime": when}, headers=headers(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "post.body"

    time.sleep(4)  # the dispatcher and worker would have published a re-opened delivery by now
    after = db.posts.find_one({"_id": post["_id"]})
    assert after["status"] == "failed" and after["statusHistory"] == before["statusHistory"]
    assert after["scheduleTime"] == before["scheduleTime"]
    delivery = db.deliveries.find_one({"postId": str(post["_id"])})
    assert delivery["state"] == "failed" and delivery["attempt"] == 0
    assert webhook_sim.requests_log() == []
