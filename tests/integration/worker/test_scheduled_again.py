"""A post the frontend schedules again after it settled: only its new attempt decides what it shows.

A sync still running from the old outcome (another batch's fallback, a late worker) must never
settle it back with the old deliveries' error, whether its deliveries are re-opened or the post is
refused at expansion.
"""

from __future__ import annotations

from datetime import timedelta

from mcmp.models.db import BY_ID
from mcmp.worker.publishing import delivery_states, post_status
from mcmp.worker.publishing.delivery_states import NewDelivery
from mcmp.worker.publishing.guarded_update import guarded
from mcmp.worker.scheduling.dispatcher import Dispatcher
from tests.integration.worker.helpers import mark_expanded, now


def _settled_partly(db, client, post, failed: str) -> None:
    """website published, ``failed`` failed: the post as the first round left it (failed)."""
    post_id = str(post["_id"])
    delivery_states.ensure(
        [NewDelivery(post_id, str(client["_id"]), p, post["scheduleTime"]) for p in ("website", failed)]
    )
    db.deliveries.update_one({"postId": post_id, "platform": "website"}, {"$set": {"state": "published"}})
    db.deliveries.update_one(
        {"postId": post_id, "platform": failed},
        {"$set": {"state": "failed", "lastError": f"{failed}: refused"}},
    )


def test_a_post_scheduled_again_is_never_settled_by_a_sync_that_read_its_old_deliveries(
    db, make_client, make_post
):
    """The frontend re-schedules a failed post; the dispatcher re-opens its failed delivery and
    marks it expanded again. A sync that read the old deliveries (before or after the frontend's
    write) and writes only now must not settle it back to ``failed`` with the old error: the
    new attempt's outcome is what the post shows."""
    client = make_client()
    post = make_post(client, ["website", "echo"])
    post_id, due = str(post["_id"]), post["scheduleTime"]
    _settled_partly(db, client, post, "echo")
    mark_expanded([post])
    read_while_expanded = (
        db.posts.find_one({"_id": post["_id"]}, post_status.SYNC_VIEW),
        delivery_states.for_post(post_id),
    )
    assert post_status.sync(post_id) == "failed"
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"status": "scheduled", "body": " "}})  # the frontend
    read_before_expansion = (
        db.posts.find_one({"_id": post["_id"]}, post_status.SYNC_VIEW),
        delivery_states.for_post(post_id),
    )
    assert post_status.plan(*read_before_expansion) is None  # not expanded: nothing to settle yet
    # The dispatcher expands it again: the failed delivery re-opened, then the new marker.
    assert delivery_states.ensure([NewDelivery(post_id, str(client["_id"]), "echo", due)]).reopened == 1
    mark_expanded([post])

    stale = post_status.plan(*read_while_expanded)
    assert stale is not None and stale.new_status == "failed"
    assert db.posts.update_one(stale.filter, stale.update).modified_count == 0
    shaped = guarded(stale.filter, stale.update)
    assert shaped is not None and db.posts.update_one(*shaped, hint=BY_ID).modified_count == 0
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "scheduled"

    db.deliveries.update_one(
        {"postId": post_id, "platform": "echo"},
        {"$set": {"state": "failed", "lastError": "body: must not be empty"}},
    )
    assert post_status.sync(post_id) == "failed"
    assert "body: must not be empty" in db.posts.find_one({"_id": post["_id"]})["lastError"]


def test_a_post_scheduled_again_with_an_empty_body_fails_with_that_error_whatever_syncs_meanwhile(
    db, make_client, make_account, make_post
):
    """Refused at expansion (its failed delivery is not re-opened): it is failed with the
    validation error before it is marked expanded, so a sync running while the dispatcher hands
    out the rest of its page finds nothing to settle."""
    client = make_client()
    make_account(
        client, "website", accessToken="s", metadata={"webhookUrl": "http://127.0.0.1:9/h", "mode": "webhook"}
    )
    emptied = make_post(client, ["website", "facebook"], when=now() - timedelta(seconds=5))
    _settled_partly(db, client, emptied, "facebook")
    db.posts.update_one(
        {"_id": emptied["_id"]}, {"$set": {"status": "scheduled", "body": " "}}
    )  # the frontend
    make_post(client, ["website"], when=now())  # a valid post in the same page: something is sent
    syncs: list[str | None] = []

    def send_task(name: str, **kw: object) -> None:  # a sync of the old outcome, meanwhile
        syncs.append(post_status.sync(str(emptied["_id"])))

    Dispatcher(send_task=send_task).expand_due_posts(now() + timedelta(seconds=2))

    assert syncs == [None]
    doc = db.posts.find_one({"_id": emptied["_id"]})
    assert doc["status"] == "failed" and "body: must not be empty" in doc["lastError"]
    assert "mcmpExpandedAt" not in doc
    assert [h["toStatus"] for h in doc["statusHistory"]][-1] == "failed"
    facebook = db.deliveries.find_one({"postId": str(emptied["_id"]), "platform": "facebook"})
    assert facebook["state"] == "failed"  # not re-opened: nothing of it reaches a platform


def test_a_batch_whose_post_was_rotated_by_the_settle_sweep_still_settles_it(db, make_client, make_post):
    """The sweep over posts expanded long ago rewrites their marker (to the back of its queue)
    while a batch is at work on them: the batch's status write, conditional on the marker it
    read, misses, and its fallback reads the post again and settles it once."""
    client = make_client()
    post = make_post(client, ["website"])
    mark_expanded([post])  # what the batch read
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"mcmpExpandedAt": now() + timedelta(seconds=1)}})
    post_id = str(post["_id"])
    delivery_states.ensure([NewDelivery(post_id, str(client["_id"]), "website", post["scheduleTime"])])
    db.deliveries.update_one(
        {"postId": post_id}, {"$set": {"state": "published", "platformPostId": "w-9"}}
    )  # its outcome, written before the post's

    post_status.sync_many([(post, db.deliveries.find_one({"postId": post_id}))], {})

    doc = db.posts.find_one({"_id": post["_id"]})
    assert doc["status"] == "published" and doc["platformPostIds"]["website"] == "w-9"
    assert [h["toStatus"] for h in doc["statusHistory"]].count("published") == 1
