"""A compare-and-swap sent with its condition inside the update: the same outcome as the classic form."""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId

from mcmp.models.db import BY_ID
from mcmp.worker.publishing.guarded_update import guarded
from tests.integration.worker.helpers import now


def _write(db, flt, update) -> int:
    shaped = guarded(flt, update)
    assert shaped is not None and shaped[0] == {"_id": flt["_id"]}
    return db.deliveries.update_one(*shaped, hint=BY_ID).modified_count


def test_the_fields_change_only_when_every_condition_holds(db):
    _id = ObjectId()
    db.deliveries.insert_one({"_id": _id, "state": "in_flight", "attemptId": "a1", "attempt": 2, "note": "x"})
    update = {
        "$set": {"state": "published", "leaseUntil": None, "lastError": "$not a field path"},
        "$inc": {"attempt": -1},
        "$unset": {"note": ""},
        "$push": {"history": {"at": now(), "to": "published"}},
    }
    assert _write(db, {"_id": _id, "state": "in_flight", "attemptId": "someone else"}, update) == 0
    untouched = db.deliveries.find_one({"_id": _id})
    assert untouched == {"_id": _id, "state": "in_flight", "attemptId": "a1", "attempt": 2, "note": "x"}
    assert _write(db, {"_id": _id, "state": "in_flight", "attemptId": "a1"}, update) == 1
    done = db.deliveries.find_one({"_id": _id})
    assert done["state"] == "published" and done["attempt"] == 1 and "note" not in done
    assert done["leaseUntil"] is None and done["lastError"] == "$not a field path"
    assert [h["to"] for h in done["history"]] == ["published"]
    assert _write(db, {"_id": _id, "state": "in_flight", "attemptId": "a1"}, update) == 0  # once only


def test_exists_and_null_conditions_read_as_a_query_would(db):
    marked, bare = ObjectId(), ObjectId()
    db.posts.insert_many(
        [
            {"_id": marked, "status": "scheduled", "mcmpExpandedAt": now()},
            {"_id": bare, "status": "scheduled"},
        ]
    )
    set_published = {"$set": {"status": "published", "updatedAt": now() + timedelta(seconds=1)}}
    for _id, expected in ((marked, 1), (bare, 0)):
        flt = {"_id": _id, "status": "scheduled", "mcmpExpandedAt": {"$exists": True}}
        shaped = guarded(flt, set_published)
        assert shaped is not None
        assert db.posts.update_one(*shaped).modified_count == expected
    owner_gone = guarded({"_id": bare, "owner": None}, {"$set": {"status": "failed"}})
    assert owner_gone is not None and db.posts.update_one(*owner_gone).modified_count == 1  # missing ≡ null


def test_shapes_it_does_not_rewrite_are_left_as_they_are():
    _id = ObjectId()
    assert guarded({"_id": _id}, {"$set": {"a": 1}}) is None  # nothing to guard
    assert guarded({"_id": _id, "dueAt": {"$lte": now()}}, {"$set": {"a": 1}}) is None
    assert guarded({"_id": _id, "a": 1}, {"$set": {"b": 1}, "$addToSet": {"c": 1}}) is None
    assert guarded({"_id": _id, "a": 1}, {"$push": {"h": {"$each": [1, 2]}}}) is None


def test_a_batch_settles_its_posts_and_never_overwrites_one_the_frontend_changed(db, make_client, make_post):
    from mcmp.worker.publishing import post_status
    from tests.integration.worker.helpers import mark_expanded

    client = make_client()
    settled, edited = make_post(client, ["website"]), make_post(client, ["website"])
    mark_expanded([settled, edited])
    db.posts.update_one({"_id": edited["_id"]}, {"$set": {"status": "draft"}})  # the editor, meanwhile
    published = {"_id": ObjectId(), "platform": "website", "state": "published", "platformPostId": "w-1"}
    pairs = [(settled, {**published, "_id": ObjectId()}), (edited, {**published, "_id": ObjectId()})]

    post_status.sync_many(pairs, {})

    done, kept = db.posts.find_one({"_id": settled["_id"]}), db.posts.find_one({"_id": edited["_id"]})
    assert done["status"] == "published" and done["platformPostIds"]["website"] == "w-1"
    assert "mcmpExpandedAt" not in done and done["statusHistory"][-1]["toStatus"] == "published"
    assert kept["status"] == "draft"
    assert [h["toStatus"] for h in kept.get("statusHistory", [])] == [
        h["toStatus"] for h in edited.get("statusHistory", [])
    ]


def test_a_post_another_batch_settled_first_keeps_one_history_entry_and_the_rest_are_settled(
    db, make_client, make_post
):
    from mcmp.worker.publishing import post_status
    from tests.integration.worker.helpers import mark_expanded

    client = make_client()
    raced, alone = make_post(client, ["website"]), make_post(client, ["website"])
    mark_expanded([raced, alone])
    published = {"_id": ObjectId(), "platform": "website", "state": "published", "platformPostId": "w-1"}
    post_status.sync_many([(raced, published)], {})  # the other batch, first
    pairs = [(raced, {**published, "_id": ObjectId()}), (alone, {**published, "_id": ObjectId()})]

    post_status.sync_many(pairs, {})  # read ``raced`` as scheduled: its status write does not match

    for post in (raced, alone):
        doc = db.posts.find_one({"_id": post["_id"]})
        assert doc["status"] == "published" and doc["platformPostIds"]["website"] == "w-1"
        assert [h["toStatus"] for h in doc["statusHistory"]].count("published") == 1


def test_fields_under_one_parent_join_what_is_there_and_a_failed_condition_changes_nothing(db):
    with_ids, bare, other = ObjectId(), ObjectId(), ObjectId()
    db.posts.insert_many(
        [
            {"_id": with_ids, "status": "scheduled", "platformPostIds": {"facebook": "f-1"}},
            {"_id": bare, "status": "scheduled", "platformPostIds": None},
            {"_id": other, "status": "draft", "platformPostIds": {"facebook": "f-2"}},
        ]
    )
    at = now()
    update = {
        "$set": {"platformPostIds.website": "w-1", "publishedAt.website": at, "status": "published"},
        "$inc": {"__v": 1},
    }
    for _id, expected in ((with_ids, 1), (bare, 1), (other, 0)):
        shaped = guarded({"_id": _id, "status": "scheduled"}, update)
        assert shaped is not None
        assert db.posts.update_one(*shaped, hint=BY_ID).modified_count == expected
    assert db.posts.find_one({"_id": with_ids})["platformPostIds"] == {"facebook": "f-1", "website": "w-1"}
    done = db.posts.find_one({"_id": bare})
    assert done["platformPostIds"] == {"website": "w-1"} and done["__v"] == 1
    assert abs(done["publishedAt"]["website"] - at) < timedelta(milliseconds=1)
    assert db.posts.find_one({"_id": other}) == {
        "_id": other,
        "status": "draft",
        "platformPostIds": {"facebook": "f-2"},
    }


def test_a_field_named_twice_or_beside_its_parent_keeps_the_classic_form():
    _id = ObjectId()
    assert guarded({"_id": _id, "a": 1}, {"$set": {"b": 1}, "$unset": {"b": ""}}) is None
    assert guarded({"_id": _id, "a": 1}, {"$set": {"p": {}, "p.x": 1}}) is None
    assert guarded({"_id": _id, "a": 1}, {"$set": {"p.x.y": 1}}) is None
    assert guarded({"_id": _id, "a": 1}, {"$unset": {"p.x": ""}}) is None
