"""Pipeline behaviours a user notices, through real dispatcher and worker processes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from mcmp.devstack import wait_until


def post_of(db, post):
    return db.posts.find_one({"_id": post["_id"]})


def settled(db, *posts):
    return all(post_of(db, p)["status"] in ("published", "failed") for p in posts)


def test_future_post_waits_and_draft_is_never_published(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    client = make_client()
    make_webhook_account(client)
    start_worker(env)
    start_dispatcher(env)
    now = datetime.now(UTC)
    later = make_post(client, ["website"], when=now + timedelta(seconds=8))
    drafted = make_post(client, ["website"], when=now + timedelta(seconds=6))
    db.posts.update_one({"_id": drafted["_id"]}, {"$set": {"status": "draft"}})  # user un-schedules it

    time.sleep(5)
    assert webhook_sim.state()["count"] == 0, "nothing may be published before its time"
    wait_until(lambda: post_of(db, later)["status"] == "published", 30)
    delivery = db.deliveries.find_one({"postId": str(later["_id"])})
    assert delivery["callStartedAt"] >= delivery["scheduledFor"]
    time.sleep(3)
    assert [p["postId"] for p in webhook_sim.state()["posts"]] == [str(later["_id"])]
    assert post_of(db, drafted)["status"] == "draft"


def test_post_drafted_after_its_task_was_queued_is_not_published(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    client = make_client()
    make_webhook_account(client)
    post = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=1.4))
    start_dispatcher(env)  # creates it taken inside the look-ahead and queues an ETA task
    wait_until(lambda: db.deliveries.find_one({"postId": str(post["_id"]), "state": "in_flight"}), 20)
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"status": "draft"}})
    start_worker(env)
    wait_until(lambda: db.deliveries.find_one({"postId": str(post["_id"]), "state": "cancelled"}), 30)
    assert webhook_sim.state()["count"] == 0
    assert post_of(db, post)["status"] == "draft"


def test_bad_input_fails_alone_with_a_clear_reason(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    client = make_client()
    make_webhook_account(client)
    no_account_client = make_client()
    when = datetime.now(UTC) + timedelta(seconds=2)
    good = [make_post(client, ["website"], when=when) for _ in range(3)]
    unknown = make_post(client, ["website", "myspace"], when=when)
    no_account = make_post(no_account_client, ["website"], when=when)
    empty_body = make_post(client, ["website"], when=when, body="")
    bad_time = make_post(client, ["website"], when=when)
    db.posts.update_one({"_id": bad_time["_id"]}, {"$set": {"scheduleTime": "tomorrow at 9"}})
    start_worker(env)
    start_dispatcher(env)

    wait_until(lambda: settled(db, *good, unknown, no_account, empty_body, bad_time), 60)
    assert all(post_of(db, p)["status"] == "published" for p in good)
    unknown_doc = post_of(db, unknown)
    assert unknown_doc["status"] == "failed"
    assert "myspace" in unknown_doc["lastError"] and "no connector" in unknown_doc["lastError"]
    assert unknown_doc["platformPostIds"].get("website"), "the valid platform of the post still went out"
    assert "no IntegrationAccount for website" in post_of(db, no_account)["lastError"]
    assert post_of(db, no_account)["status"] == "failed"
    assert "body: must not be empty" in post_of(db, empty_body)["lastError"]
    bad_time_doc = post_of(db, bad_time)
    assert bad_time_doc["status"] == "failed"
    assert bad_time_doc["lastError"].startswith("scheduleTime: 'tomorrow at 9' is not an ISO 8601 date-time")
    assert bad_time_doc["statusHistory"][-1]["toStatus"] == "failed"
    assert webhook_sim.state()["count"] == 4


def test_time_broken_after_the_dispatcher_started_fails_within_the_sweep_interval(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    """A number written later is found by the periodic full sweep, a garbage string by the next
    parse of string times, a removed time at once."""
    client = make_client()
    make_webhook_account(client)
    start_worker(env)
    start_dispatcher(dict(env, MCMP_UNSCHEDULABLE_SWEEP_SECONDS="3"))
    future = datetime.now(UTC) + timedelta(hours=1)
    as_text, as_number, removed = (make_post(client, ["website"], when=future) for _ in range(3))
    db.posts.update_one({"_id": as_text["_id"]}, {"$set": {"scheduleTime": "next monday"}})
    db.posts.update_one({"_id": as_number["_id"]}, {"$set": {"scheduleTime": 1765015200}})
    db.posts.update_one({"_id": removed["_id"]}, {"$unset": {"scheduleTime": ""}})
    wait_until(lambda: settled(db, as_text, as_number, removed), 30)
    assert post_of(db, as_text)["lastError"].startswith("scheduleTime: 'next monday' is not an ISO 8601")
    assert post_of(db, as_number)["lastError"].startswith(
        "scheduleTime: expected a date or an ISO 8601 string, got int"
    )
    assert post_of(db, removed)["lastError"].startswith("scheduleTime:")
    assert webhook_sim.state()["count"] == 0


def test_resending_the_task_of_a_published_delivery_publishes_nothing(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    client = make_client()
    make_webhook_account(client)
    post = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=1))
    worker = start_worker(env)
    start_dispatcher(env)
    wait_until(lambda: post_of(db, post)["status"] == "published", 30)
    delivery = db.deliveries.find_one({"postId": str(post["_id"])})

    from mcmp.worker.app import create_app

    celery = create_app()  # a fresh app bound to this test's broker, as Flower would be
    # Flower re-sends the original message (the delivery born taken under its attempt id), an
    # older claim hint, a forged one, and none.
    due = delivery["dueAt"].isoformat()
    item = [str(delivery["_id"]), delivery["postId"], "website", due, due, "", "0", ""]
    born = {"attempt": delivery["attemptId"], "items": [item]}
    hint = {"token": "stale", "postId": delivery["postId"], "platform": "website", "dueAt": due}
    for kwargs in ({}, {"claim": born}, {"claim": {"token": "forged"}}, {"claim": hint}):
        celery.send_task("mcmp.publish_delivery", args=[str(delivery["_id"])], kwargs=kwargs, queue="publish")
    wait_until(
        lambda: worker.log_text().count("is already published") >= 4, 30, message=worker.log_text()[-3000:]
    )
    assert webhook_sim.state()["count"] == 1
    assert db.deliveries.find_one({"_id": delivery["_id"]})["attempt"] == 1


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kolkata"])
def test_process_time_zone_does_not_shift_publishing(
    tz, env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    client = make_client()
    make_webhook_account(client)
    tz_env = dict(env, TZ=tz)
    start_worker(tz_env)
    start_dispatcher(tz_env)
    when = datetime.now(UTC) + timedelta(seconds=4)
    post = make_post(client, ["website"], when=when)
    time.sleep(2)
    assert webhook_sim.state()["count"] == 0
    wait_until(lambda: post_of(db, post)["status"] == "published", 30)
    delivery = db.deliveries.find_one({"postId": str(post["_id"])})
    lateness = (delivery["callStartedAt"] - when).total_seconds()
    assert 0 <= lateness < 1.5, f"{tz}: published {lateness:.3f}s after scheduleTime"
    received = webhook_sim.state()["posts"][0]["receivedAt"]
    assert abs(received - when.timestamp()) < 2


def test_retry_of_partly_failed_post_republishes_only_failed_platform(
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
    echo = make_account(
        client,
        "example-echo",
        accessToken="dev-webhook-secret",
        metadata={"webhookUrl": f"{webhook_sim.base_url}/hooks/echo", "reject": True},
    )
    post = make_post(client, ["website", "example-echo"], when=datetime.now(UTC) + timedelta(seconds=1))
    start_worker(env)
    start_dispatcher(env)
    wait_until(lambda: post_of(db, post)["status"] == "failed", 30)
    failed = post_of(db, post)
    assert failed["platformPostIds"]["website"]
    assert failed["lastError"].startswith("example-echo: account.metadata.reject")

    # The account is fixed and the user schedules the post again (as the frontend does).
    db.integrationaccounts.update_one({"_id": echo["_id"]}, {"$set": {"metadata.reject": False}})
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"status": "scheduled"}})
    wait_until(lambda: post_of(db, post)["status"] == "published", 30)
    sites = sorted(p["site"] for p in webhook_sim.state()["posts"])
    assert sites == [client["slug"], "echo"], "website must not be re-published"
    history = [(h["fromStatus"], h["toStatus"]) for h in post_of(db, post)["statusHistory"]]
    assert history[-2:] == [("scheduled", "failed"), ("scheduled", "published")]


def test_processes_wait_for_mongodb_and_redis_then_work(
    env,
    db,
    run_dir,
    make_client,
    make_webhook_account,
    make_post,
    webhook_sim,
    start_worker,
    start_dispatcher,
    procs,
    tmp_path,
):
    from mcmp.devstack import PrivateRedis, embedded_uri, free_port, start_secantus

    mongo_port = free_port()
    private = PrivateRedis(tmp_path / "redis")
    late_env = dict(env, MCMP_MONGODB_URI=embedded_uri(mongo_port, "late"), MCMP_REDIS_URL=private.url)
    import sys

    worker = procs("late-worker", [sys.executable, "-m", "mcmp.cli", "worker", "-c", "1"], late_env)
    dispatcher = procs("late-dispatcher", [sys.executable, "-m", "mcmp.cli", "dispatcher"], late_env)
    wait_until(
        lambda: "waiting for MongoDB" in worker.log_text() and "waiting for MongoDB" in dispatcher.log_text(),
        30,
    )
    assert worker.alive() and dispatcher.alive()

    mongo, base = start_secantus(tmp_path / "late-mongo", port=mongo_port)
    try:
        wait_until(lambda: "waiting for Redis" in dispatcher.log_text(), 30)
        private.start()
        from pymongo import MongoClient

        late_db = MongoClient(base)["late"]
        now = datetime.now(UTC)
        cid = ObjectId()
        late_db.clients.insert_one({"_id": cid, "name": "Late", "slug": "late", "timezone": "UTC"})
        late_db.integrationaccounts.insert_one(
            {
                "clientId": str(cid),
                "platform": "website",
                "status": "connected",
                "accessToken": "dev-webhook-secret",
                "metadata": {"webhookUrl": f"{webhook_sim.base_url}/hooks/late"},
            }
        )
        pid = late_db.posts.insert_one(
            {
                "clientId": str(cid),
                "title": "t",
                "body": "late start",
                "platforms": ["website"],
                "status": "scheduled",
                "scheduleTime": now + timedelta(seconds=1),
                "statusHistory": [],
            }
        ).inserted_id
        wait_until(lambda: late_db.posts.find_one({"_id": pid})["status"] == "published", 60)
        assert webhook_sim.state()["count"] == 1
    finally:
        worker.stop()
        dispatcher.stop()
        mongo.stop()
        private.stop()


def test_account_disconnected_between_two_posts_is_honoured_after_the_account_cache_ttl(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    """A worker re-uses a connected account for ``MCMP_ACCOUNT_CACHE_SECONDS`` only.

    The first post makes the worker remember the account; the frontend then marks it broken (status ``error``). A
    post due after the TTL must not be published with the remembered token: it waits for the
    account to be reconnected, like any post of a disconnected account.
    """
    client = make_client()
    account = make_webhook_account(client)
    start_worker({**env, "MCMP_ACCOUNT_CACHE_SECONDS": "1"}, concurrency=1, pool="threads")
    start_dispatcher(env)
    first = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=2))
    wait_until(lambda: post_of(db, first)["status"] == "published", 30)
    db.integrationaccounts.update_one({"_id": account["_id"]}, {"$set": {"status": "error"}})
    second = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=2.5))

    waiting = wait_until(
        lambda: db.deliveries.find_one({"postId": str(second["_id"]), "state": "waiting_auth"}), 30
    )
    assert "reconnect" in waiting["lastError"]
    assert [p["postId"] for p in webhook_sim.state()["posts"]] == [str(first["_id"])]
    assert post_of(db, second)["status"] == "scheduled"


def test_post_left_behind_by_a_killed_worker_is_settled_and_busy_ones_are_left_alone(
    env, db, make_client, make_post, start_dispatcher
):
    """A worker killed between recording a delivery and updating its post leaves the post
    ``scheduled``; the dispatcher's settle sweep finishes it from the deliveries. Posts whose
    deliveries are still at work (queued in Celery, in flight) are only rotated, never changed.
    """
    client = make_client()
    old = datetime.now(UTC) - timedelta(minutes=5)
    behind, partial, busy = (
        make_post(client, platforms, when=old)
        for platforms in (["website"], ["website", "linkedin"], ["website"])
    )
    for post in (behind, partial, busy):
        db.posts.update_one({"_id": post["_id"]}, {"$set": {"mcmpExpandedAt": old}})

    def delivery(post, platform, state, **fields):
        db.deliveries.insert_one(
            {
                "postId": str(post["_id"]),
                "clientId": str(client["_id"]),
                "platform": platform,
                "state": state,
                "dueAt": old,
                "scheduledFor": old,
                "attempt": 1,
                "needsReconcile": False,
                "createdAt": old,
                "updatedAt": old,
                **fields,
            }
        )

    delivery(behind, "website", "published", platformPostId="site-1", publishedAt=old)
    delivery(partial, "website", "published", platformPostId="site-2", publishedAt=old)
    delivery(
        partial, "linkedin", "in_flight", attemptId="a", leaseUntil=datetime.now(UTC) + timedelta(hours=1)
    )
    delivery(busy, "website", "queued", claimToken="t", leaseUntil=datetime.now(UTC) + timedelta(hours=1))
    start_dispatcher(dict(env, MCMP_SETTLE_AFTER_SECONDS="1", MCMP_REAP_INTERVAL_SECONDS="0.5"))

    done = wait_until(lambda: post_of(db, behind)["status"] == "published" and post_of(db, behind), 30)
    assert done["platformPostIds"]["website"] == "site-1"
    assert done["statusHistory"][-1]["toStatus"] == "published"
    half = wait_until(
        lambda: post_of(db, partial)["platformPostIds"].get("website") and post_of(db, partial), 30
    )
    assert half["status"] == "scheduled" and half["platformPostIds"]["website"] == "site-2"
    wait_until(
        lambda: post_of(db, busy)["mcmpExpandedAt"].replace(tzinfo=UTC) > old + timedelta(minutes=1), 30
    )
    untouched = post_of(db, busy)
    assert untouched["status"] == "scheduled" and len(untouched["statusHistory"]) == 1
    assert db.deliveries.find_one({"postId": str(busy["_id"])})["state"] == "queued"
