"""The state machine's transitions: each a compare-and-swap that names its prior state."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import redis
from bson import ObjectId

from mcmp.config import get_settings
from mcmp.models import ErrorClass
from mcmp.worker import liveness
from mcmp.worker.publishing import delivery_states
from tests.integration.worker.helpers import new_delivery, now, take


@pytest.fixture
def post(make_client, make_post):
    return make_post(make_client(), ["website"])


def state(db, taken):
    return db.deliveries.find_one({"_id": taken.id})


def test_a_first_attempt_takes_the_claimed_delivery_in_one_write(db, post):
    taken = take(post)
    doc = state(db, taken)
    assert doc["state"] == "in_flight" and doc["attempt"] == 1 and doc["needsReconcile"] is True
    assert doc["attemptId"] == taken.attempt_id and doc["owner"] == liveness.owner()
    assert doc["firstTakenAt"] is not None and taken.first_pickup and not taken.uncertain


def test_a_duplicated_message_cannot_take_it_twice(db, post):
    claimed = new_delivery(post, "website")
    hint = delivery_states.claim_hint(claimed)
    assert delivery_states.start_claimed(str(claimed["_id"]), hint, 60) is not None
    assert delivery_states.start_claimed(str(claimed["_id"]), hint, 60) is None
    assert delivery_states.start_attempt(str(claimed["_id"]), 60) is None  # lease still running


@pytest.mark.parametrize(
    ("transition", "to", "attempt_after"),
    [
        (lambda t: delivery_states.complete(t, "p1", None, now(), now()), "published", 1),
        (lambda t: delivery_states.fail(t, "body: too long", ErrorClass.PERMANENT), "failed", 1),
        (
            lambda t: delivery_states.schedule_retry(
                t, now(), "500", ErrorClass.RETRYABLE, needs_reconcile=False
            ),
            "pending",
            1,
        ),
        (
            lambda t: delivery_states.schedule_retry(
                t, now(), "429", ErrorClass.RATE_LIMITED, needs_reconcile=False, consume_attempt=False
            ),
            "pending",
            0,
        ),
        (lambda t: delivery_states.wait_for_auth(t, "expired", needs_reconcile=False), "waiting_auth", 0),
        (lambda t: delivery_states.cancel_attempt(t, "post is now 'approved'"), "cancelled", 0),
        (lambda t: delivery_states.release(t, now(), needs_reconcile=False), "pending", 0),
    ],
)
def test_each_way_out_of_in_flight_needs_the_attempt_that_owns_it(db, post, transition, to, attempt_after):
    taken = take(post)
    stale = type(taken)(**{**taken.__dict__, "attempt_id": uuid.uuid4().hex})
    assert transition(stale) is False
    assert state(db, taken)["state"] == "in_flight"
    assert transition(taken) is True
    doc = state(db, taken)
    assert doc["state"] == to and doc["attempt"] == attempt_after and doc["leaseUntil"] is None
    assert transition(taken) is False  # no longer in flight: the same outcome cannot be written twice


def test_bulk_transitions_drop_only_the_outcome_whose_attempt_lost_the_delivery(db, make_client, make_post):
    client = make_client()
    posts = [make_post(client, ["website"]) for _ in range(3)]
    taken = [take(p) for p in posts]
    # The second was reaped and taken again by another attempt meanwhile.
    db.deliveries.update_one({"_id": taken[1].id}, {"$set": {"attemptId": "newer"}})
    ops = [delivery_states.complete_op(t, f"p{i}", None, now(), now()) for i, t in enumerate(taken)]
    assert delivery_states.apply_many(ops) == [True, False, True]
    assert [state(db, t)["state"] for t in taken] == ["published", "in_flight", "published"]


def test_a_batch_take_is_a_compare_and_swap_per_delivery(db, make_client, make_post):
    client = make_client()
    posts = [make_post(client, ["website"]) for _ in range(4)]
    claimed = delivery_states.ensure(
        [
            delivery_states.NewDelivery(str(p["_id"]), str(client["_id"]), "website", p["scheduleTime"])
            for p in posts
        ],
        claim_lease_seconds=60,
    ).claimed
    items = [delivery_states.parse_batch_item(delivery_states.batch_item(d)) for d in claimed]
    # A re-sent single message took one first.
    raced = delivery_states.start_claimed(str(claimed[2]["_id"]), delivery_states.claim_hint(claimed[2]), 60)
    assert raced is not None
    taken = delivery_states.start_batch(items, claimed[0]["claimToken"], 60)
    assert sorted(str(t.id) for t in taken) == sorted(str(d["_id"]) for i, d in enumerate(claimed) if i != 2)
    assert all(state(db, t)["attemptId"] == t.attempt_id for t in taken)
    assert state(db, raced)["attemptId"] == raced.attempt_id  # the racer keeps its attempt
    assert delivery_states.start_batch(items, claimed[0]["claimToken"], 60) == []


def test_the_reaper_hands_on_a_dead_workers_delivery_at_once(db, post):
    taken = take(post)
    db.deliveries.update_one({"_id": taken.id}, {"$set": {"owner": "gone-host:1:dead"}})
    assert delivery_states.reap_expired_leases() == (0, 1)
    doc = state(db, taken)
    assert doc["state"] == "pending" and doc["needsReconcile"] is True and doc["owner"] is None


def test_the_reaper_leaves_a_live_workers_long_call_alone(db, post):
    taken = take(post)
    assert delivery_states.reap_expired_leases() == (0, 0)
    assert state(db, taken)["state"] == "in_flight"


def test_a_live_worker_keeps_the_lease_of_a_call_still_running(db, post):
    taken = take(post)
    old = now() - timedelta(seconds=1)
    db.deliveries.update_one({"_id": taken.id}, {"$set": {"leaseUntil": old}})
    delivery_states.extend_leases([taken.id], liveness.owner() or "")
    assert state(db, taken)["leaseUntil"] > now() + timedelta(
        seconds=get_settings().inflight_lease_seconds - 5
    )
    assert delivery_states.reap_expired_leases() == (0, 0)


def test_an_attempt_that_ended_without_recording_is_recovered_by_its_lease(db, post):
    taken = take(post)  # its owner lives, but nothing keeps this lease any more
    db.deliveries.update_one({"_id": taken.id}, {"$set": {"leaseUntil": now() - timedelta(seconds=1)}})
    assert delivery_states.reap_expired_leases() == (0, 1)


def test_liveness_cannot_be_judged_right_after_a_redis_restart(monkeypatch):
    owner = liveness.owner()
    assert owner and liveness.alive([owner, "gone:1:x"]) == {owner}
    monkeypatch.setattr(redis.Redis, "info", lambda self, section=None: {"uptime_in_seconds": 1})
    assert liveness.alive([owner, "gone:1:x"]) is None


def test_stranded_queued_deliveries_are_offered_once_per_loss(db, post):
    claimed = new_delivery(post, "website", due=now() - timedelta(seconds=30))
    db.deliveries.update_one({"_id": claimed["_id"]}, {"$set": {"updatedAt": now() - timedelta(seconds=20)}})
    # overdue, but no message was lost since it was sent: it waits in a queue or a live worker
    assert delivery_states.stranded(5, 100, lost_after=now() - timedelta(seconds=30)) == []
    loss = now() - timedelta(seconds=10)  # e.g. a worker that held it died
    assert [d["_id"] for d in delivery_states.stranded(5, 100, lost_after=loss)] == [claimed["_id"]]
    assert delivery_states.stranded(5, 100, lost_after=loss) == []  # sent again after that loss
    assert db.deliveries.find_one({"_id": claimed["_id"]})["state"] == "queued"
    # sent just now: not overdue since its message went out, whatever the loss
    fresh = new_delivery(post, "facebook", due=now() - timedelta(seconds=30))
    assert fresh["_id"] not in [d["_id"] for d in delivery_states.stranded(5, 100, lost_after=now())]


def test_a_worker_that_stops_renewing_marks_a_possible_message_loss(db):
    redis_client = redis.Redis.from_url(get_settings().redis_url)
    assert liveness.owner()  # this process renews its key and is listed as a member
    before = liveness.last_loss()
    assert before is not None and before < now() - timedelta(seconds=1)  # only Redis's start
    ttl = get_settings().liveness_ttl_seconds
    last_renewal = time.time() - ttl - 2
    redis_client.zadd(liveness.MEMBERS, {"gone:1:x": last_renewal})
    loss = liveness.last_loss()
    # it may have died (and prefetched messages) up to a TTL after it last renewed its key
    assert loss is not None and abs(loss.timestamp() - (last_renewal + ttl)) < 0.01
    assert redis_client.zscore(liveness.MEMBERS, "gone:1:x") is None  # moved to the losses
    assert liveness.last_loss() == loss


def test_a_redis_restart_counts_as_a_loss_until_workers_have_renewed(db, monkeypatch):
    # the restart dropped the list of workers: one that fetched a message and died before
    # renewing is listed nowhere, so messages sent within a TTL of the restart may be lost
    monkeypatch.setattr(redis.Redis, "info", lambda self, section=None: {"uptime_in_seconds": 1})
    loss = liveness.last_loss()
    assert loss is not None and abs((loss - now()).total_seconds()) < 1


def test_an_admin_retry_records_when_it_happened(db, make_client, make_post):
    post = make_post(make_client(), ["website"], when=now() - timedelta(hours=30))
    taken = take(post)
    delivery_states.fail(taken, "body: must not be empty", ErrorClass.PERMANENT)
    assert delivery_states.reopen(str(post["_id"]), now(), ["website"], retried=True) == 1
    doc = state(db, taken)
    assert doc["state"] == "pending" and doc["attempt"] == 0 and doc["firstTakenAt"] is None
    assert doc["retriedAt"] is not None
    claimed = delivery_states.claim_due(now() + timedelta(seconds=1), 10, 60)
    hint = delivery_states.claim_hint(claimed[0])
    again = delivery_states.start_claimed(str(claimed[0]["_id"]), hint, 60)
    assert again is not None and again.first_pickup
    retried_at = doc["retriedAt"].replace(tzinfo=again.late_from.tzinfo)
    assert abs((again.late_from - retried_at).total_seconds()) < 0.01  # lateness counts from the retry


def test_a_queued_delivery_whose_message_never_ran_returns_to_pending_when_its_lease_expires(db, post):
    long_ago = now() - timedelta(seconds=get_settings().queued_lease_seconds + 60)
    claimed = new_delivery(post, "website", due=long_ago)
    db.deliveries.update_one({"_id": claimed["_id"]}, {"$set": {"leaseUntil": now() - timedelta(seconds=1)}})
    fresh = new_delivery({**post, "_id": ObjectId()}, "website", due=now())
    assert delivery_states.reap_expired_leases() == (1, 0)
    assert db.deliveries.find_one({"_id": claimed["_id"]})["state"] == "pending"
    assert db.deliveries.find_one({"_id": fresh["_id"]})["state"] == "queued"
