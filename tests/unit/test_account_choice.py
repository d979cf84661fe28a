"""Which account a client publishes with on a platform: one rule, asked by every path.

The rule (``mcmp.worker.accounts.store.choose_account``): a connected account wins; among the
winners the most recently changed (``updatedAt``, else ``createdAt``); an exact tie goes to the
newer ``_id``; with none connected, the most recently changed other one. The publish path, the
batch path and the dispatcher's "was the account reconnected?" check all use it, so a reconnect
is recognised exactly when publishing would go out with the reconnected account.
"""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId

from mcmp.models import DeliveryState
from mcmp.worker.accounts import store
from mcmp.worker.scheduling.dispatcher import Dispatcher
from tests.unit.helpers import now


def _pick(client_id: str, platform: str = "website") -> str | None:
    single = store.find_account(client_id, platform)
    many = store.find_accounts({(client_id, platform)}).get((client_id, platform))
    assert (single and single.pk) == (many and many.pk), "find_account and find_accounts disagree"
    return None if single is None else str(single.pk)


def test_the_account_rule_is_connected_first_then_most_recently_changed_then_newest_id(
    make_client, make_account
):
    client = make_client()
    cid = str(client["_id"])
    t = now()
    old_connected = make_account(client, "website", updatedAt=t - timedelta(hours=3))
    new_expired = make_account(client, "website", status="expired", updatedAt=t)
    assert _pick(cid) == str(old_connected["_id"])  # connected beats a more recent expired one

    newer_connected = make_account(client, "website", updatedAt=t - timedelta(hours=1))
    assert _pick(cid) == str(newer_connected["_id"])  # among connected: the most recently changed

    tie_low, tie_high = sorted([ObjectId(), ObjectId()])
    make_account(client, "website", _id=tie_high, updatedAt=t - timedelta(minutes=30))
    make_account(client, "website", _id=tie_low, updatedAt=t - timedelta(minutes=30))
    assert _pick(cid) == str(tie_high)  # an exact tie: the newer id, whatever the read order

    for account_id in (old_connected["_id"], newer_connected["_id"], tie_low, tie_high):
        store.integration_accounts().update_one({"_id": account_id}, {"$set": {"status": "error"}})
    assert _pick(cid) == str(new_expired["_id"])  # none connected: the most recently changed

    assert _pick(cid, "linkedin") is None
    assert _pick(str(make_client()["_id"])) is None  # another client's accounts are never picked


def test_a_reconnect_resumes_waiting_deliveries_when_publishing_would_use_the_reconnected_account(
    db, make_client, make_account, make_post
):
    """An older duplicate left expired (the newest document) must not hide a reconnected account:
    the dispatcher used to look at the most recently changed account only and kept the
    deliveries parked although publishing would go out with the connected one."""
    client = make_client()
    post = make_post(client, ["website"])
    parked_at = now()
    parked = db.deliveries.insert_one(  # as the publish path parks it after an auth refusal
        {
            "postId": str(post["_id"]),
            "clientId": str(client["_id"]),
            "platform": "website",
            "state": DeliveryState.WAITING_AUTH.value,
            "dueAt": parked_at,
            "scheduledFor": parked_at,
            "waitingSince": parked_at,
            "attempt": 0,
            "lastError": "token expired",
        }
    ).inserted_id
    reconnected_at = parked_at + timedelta(seconds=1)
    make_account(client, "website", updatedAt=reconnected_at)
    make_account(client, "website", status="expired", updatedAt=reconnected_at + timedelta(minutes=5))

    resumed = Dispatcher(send_task=lambda *a, **k: None).resume_reconnected_accounts()

    assert resumed == 1
    assert db.deliveries.find_one({"_id": parked})["state"] == DeliveryState.PENDING.value
