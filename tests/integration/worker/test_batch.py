"""A dispatcher batch run in this process: each member ends on its own, recorded in bulk."""

from __future__ import annotations

from datetime import timedelta

from mcmp.worker.publishing import delivery_states
from mcmp.worker.publishing.batch import publish_batch
from tests.integration.worker.helpers import born, new_delivery, now


def _claim(client, posts):
    return born(posts)


def test_each_member_ends_alone_and_only_failures_are_reported_one_by_one(
    db, make_client, make_account, make_post
):
    client = make_client()
    make_account(
        client,
        "website",
        accessToken="dev-webhook-secret",
        metadata={"webhookUrl": "http://127.0.0.1:9/hooks/x", "mode": "webhook"},
    )
    due = now() - timedelta(seconds=1)
    empty = make_post(client, ["website"], when=due, body="")
    withdrawn = make_post(client, ["website"], when=due, status="approved")
    stale = make_post(client, ["website"], when=now() - timedelta(hours=9))
    ids, claim = _claim(client, [empty, withdrawn, stale])
    reported = []

    counts = publish_batch(ids, claim, on_failed=reported.append)

    assert counts == {"failed": 2, "cancelled": 1}
    assert sorted(t.post_id for t in reported) == sorted([str(empty["_id"]), str(stale["_id"])])
    by_post = {d["postId"]: d for d in db.deliveries.find({"_id": {"$in": [d for d in map(_oid, ids)]}})}
    assert by_post[str(empty["_id"])]["lastError"].startswith("body: must not be empty")
    assert by_post[str(withdrawn["_id"])]["state"] == "cancelled"
    assert "late" in by_post[str(stale["_id"])]["lastError"]
    posts = {p["_id"]: p for p in db.posts.find()}
    assert posts[empty["_id"]]["status"] == "failed" and "body" in posts[empty["_id"]]["lastError"]
    assert posts[stale["_id"]]["status"] == "failed"
    assert posts[withdrawn["_id"]]["status"] == "approved"
    assert all(d["leaseUntil"] is None for d in by_post.values())


def test_a_member_started_by_another_copy_of_the_message_is_left_to_it(
    db, make_client, make_account, make_post
):
    client = make_client()
    make_account(client, "website", accessToken="x", metadata={"webhookUrl": "http://127.0.0.1:9/h"})
    posts = [make_post(client, ["website"], body="") for _ in range(2)]
    ids, claim = _claim(client, posts)
    first = delivery_states.parse_batch_item(claim["items"][0])
    raced = delivery_states.start_born([first], claim["attempt"], 60)  # a re-sent copy ran first
    assert [str(t.id) for t in raced] == [ids[0]]

    assert publish_batch(ids, claim) == {"failed": 1}
    assert db.deliveries.find_one({"_id": raced[0].id})["state"] == "in_flight"  # still the racer's
    assert publish_batch(ids, claim) == {}  # the same message again starts nothing


def test_a_garbled_claim_falls_back_to_one_attempt_each(db, make_client, make_account, make_post):
    client = make_client()
    make_account(client, "website", accessToken="x", metadata={"webhookUrl": "http://127.0.0.1:9/h"})
    post = make_post(client, ["website"], body="")
    claimed = new_delivery(post, "website")
    assert publish_batch([str(claimed["_id"])], {"token": "t", "items": [["garbled"]]}) == {"failed": 1}


def _oid(value: str):
    from bson import ObjectId

    return ObjectId(value)


def test_a_batch_asks_the_rate_limiter_in_one_round_trip_once_per_account(
    db, env, make_client, make_account, make_post, monkeypatch
):
    from mcmp.simulators.core import start_in_thread
    from mcmp.simulators.website import WebhookSimulator

    sim = WebhookSimulator()
    server, url = start_in_thread(sim)
    try:
        clients = [make_client(), make_client()]
        for client in clients:
            make_account(
                client,
                "website",
                accessToken="dev-webhook-secret",
                metadata={"webhookUrl": f"{url}/hooks/{client['slug']}", "mode": "webhook"},
            )
        due = now() - timedelta(seconds=1)
        posts = [(c, make_post(c, ["website"], when=due)) for c in clients for _ in range(6)]
        ids, claim = born([p for _, p in posts])
        # Each call still runs the real script on the real Redis; only the calls are counted (the
        # server's INFO commandstats would count a neighbouring test process's scripts too).
        from mcmp.worker import rate_limit

        calls: list[list[int]] = []
        real = rate_limit.admit_accounts

        def counted(requests):
            calls.append(sorted(len(r.delivery_ids) for r in requests))
            return real(requests)

        monkeypatch.setattr(rate_limit, "admit_accounts", counted)

        counts = publish_batch(ids, claim)

        assert counts == {"published": 12}
        assert sim.state()["count"] == 12
        # 12 deliveries of 2 accounts: one round trip, the admission script once per account
        assert calls == [[6, 6]], calls
    finally:
        server.shutdown()


def test_a_batch_reads_its_accounts_long_lane_marks_once_and_moves_the_marked_before_calling(
    db, env, make_client, make_account, make_post, monkeypatch
):
    from mcmp.config import get_settings
    from mcmp.simulators.core import start_in_thread
    from mcmp.simulators.website import WebhookSimulator
    from mcmp.worker.publishing import lanes

    sim = WebhookSimulator()
    server, url = start_in_thread(sim)
    try:
        quick, slow = make_client(), make_client()
        for client in (quick, slow):
            make_account(
                client,
                "website",
                accessToken="dev-webhook-secret",
                metadata={"webhookUrl": f"{url}/hooks/{client['slug']}", "mode": "webhook"},
            )
        lanes.mark_long(str(slow["_id"]), "website", get_settings())
        due = now() - timedelta(seconds=1)
        posts = [(c, make_post(c, ["website"], when=due)) for c in (quick, slow) for _ in range(3)]
        ids, claim = born([p for _, p in posts])
        reads: list[int] = []
        real = lanes.long_accounts
        monkeypatch.setattr(lanes, "long_accounts", lambda accounts: reads.append(1) or real(accounts))

        counts = publish_batch(ids, claim)

        assert counts == {"published": 3, "moved": 3}
        assert sim.state()["count"] == 3  # the marked account's posts were not called on the fast lane
        assert len(reads) == 1
        moved = db.deliveries.find({"clientId": str(slow["_id"])})
        assert all(d["state"] == "queued" and d["attempt"] == 0 for d in moved)
    finally:
        server.shutdown()
