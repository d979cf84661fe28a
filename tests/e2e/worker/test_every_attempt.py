"""What a user sees when a post is edited, re-sent or left too late: checked on every attempt.

Real worker and dispatcher processes, the webhook simulator as the platform: an invalid post
reaches no platform whichever way it comes back, and a post far past its time is not published
until someone asks for it again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcmp.devstack import wait_until
from mcmp.worker.publishing import delivery_states


def post_of(db, post):
    return db.posts.find_one({"_id": post["_id"]})


def delivery_of(db, post):
    return db.deliveries.find_one({"postId": str(post["_id"])})


def test_an_invalid_post_retried_by_a_resent_celery_task_reaches_no_platform(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker
):
    from mcmp.worker.app import create_app

    client = make_client()
    make_webhook_account(client)
    post = make_post(client, ["website"], when=datetime.now(UTC) - timedelta(minutes=1))
    # Its delivery is due again (a retry after a 500, say) when the body is emptied.
    delivery_states.ensure(
        [delivery_states.NewDelivery(str(post["_id"]), str(client["_id"]), "website", post["scheduleTime"])]
    )
    # (marked expanded, as the dispatcher marks a post whose deliveries it created)
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"body": "", "mcmpExpandedAt": datetime.now(UTC)}})
    start_worker(env)
    delivery = delivery_of(db, post)
    create_app().send_task("mcmp.publish_delivery", args=[str(delivery["_id"])], queue="publish")
    wait_until(lambda: post_of(db, post)["status"] == "failed", 30)
    assert delivery_of(db, post)["state"] == "failed"
    assert "body: must not be empty" in post_of(db, post)["lastError"]
    assert webhook_sim.state()["count"] == 0


def test_an_invalid_post_rescheduled_by_the_frontend_reaches_no_platform(
    env,
    db,
    make_client,
    make_webhook_account,
    make_account,
    make_post,
    webhook_sim,
    start_worker,
    start_dispatcher,
):
    client = make_client()
    make_webhook_account(client)
    make_account(
        client,
        "example-echo",
        accessToken="dev-webhook-secret",
        metadata={"webhookUrl": f"{webhook_sim.base_url}/hooks/echo", "reject": True},
    )
    post = make_post(client, ["website", "example-echo"], when=datetime.now(UTC) + timedelta(seconds=1))
    start_worker(env)
    start_dispatcher(env)
    wait_until(lambda: post_of(db, post)["status"] == "failed", 30)
    published = webhook_sim.state()["count"]
    assert published == 1  # website went out, example-echo refused
    # The frontend empties the body and schedules the post again, writing MongoDB directly.
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"body": " ", "status": "scheduled"}})
    wait_until(lambda: post_of(db, post)["status"] == "failed", 30)
    wait_until(lambda: "body: must not be empty" in (post_of(db, post).get("lastError") or ""), 15)
    assert webhook_sim.state()["count"] == published


def test_a_post_seven_hours_late_is_not_published_until_retried(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    from mcmp.worker import services

    client = make_client()
    make_webhook_account(client)
    stale = make_post(client, ["website"], when=datetime.now(UTC) - timedelta(hours=7))
    backlog = make_post(client, ["website"], when=datetime.now(UTC) - timedelta(hours=5))
    start_worker(env)
    start_dispatcher(env)
    wait_until(lambda: post_of(db, stale)["status"] == "failed", 30)
    error = post_of(db, stale)["lastError"]
    assert "7 h" in error and "late" in error, error
    assert f"POST /v1/posts/{stale['_id']}/retry" in error and "reschedule" in error
    # Within the limit, an outage's backlog still goes out.
    wait_until(lambda: post_of(db, backlog)["status"] == "published", 30)
    assert [p["postId"] for p in webhook_sim.state()["posts"]] == [str(backlog["_id"])]

    services.retry(str(stale["_id"]), {"clientId": str(client["_id"])})
    wait_until(lambda: post_of(db, stale)["status"] == "published", 30)
    assert sorted(p["postId"] for p in webhook_sim.state()["posts"]) == sorted(
        [str(backlog["_id"]), str(stale["_id"])]
    )
    assert delivery_of(db, stale)["retriedAt"] is not None
