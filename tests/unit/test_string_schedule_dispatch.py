"""The dispatcher with string scheduleTimes: parsed beside the post, due at that instant, the
string itself never rewritten, an edit followed, an offset-less string failed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from mcmp.config import get_settings
from mcmp.models.schedule import SCHEDULE_AT, SCHEDULE_FROM
from mcmp.worker.scheduling.dispatcher import Dispatcher


def dispatcher() -> tuple[Dispatcher, list[Any]]:
    sent: list[Any] = []
    return Dispatcher(get_settings(), send_task=lambda *a, **k: sent.append(k), queue_depth=lambda: 0), sent


def test_a_string_time_is_due_at_its_instant_and_stays_as_written(db, make_client, make_post):
    client = make_client()
    due = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
    text = "2031-03-01T13:00:00+01:00"
    post = make_post(client, ["website"], when=text)
    d, _ = dispatcher()

    assert d.derive_schedule_times(full=True) == 1
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored["scheduleTime"] == text and stored[SCHEDULE_FROM] == text
    assert stored[SCHEDULE_AT].replace(tzinfo=UTC) == due
    assert d.derive_schedule_times(full=True) == 0, "a current instant costs no write"

    assert d.expand_due_posts(due - timedelta(seconds=1))[0] == 0, "not a second early"
    assert d.expand_due_posts(due)[0] == 1
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored["scheduleTime"] == text
    assert SCHEDULE_AT not in stored, "an expanded post leaves the index of string times"
    delivery = db.deliveries.find_one({"postId": str(post["_id"])})
    assert delivery["dueAt"].replace(tzinfo=UTC) == due


def test_z_form_and_a_date_post_expand_together_in_due_order(db, make_client, make_post):
    client = make_client()
    base = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
    as_z = make_post(client, ["website"], when="2031-03-01T12:00:01.000Z")
    as_date = make_post(client, ["website"], when=base)
    d, _ = dispatcher()
    d.derive_schedule_times(full=True)
    assert d.expand_due_posts(base + timedelta(seconds=5))[0] == 2
    due = {r["postId"]: r["dueAt"].replace(tzinfo=UTC) for r in db.deliveries.find()}
    assert due == {str(as_z["_id"]): base + timedelta(seconds=1), str(as_date["_id"]): base}


def test_an_edited_string_is_parsed_again(db, make_client, make_post):
    client = make_client()
    post = make_post(client, ["website"], when="2031-03-01T12:00:00Z")
    d, _ = dispatcher()
    d.derive_schedule_times(full=True)
    # the frontend moves it a day later: the old instant must not publish it
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"scheduleTime": "2031-03-02T12:00:00Z"}})
    assert d.expand_due_posts(datetime(2031, 3, 1, 12, 0, 5, tzinfo=UTC))[0] == 0
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored[SCHEDULE_AT].replace(tzinfo=UTC) == datetime(2031, 3, 2, 12, 0, tzinfo=UTC)
    # and earlier again: the next pass follows
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"scheduleTime": "2031-03-01T06:00:00-05:00"}})
    assert d.derive_schedule_times(full=True) == 1
    assert d.expand_due_posts(datetime(2031, 3, 1, 11, 0, 0, tzinfo=UTC))[0] == 1
    assert db.posts.find_one({"_id": post["_id"]})["scheduleTime"] == "2031-03-01T06:00:00-05:00"


def test_an_offset_less_or_garbage_string_fails_the_post_naming_scheduletime(db, make_client, make_post):
    client = make_client()
    naive = make_post(client, ["website"], when="2031-03-01T12:00:00")
    garbage = make_post(client, ["website"], when="soon")
    d, _ = dispatcher()
    d.derive_schedule_times(full=True)
    naive_doc, garbage_doc = (db.posts.find_one({"_id": p["_id"]}) for p in (naive, garbage))
    assert naive_doc["status"] == "failed" and garbage_doc["status"] == "failed"
    assert naive_doc["lastError"].startswith("scheduleTime: '2031-03-01T12:00:00' has no UTC offset")
    assert garbage_doc["lastError"].startswith("scheduleTime: 'soon' is not an ISO 8601 date-time")
    assert naive_doc["scheduleTime"] == "2031-03-01T12:00:00"
    assert db.deliveries.count_documents({}) == 0


def test_a_string_post_moved_out_of_scheduled_leaves_the_index(db, make_client, make_post):
    client = make_client()
    post = make_post(client, ["website"], when="2031-03-01T12:00:00Z")
    d, _ = dispatcher()
    d.derive_schedule_times(full=True)
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"status": "draft"}})
    assert d.expand_due_posts(datetime(2031, 3, 1, 13, 0, tzinfo=UTC))[0] == 0
    assert SCHEDULE_AT not in db.posts.find_one({"_id": post["_id"]})


def test_a_pass_reads_only_strings_that_can_fall_due_soon(db, make_client, make_post):
    client = make_client()
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    near = make_post(client, ["website"], when=soon.astimezone(timezone(timedelta(hours=14))).isoformat())
    far = make_post(client, ["website"], when="2031-03-01T12:00:00Z")
    d, _ = dispatcher()
    d.string_times.last_sweep = time.monotonic()  # the full sweep ran just now
    assert d.derive_schedule_times() == 1, "only the string that can fall due within hours"
    assert SCHEDULE_AT in db.posts.find_one({"_id": near["_id"]})
    assert SCHEDULE_AT not in db.posts.find_one({"_id": far["_id"]})
    assert d.derive_schedule_times(full=True) == 1  # the periodic sweep reaches the far one
    assert SCHEDULE_AT in db.posts.find_one({"_id": far["_id"]})
