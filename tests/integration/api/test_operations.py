"""Retry, cancel and reschedule through the API on the real database (no worker needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId

from mcmp.models import DeliveryState, ErrorClass
from mcmp.worker.publishing import delivery_states
from mcmp.worker.publishing.delivery_states import NewDelivery
from mcmp.worker.publishing.post_status import EXPANDED_MARKER
from tests.integration.api.conftest import headers


def _deliveries(db, post):
    return {d["platform"]: d for d in db.deliveries.find({"postId": str(post["_id"])})}


def _ensure(post, platform, state, error=None):
    delivery_states.ensure(
        [
            NewDelivery(
                str(post["_id"]),
                post["clientId"],
                platform,
                post["scheduleTime"],
                state=state,
                last_error=error,
                error_class=ErrorClass.PERMANENT if error else None,
            )
        ]
    )


def test_retry_reopens_only_failed_platforms_and_records_who(api, db, make_key, make_client, make_post):
    client = make_client()
    post = make_post(
        client, ["website", "linkedin"], when=datetime.now(UTC) - timedelta(minutes=1), status="failed"
    )
    _ensure(post, "website", DeliveryState.FAILED, "refused")
    _ensure(post, "linkedin", DeliveryState.PENDING)
    db.deliveries.update_one(
        {"postId": str(post["_id"]), "platform": "linkedin"}, {"$set": {"state": "published"}}
    )
    key = make_key(str(client["_id"]), user_id="user-42")

    r = api.post(f"/v1/posts/{post['_id']}/retry", headers=headers(key))

    assert r.status_code == 200, r.text
    assert r.json()["platforms"] == ["website"] and r.json()["status"] == "scheduled"
    states = _deliveries(db, post)
    assert states["website"]["state"] == "pending" and states["website"]["attempt"] == 0
    assert states["linkedin"]["state"] == "published"
    stored = db.posts.find_one({"_id": post["_id"]})
    last = stored["statusHistory"][-1]
    assert (last["fromStatus"], last["toStatus"], last["byUserId"]) == ("failed", "scheduled", "user-42")
    assert last["note"] == "retry requested via admin API"
    assert stored[EXPANDED_MARKER]  # deliveries exist: the dispatcher need not expand it again


def test_retry_with_nothing_failed_is_a_409_problem(api, db, make_key, make_client, make_post):
    client = make_client()
    post = make_post(client, ["website"], status="published")
    _ensure(post, "website", DeliveryState.PENDING)
    db.deliveries.update_one({"postId": str(post["_id"])}, {"$set": {"state": "published"}})
    key = make_key(str(client["_id"]))
    for body in (None, {"platform": "website"}):
        r = api.post(f"/v1/posts/{post['_id']}/retry", json=body, headers=headers(key))
        assert r.status_code == 409 and r.json()["type"] == "urn:mcmp:problem:nothing-to-retry"
        assert "website: published" in r.json()["detail"]
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "published"
    r = api.post(f"/v1/posts/{post['_id']}/retry", json={"platform": "facebook"}, headers=headers(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.platform"


def test_retry_of_a_post_that_failed_before_expansion_unsets_the_marker(
    api, db, make_key, make_client, make_post
):
    client = make_client()
    post = make_post(client, ["website"], status="failed", **{EXPANDED_MARKER: datetime.now(UTC)})
    r = api.post(f"/v1/posts/{post['_id']}/retry", headers=headers(make_key(str(client["_id"]))))
    assert r.status_code == 200
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored["status"] == "scheduled" and EXPANDED_MARKER not in stored


def test_cancel_unschedules_and_cancels_open_deliveries(api, db, make_key, make_client, make_post):
    client = make_client()
    post = make_post(client, ["website", "linkedin"])
    _ensure(post, "website", DeliveryState.PENDING)
    _ensure(post, "linkedin", DeliveryState.PENDING)
    key = make_key(str(client["_id"]))
    r = api.post(f"/v1/posts/{post['_id']}/cancel", json={"platform": "linkedin"}, headers=headers(key))
    assert r.status_code == 200 and r.json()["status"] == "scheduled"
    assert _deliveries(db, post)["linkedin"]["state"] == "cancelled"
    r = api.post(f"/v1/posts/{post['_id']}/cancel", headers=headers(key))
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert {d["state"] for d in _deliveries(db, post).values()} == {"cancelled"}
    assert api.post(f"/v1/posts/{post['_id']}/cancel", headers=headers(key)).status_code == 409
    # retry brings a cancelled post back
    r = api.post(f"/v1/posts/{post['_id']}/retry", headers=headers(key))
    assert r.status_code == 200 and sorted(r.json()["platforms"]) == ["linkedin", "website"]


def test_cancel_refuses_while_a_platform_is_in_flight(api, db, make_key, make_client, make_post):
    client = make_client()
    post = make_post(client, ["website"])
    _ensure(post, "website", DeliveryState.PENDING)
    db.deliveries.update_one({"postId": str(post["_id"])}, {"$set": {"state": "in_flight"}})
    r = api.post(f"/v1/posts/{post['_id']}/cancel", headers=headers(make_key(str(client["_id"]))))
    assert r.status_code == 409 and "in_flight" not in r.json()["type"]
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "scheduled"


def test_reschedule_moves_post_and_open_deliveries(api, db, make_key, make_client, make_post):
    client = make_client()
    post = make_post(client, ["website"], status="failed", when=datetime.now(UTC) - timedelta(hours=1))
    _ensure(post, "website", DeliveryState.FAILED, "refused")
    key = make_key(str(client["_id"]))
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    r = api.post(
        f"/v1/posts/{post['_id']}/reschedule", json={"scheduleTime": when.isoformat()}, headers=headers(key)
    )
    assert r.status_code == 200, r.text
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored["status"] == "scheduled" and stored["scheduleTime"] == when
    d = _deliveries(db, post)["website"]
    assert d["state"] == "pending" and d["dueAt"] == when
    draft = make_post(client, ["website"], status="draft")
    r = api.post(
        f"/v1/posts/{draft['_id']}/reschedule", json={"scheduleTime": when.isoformat()}, headers=headers(key)
    )
    assert r.status_code == 409
    r = api.post(
        f"/v1/posts/{ObjectId()}/reschedule", json={"scheduleTime": when.isoformat()}, headers=headers(key)
    )
    assert r.status_code == 404


def _born(post, platform="website"):
    """The post's delivery born taken by the dispatcher, its message not yet run by any worker."""
    from tests.integration.worker.helpers import born

    _, claim = born([post], platform)
    return claim["attempt"], [delivery_states.parse_batch_item(i) for i in claim["items"]]


def test_cancel_of_a_post_whose_delivery_waits_in_the_queue_succeeds(
    api, db, make_key, make_client, make_post
):
    client = make_client()
    post = make_post(client, ["website", "linkedin"], when=datetime.now(UTC) + timedelta(seconds=1))
    attempt_id, items = _born(post)
    _ensure(post, "linkedin", DeliveryState.PENDING)
    assert _deliveries(db, post)["website"]["state"] == "in_flight"

    r = api.post(f"/v1/posts/{post['_id']}/cancel", headers=headers(make_key(str(client["_id"]))))

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert {p: d["state"] for p, d in _deliveries(db, post).items()} == {
        "website": "cancelled",
        "linkedin": "cancelled",
    }
    assert delivery_states.start_born(items, attempt_id, 60) == []  # its message calls nothing


def test_cancel_of_one_platform_waiting_in_the_queue_keeps_the_post_scheduled(
    api, db, make_key, make_client, make_post
):
    client = make_client()
    post = make_post(client, ["website", "linkedin"], when=datetime.now(UTC) + timedelta(seconds=1))
    attempt_id, items = _born(post)
    _ensure(post, "linkedin", DeliveryState.PENDING)
    key = make_key(str(client["_id"]))
    r = api.post(f"/v1/posts/{post['_id']}/cancel", json={"platform": "website"}, headers=headers(key))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "scheduled" and r.json()["platforms"] == ["website"]
    states = _deliveries(db, post)
    assert states["website"]["state"] == "cancelled" and states["linkedin"]["state"] == "pending"
    assert delivery_states.start_born(items, attempt_id, 60) == []


def test_cancel_refuses_once_a_worker_started_the_delivery(api, db, make_key, make_client, make_post):
    client = make_client()
    post = make_post(client, ["website", "linkedin"], when=datetime.now(UTC) + timedelta(seconds=1))
    attempt_id, items = _born(post)
    _ensure(post, "linkedin", DeliveryState.PENDING)
    [taken] = delivery_states.start_born(items, attempt_id, 60)  # a worker holds its start key

    r = api.post(f"/v1/posts/{post['_id']}/cancel", headers=headers(make_key(str(client["_id"]))))

    assert r.status_code == 409 and "being published right now on website" in r.json()["detail"]
    states = _deliveries(db, post)
    assert states["website"]["state"] == "in_flight" and states["website"]["attemptId"] == taken.attempt_id
    assert states["linkedin"]["state"] == "pending"  # nothing was cancelled
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "scheduled"


def test_cancel_refuses_when_redis_cannot_say_whether_a_worker_started(
    api, db, make_key, make_client, make_post, monkeypatch
):
    from mcmp.config import reset_settings

    client = make_client()
    post = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=1))
    _born(post)
    key = make_key(str(client["_id"]))
    monkeypatch.setenv("MCMP_REDIS_URL", "redis://127.0.0.1:9/15")  # nothing listens there
    reset_settings()

    r = api.post(f"/v1/posts/{post['_id']}/cancel", headers=headers(key))

    assert r.status_code == 503 and "nothing was cancelled" in r.json()["detail"]
    assert _deliveries(db, post)["website"]["state"] == "in_flight"
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "scheduled"
