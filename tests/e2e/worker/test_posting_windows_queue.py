"""The posting-window queue against the real database: status change, history, errors on the
post, slot uniqueness under concurrent workers, the ``queue: true`` sweep, and publishing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcmp.devstack import wait_until
from mcmp.worker.scheduling.posting_windows import (
    PostingWindowError,
    PostNotQueueable,
    queue_flagged_posts,
    queue_post,
    release_slots,
)
from tests import ROOT

PARIS_TUESDAY = [{"_id": "w1", "dayOfWeek": 2, "start": "09:00", "end": "17:00"}]
MONDAY = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)  # the Tuesday after is 2026-03-31 (CEST)
ALWAYS = [{"dayOfWeek": d, "start": "00:00", "end": "24:00"} for d in range(7)]


@pytest.fixture
def approved(make_post: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def make(client: dict[str, Any], platforms: list[str], **fields: Any) -> dict[str, Any]:
        fields = {"status": "approved", "statusHistory": [], **fields}
        post = make_post(client, platforms, **fields)
        from mcmp.models import Post

        Post._get_collection().update_one({"_id": post["_id"]}, {"$unset": {"scheduleTime": ""}})
        return post

    return make


def test_an_approved_post_gets_the_next_slot_and_becomes_scheduled(db, make_client, approved) -> None:
    client = make_client(timezone="Europe/Paris", defaultPostingWindows=PARIS_TUESDAY)
    post = approved(client, ["linkedin"])
    when = queue_post(str(post["_id"]), by_user_id="u-admin", now=MONDAY)
    assert when == datetime(2026, 3, 31, 7, 0, tzinfo=UTC)  # 09:00 CEST
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored["status"] == "scheduled" and stored["scheduleTime"] == when
    entry = stored["statusHistory"][-1]
    assert (entry["fromStatus"], entry["toStatus"], entry["byUserId"]) == ("approved", "scheduled", "u-admin")
    assert entry["note"].startswith("queued into Tue 09:00–17:00 Europe/Paris window: 2026-03-31 09:00 CEST")
    assert db.postingslots.count_documents({"postId": str(post["_id"])}) == 1
    # A retried API call returns the same time instead of failing.
    assert queue_post(str(post["_id"]), now=MONDAY + timedelta(hours=1)) == when


def test_posts_of_one_client_and_platform_never_share_a_minute(db, make_client, approved) -> None:
    client = make_client(timezone="Asia/Kolkata", defaultPostingWindows=PARIS_TUESDAY)
    other = make_client(timezone="Asia/Kolkata", defaultPostingWindows=PARIS_TUESDAY)
    first = queue_post(str(approved(client, ["linkedin"])["_id"]), now=MONDAY)
    second = queue_post(str(approved(client, ["linkedin"])["_id"]), now=MONDAY)
    both = queue_post(str(approved(client, ["linkedin", "google-business"])["_id"]), now=MONDAY)
    gbp = queue_post(str(approved(client, ["google-business"])["_id"]), now=MONDAY)
    elsewhere = queue_post(str(approved(other, ["linkedin"])["_id"]), now=MONDAY)
    assert first == datetime(2026, 3, 31, 3, 30, tzinfo=UTC)  # 09:00 IST
    assert second == first + timedelta(minutes=1)
    assert both == first + timedelta(minutes=2)  # free on both platforms
    assert gbp == first  # another platform may use the same minute
    assert elsewhere == first  # and so may another client


def test_invalid_configuration_is_recorded_on_the_post_not_a_crash(db, make_client, approved) -> None:
    client = make_client(timezone="Mars/Base", defaultPostingWindows=PARIS_TUESDAY)
    post = approved(client, ["linkedin"], queue=True)
    with pytest.raises(PostingWindowError, match="client.timezone: unknown time zone 'Mars/Base'"):
        queue_post(str(post["_id"]), now=MONDAY)
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored["status"] == "approved" and stored.get("scheduleTime") is None
    assert stored["lastError"] == "client.timezone: unknown time zone 'Mars/Base'"
    # The sweep leaves it alone for a while, then picks it up once the client is fixed.
    assert queue_flagged_posts(now=MONDAY) == 0
    db.clients.update_one({"_id": client["_id"]}, {"$set": {"timezone": "Europe/Paris"}})
    assert queue_flagged_posts(now=MONDAY + timedelta(minutes=1)) == 0
    assert queue_flagged_posts(now=MONDAY + timedelta(minutes=6)) == 1
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored["status"] == "scheduled" and "lastError" not in stored

    broken = make_client(defaultPostingWindows=[{"dayOfWeek": 1, "start": "18:00", "end": "09:00"}])
    post = approved(broken, ["linkedin"])
    with pytest.raises(PostingWindowError):
        queue_post(str(post["_id"]), now=MONDAY)
    assert (
        "defaultPostingWindows[0]: end 09:00 must be after start 18:00"
        in (db.posts.find_one({"_id": post["_id"]})["lastError"])
    )


def test_only_approved_posts_without_a_time_are_queued(db, make_client, make_post, approved) -> None:
    client = make_client(defaultPostingWindows=ALWAYS)
    scheduled = make_post(client, ["linkedin"])
    with pytest.raises(PostNotQueueable, match="this one is 'scheduled' with a scheduleTime"):
        queue_post(str(scheduled["_id"]))
    draft = approved(client, ["linkedin"], status="draft")
    with pytest.raises(PostNotQueueable, match="'draft'"):
        queue_post(str(draft["_id"]))
    with pytest.raises(PostNotQueueable, match="platforms: no platform selected"):
        queue_post(str(approved(client, [])["_id"]))
    with pytest.raises(PostNotQueueable, match="not a post id"):
        queue_post("nope")


def test_release_slots_frees_the_minute(db, make_client, approved) -> None:
    client = make_client(timezone="Europe/Paris", defaultPostingWindows=PARIS_TUESDAY)
    post = approved(client, ["linkedin"])
    first = queue_post(str(post["_id"]), now=MONDAY)
    assert release_slots(str(post["_id"])) == 1
    assert queue_post(str(approved(client, ["linkedin"])["_id"]), now=MONDAY) == first


_WORKER = """
import json, sys
from datetime import datetime
from mcmp.models.db import connect
from mcmp.worker.scheduling.posting_windows import queue_post
connect(sys.argv[1])
now = datetime.fromisoformat(sys.argv[2])
print(json.dumps([queue_post(p, now=now).isoformat() for p in json.loads(sys.argv[3])]))
"""


def test_concurrent_workers_never_book_one_minute_twice(env, db, make_client, approved) -> None:
    client = make_client(timezone="Europe/Paris", defaultPostingWindows=PARIS_TUESDAY)
    posts = [str(approved(client, ["linkedin", "website"])["_id"]) for _ in range(24)]
    batches = [posts[i::4] for i in range(4)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, env["MCMP_MONGODB_URI"], MONDAY.isoformat(), json.dumps(b)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for b in batches
    ]
    times: list[str] = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-2000:]
        times += json.loads(out)
    assert len(times) == len(set(times)) == 24
    stored = list(db.posts.find())
    assert sorted(p["scheduleTime"].isoformat() for p in stored) == sorted(times)
    assert db.postingslots.count_documents({}) == 48  # one per platform, none orphaned
    first = datetime(2026, 3, 31, 7, 0, tzinfo=UTC)
    assert sorted(times) == [(first + timedelta(minutes=i)).isoformat() for i in range(24)]


def test_a_queued_post_is_published_by_the_pipeline(
    env, db, make_client, make_webhook_account, webhook_sim, approved, start_worker, start_dispatcher
) -> None:
    client = make_client(timezone="Asia/Kolkata", defaultPostingWindows=ALWAYS)
    make_webhook_account(client)
    post = approved(client, ["website"], queue=True)
    start_worker(env)
    start_dispatcher(env)
    # "now" a little in the past, so the slot is already due and the test need not wait a minute.
    assert queue_flagged_posts(now=datetime.now(UTC) - timedelta(minutes=2)) == 1
    wait_until(lambda: db.posts.find_one({"_id": post["_id"]})["status"] == "published", 60)
    history = db.posts.find_one({"_id": post["_id"]})["statusHistory"]
    assert [(h["fromStatus"], h["toStatus"]) for h in history] == [
        ("approved", "scheduled"),
        ("scheduled", "published"),
    ]
    assert "Asia/Kolkata window" in history[0]["note"]
