"""End to end through real processes: dispatcher → Redis → Celery worker → simulator → MongoDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcmp.devstack import wait_until


def _post(db, post_id):
    return db.posts.find_one({"_id": post_id})


def test_due_post_is_published_once_and_recorded(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    client = make_client()
    make_webhook_account(client)
    start_worker(env)
    start_dispatcher(env)
    when = datetime.now(UTC) + timedelta(seconds=3)
    post = make_post(client, ["website"], when=when)
    future = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(hours=1))

    done = wait_until(lambda: _post(db, post["_id"])["status"] == "published" and _post(db, post["_id"]), 30)

    stored = webhook_sim.state()["posts"]
    assert [p["postId"] for p in stored] == [str(post["_id"])]
    assert done["platformPostIds"]["website"] == stored[0]["id"]
    published_at = done["publishedAt"]["website"].replace(tzinfo=UTC)
    assert published_at >= when - timedelta(seconds=0.5)
    history = done["statusHistory"]
    assert history[-1]["fromStatus"] == "scheduled" and history[-1]["toStatus"] == "published"
    assert history[-1].get("byUserId") is None
    assert _post(db, future["_id"])["status"] == "scheduled"
    delivery = db.deliveries.find_one({"postId": str(post["_id"])})
    lateness = (delivery["callStartedAt"] - delivery["scheduledFor"]).total_seconds()
    assert 0 <= lateness < 2, lateness
