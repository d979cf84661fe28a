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
from mcmp.worker.publishing.delivery_states import leases
from tests.integration.worker.helpers import born, new_delivery, now, take

apply = delivery_states.apply


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
        (lambda t: apply(delivery_states.complete_op(t, "p1", None, now(), now())), "published", 1),
        (lambda t: apply(delivery_states.fail_op(t, "body: too long", ErrorClass.PERMANENT)), "failed", 1),
        (
            lambda t: apply(
                delivery_states.retry_op(t, now(), "500", ErrorClass.RETRYABLE, needs_reconcile=False)
            ),
            "pending",
            1,
        ),
        (
            lambda t: apply(
                delivery_states.retry_op(
                    t, now(), "429", ErrorClass.RATE_LIMITED, needs_reconcile=False, consume_attempt=False
                )
            ),
            "pending",
            0,
        ),
        (
            lambda t: apply(delivery_states.wait_for_auth_op(t, "expired", needs_reconcile=False)),
            "waiting_auth",
            0,
        ),
        (lambda t: apply(delivery_states.cancel_op(t, "post is now 'approved'")), "cancelled", 0),
        (lambda t: apply(delivery_states.release_op(t, now(), needs_reconcile=False)), "pending", 0),
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
    claimed = [new_delivery(p, "website") for p in posts]
    token = claimed[0]["claimToken"]
    db.deliveries.update_many({"_id": {"$in": [d["_id"] for d in claimed]}}, {"$set": {"claimToken": token}})
    claimed = [{**d, "claimToken": token} for d in claimed]  # claimed together, as one claim pass does
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
    delivery_states.apply(delivery_states.fail_op(taken, "body: must not be empty", ErrorClass.PERMANENT))
    assert delivery_states.reopen(str(post["_id"]), now(), ["website"], retried=True) == 1
    doc = state(db, taken)
    assert doc["state"] == "pending" and doc["attempt"] == 0 and doc["firstTakenAt"] is None
    assert doc["retriedAt"] is not None
    claimed = delivery_states.claim_ids([taken.id], 60)
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


# --- deliveries born taken: claim and take are the insert; a worker starts one with no write ----


def _born(db, posts):
    ids, claim = born(posts)
    items = [delivery_states.parse_batch_item(i) for i in claim["items"]]
    return [db.deliveries.find_one({"_id": ObjectId(i)}) for i in ids], claim["attempt"], items


def test_a_delivery_born_taken_is_started_with_no_write_and_by_one_copy_of_its_message(db, post):
    [doc], attempt_id, items = _born(db, [post])
    assert doc["state"] == "in_flight" and doc["attempt"] == 1 and doc["needsReconcile"] is True
    assert doc["attemptId"] == attempt_id and doc["owner"] is None  # no worker started it yet
    [taken] = delivery_states.start_born(items, attempt_id, 60)
    assert taken.attempt_id == attempt_id and taken.first_pickup and not taken.uncertain
    assert state(db, taken) == doc  # not written
    assert delivery_states.start_born(items, attempt_id, 60) == []  # a second copy starts nothing
    assert delivery_states.start_attempt(str(taken.id), 60) is None  # nor a message without a claim
    assert apply(delivery_states.complete_op(taken, "p1", None, now(), now())) is True
    assert state(db, taken)["state"] == "published"


def test_a_born_delivery_whose_lease_would_end_during_the_call_is_extended_first(db, post):
    [doc], attempt_id, items = _born(db, [post])
    db.deliveries.update_one({"_id": doc["_id"]}, {"$set": {"leaseUntil": now() + timedelta(seconds=5)}})
    [taken] = delivery_states.start_born(items, attempt_id, 60)
    stored = state(db, taken)
    assert stored["leaseUntil"] > now() + timedelta(seconds=50) and stored["owner"] == liveness.owner()
    assert stored["attemptId"] == attempt_id  # the same attempt, still needing reconciliation on a crash


def test_a_born_delivery_the_reaper_took_back_is_not_started_by_its_stale_message(db, post):
    [doc], attempt_id, items = _born(db, [post])
    db.deliveries.update_one({"_id": doc["_id"]}, {"$set": {"leaseUntil": now() - timedelta(seconds=1)}})
    assert delivery_states.reap_expired_leases() == (0, 1)
    stored = db.deliveries.find_one({"_id": doc["_id"]})
    assert stored["state"] == "pending" and stored["needsReconcile"] is True
    assert delivery_states.start_born(items, attempt_id, 60) == []


def test_a_start_held_by_a_dead_worker_is_taken_over_and_looked_up_first(db, post):
    [doc], attempt_id, items = _born(db, [post])
    redis.Redis.from_url(get_settings().redis_url).set(
        f"{liveness.START_PREFIX}{attempt_id}:{doc['_id']}", "gone-host:1:dead", px=60_000
    )
    [taken] = delivery_states.start_born(items, attempt_id, 60)
    assert taken.uncertain and taken.attempt == 2 and taken.attempt_id != attempt_id
    stored = state(db, taken)
    assert stored["attemptId"] == taken.attempt_id and stored["owner"] == liveness.owner()
    assert delivery_states.start_born(items, attempt_id, 60) == []  # the dead worker's attempt is over


def test_a_running_attempts_start_key_lost_in_redis_is_set_again_by_its_worker(db, post):
    """A Redis flush (or restart) must not let a second copy of the message start the attempt."""
    [doc], attempt_id, items = _born(db, [post])
    [taken] = delivery_states.start_born(items, attempt_id, 60)
    key = f"{liveness.START_PREFIX}{attempt_id}:{doc['_id']}"
    client = redis.Redis.from_url(get_settings().redis_url)
    with liveness.running(attempt_id, [taken.id]):
        client.delete(key)
        deadline = time.monotonic() + get_settings().liveness_ttl_seconds / 2 + 2  # a renewal or two
        while client.get(key) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get(key) == (liveness.owner() or "").encode()
        assert client.pttl(key) > (get_settings().inflight_lease_seconds - 5) * 1000
        assert delivery_states.start_born(items, attempt_id, 60) == []  # a copy of its message
        assert state(db, taken)["attemptId"] == attempt_id


def test_born_deliveries_whose_send_the_broker_refused_are_looked_up_before_their_next_attempt(
    db, make_client, make_post
):
    # a send the broker refused may still have reached a worker: the next attempt looks first
    client = make_client()
    more, attempt_id, _ = _born(db, [make_post(client, ["website"])])
    assert delivery_states.unclaim([more[0]["_id"]], born=[attempt_id]) == 1
    found = db.deliveries.find_one({"_id": more[0]["_id"]})
    assert found["state"] == "pending" and found["needsReconcile"] is True


def test_a_born_delivery_whose_message_a_loss_took_is_offered_again(db, post):
    [doc], _, _ = _born(db, [post])
    db.deliveries.update_one(
        {"_id": doc["_id"]},
        {"$set": {"dueAt": now() - timedelta(seconds=30), "updatedAt": now() - timedelta(seconds=20)}},
    )
    assert delivery_states.stranded(5, 100, lost_after=now() - timedelta(seconds=30)) == []
    again = delivery_states.stranded(5, 100, lost_after=now() - timedelta(seconds=10))
    assert [d["_id"] for d in again] == [doc["_id"]]
    assert delivery_states.batch_item(again[0]) is not None  # re-sent under its birth attempt


def test_the_reaper_hands_on_a_born_delivery_a_dead_worker_started_and_leaves_unstarted_ones(
    db, make_client, make_post
):
    client = make_client()
    docs, attempt_id, items = _born(db, [make_post(client, ["website"]) for _ in range(3)])
    started_here = delivery_states.start_born(items[:1], attempt_id, 60)
    assert len(started_here) == 1
    redis.Redis.from_url(get_settings().redis_url).set(
        f"{liveness.START_PREFIX}{attempt_id}:{docs[1]['_id']}", "gone-host:1:dead", px=60_000
    )
    assert delivery_states.reap_expired_leases() == (0, 1)
    states = [db.deliveries.find_one({"_id": d["_id"]}) for d in docs]
    assert states[0]["state"] == "in_flight"  # started by this live process
    assert states[1]["state"] == "pending" and states[1]["needsReconcile"] is True  # its worker died
    assert states[2]["state"] == "in_flight"  # not started yet: its message is on its way


# --- cancelling a delivery born taken that no worker started: its start key is taken first -----


def test_a_start_a_cancel_holds_is_neither_started_nor_taken_over_nor_reaped(db, post):
    [doc], attempt_id, items = _born(db, [post])
    sentinel, held = liveness.hold_starts([(attempt_id, doc["_id"])], 60)
    assert held == {str(doc["_id"])} and liveness.held_by_cancel(sentinel)
    # the message runs between the cancel's SET NX and its compare-and-swap
    assert delivery_states.start_born(items, attempt_id, 60) == []
    assert delivery_states.reap_expired_leases() == (0, 0)
    assert db.deliveries.find_one({"_id": doc["_id"]}) == doc  # not taken over, not handed on
    liveness.release_starts([(attempt_id, doc["_id"])], sentinel)
    [taken] = delivery_states.start_born(items, attempt_id, 60)  # given back: startable again
    assert taken.attempt_id == attempt_id


def test_cancelling_an_unstarted_born_delivery_leaves_nothing_to_start(db, post):
    [doc], attempt_id, items = _born(db, [post])
    result = delivery_states.cancel_unstarted([doc], "cancelled")
    assert result == delivery_states.Unstarted([doc["_id"]], [], [])
    stored = db.deliveries.find_one({"_id": doc["_id"]})
    assert stored["state"] == "cancelled" and stored["attempt"] == 0 and stored["leaseUntil"] is None
    assert delivery_states.start_born(items, attempt_id, 60) == []  # its message calls nothing


def test_a_born_delivery_a_worker_started_is_not_cancelled(db, post):
    [doc], attempt_id, items = _born(db, [post])
    assert len(delivery_states.start_born(items, attempt_id, 60)) == 1
    result = delivery_states.cancel_unstarted([doc], "cancelled")
    assert result == delivery_states.Unstarted([], [doc["_id"]], [])
    assert db.deliveries.find_one({"_id": doc["_id"]})["state"] == "in_flight"


def test_a_born_delivery_is_not_cancelled_when_redis_lost_its_data_after_its_birth(db, post):
    # A worker may have started it on the lost data and died since: no key says so any more.
    [doc], attempt_id, items = _born(db, [post])
    redis.Redis.from_url(get_settings().redis_url).delete(liveness.DATA_SINCE)  # data lost: begins now
    with pytest.raises(liveness.StartsUnknown):
        delivery_states.cancel_unstarted([doc], "cancelled")
    assert db.deliveries.find_one({"_id": doc["_id"]}) == doc  # nothing cancelled
    [taken] = delivery_states.start_born(items, attempt_id, 60)  # no start key left held
    assert taken.uncertain  # and the start that follows looks the post up first


def test_a_claimed_delivery_taken_without_an_owner_is_not_mistaken_for_an_unstarted_one(db, post):
    # a worker that took it while Redis was away wrote no owner; it was claimed, never born taken
    taken = take(post)
    db.deliveries.update_one({"_id": taken.id}, {"$set": {"owner": None}})
    doc = db.deliveries.find_one({"_id": taken.id})
    assert delivery_states.cancel_unstarted([doc], "cancelled").moved == [taken.id]
    assert db.deliveries.find_one({"_id": taken.id})["state"] == "in_flight"
    holders = liveness.start_holders([(taken.attempt_id, taken.id)])
    assert holders == {}  # the cancel's key was given back


def test_a_pending_first_attempt_is_claimed_taken_and_started_with_no_write(db, make_client, make_post):
    # Waiting behind its tenant's cap must not cost a delivery a take: the claim is its take.
    client = make_client()
    fresh, retried, deferred = (make_post(client, ["website"]) for _ in range(3))
    delivery_states.ensure(
        [
            delivery_states.NewDelivery(str(p["_id"]), str(client["_id"]), "website", p["scheduleTime"])
            for p in (fresh, retried, deferred)
        ]
    )
    db.deliveries.update_one({"postId": str(retried["_id"])}, {"$set": {"attempt": 1}})  # a retry
    db.deliveries.update_one(
        {"postId": str(deferred["_id"])}, {"$set": {"firstTakenAt": now()}}
    )  # attempt given back
    ids = [db.deliveries.find_one({"postId": str(p["_id"])})["_id"] for p in (fresh, retried, deferred)]
    claimed = delivery_states.claim_taken(ids, get_settings().queued_lease_seconds)
    assert [d["_id"] for d in claimed] == ids
    first, again, later = claimed
    attempt_id = delivery_states.born_attempt(first)
    assert attempt_id and first["attempt"] == 1 and first["needsReconcile"] is True and first["owner"] is None
    assert (again["state"], later["state"]) == ("queued", "queued")  # their worker's take records the attempt
    assert not delivery_states.born_attempt(again) and again["claimToken"] == later["claimToken"]
    assert delivery_states.claim_taken(ids, 60) == []  # none is pending any more
    before = db.deliveries.find_one({"_id": first["_id"]})
    item = delivery_states.parse_batch_item(delivery_states.batch_item(first))
    [taken] = delivery_states.start_born([item], attempt_id, 60)
    assert taken.first_pickup and not taken.uncertain and taken.attempt == 1
    assert db.deliveries.find_one({"_id": first["_id"]}) == before  # started with no write
    assert apply(delivery_states.complete_op(taken, "p1", None, now(), now())) is True
    assert db.deliveries.find_one({"_id": first["_id"]})["state"] == "published"


def test_a_delivery_abandoned_for_two_reasons_is_reaped_once(db, make_client, make_post):
    client = make_client()
    twice, expired, live = (take(make_post(client, ["website"])) for _ in range(3))
    gone = now() - timedelta(seconds=1)
    db.deliveries.update_one({"_id": twice.id}, {"$set": {"owner": "gone-host:1:dead", "leaseUntil": gone}})
    db.deliveries.update_one({"_id": expired.id}, {"$set": {"leaseUntil": gone}})
    assert delivery_states.reap_expired_leases() == (0, 2)
    assert [state(db, t)["state"] for t in (twice, expired, live)] == ["pending", "pending", "in_flight"]


def test_the_reapers_filters_are_key_lookups(db, post):
    """SecantusDB answers a filter with a top-level operator (``$or``) by decoding every delivery
    under its collection lock, which under a burst's backlog stalled every worker's outcome for
    seconds a pass; with ``_id`` first and no such operator it looks the ids up."""
    taken = take(post)
    filters = leases.reap_filters([taken.id], ["gone-host:1:dead"], now(), [(taken.id, "a1")])
    assert len(filters) == 3
    for query in filters:
        assert next(iter(query)) == "_id" and not [k for k in query if k.startswith("$")], query
        assert [d["_id"] for d in db.deliveries.find(query, {"_id": 1})] in ([], [taken.id])
