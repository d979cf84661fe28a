"""A message lost with the worker that had just fetched it is sent again within seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from mcmp.devstack import wait_until


def test_a_worker_killed_right_after_fetching_a_message_costs_seconds_not_the_queued_lease(
    env, db, make_client, make_webhook_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    # Default queued lease (300 s): only the re-send after a loss can bring this post out on time.
    assert "MCMP_QUEUED_LEASE_SECONDS" not in env
    client = make_client()
    make_webhook_account(client)
    holder = start_worker(env, concurrency=1)
    start_dispatcher(env)
    post = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=6))
    # The dispatcher creates it taken inside the look-ahead and sends an ETA message, which the
    # live worker fetches at once and holds until the due time; it dies within a renewal of that.
    wait_until(lambda: db.deliveries.find_one({"postId": str(post["_id"]), "state": "in_flight"}), 20, 0.05)
    time.sleep(0.3)
    holder.kill9()
    start_worker(env, concurrency=1)

    wait_until(
        lambda: db.posts.find_one({"_id": post["_id"]})["status"] == "published",
        40,
        0.5,
        "the post waited for its queued lease: the lost message was not sent again",
    )
    delivery = db.deliveries.find_one({"postId": str(post["_id"])})
    late = (delivery["callStartedAt"] - delivery["scheduledFor"]).total_seconds()
    assert late < 20, f"published {late:.1f}s late"
    assert [p["postId"] for p in webhook_sim.state()["posts"]] == [str(post["_id"])]
