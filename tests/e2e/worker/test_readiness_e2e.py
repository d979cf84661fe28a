"""Readiness end to end: simulators, a dispatcher, a publishing worker, a readiness worker and beat.

Posts two days ahead with (a) a 70,000-character LinkedIn body, (b) a video for Google Business,
(c) a platform with no account, (d) a Google Business token expiring tomorrow without a refresh
token, (e) a post after its campaign ends — each shows its code in ``mcmpReadiness`` within
10 s of the write; each fix (as people make it) clears it within 10 s; a clean post is ok.
Nothing reaches any simulator: readiness never publishes, refreshes or calls a platform.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from mcmp.devstack import wait_until
from tests.conftest import MCMP

DAY = timedelta(days=1)
WITHIN = 10.0


def _now() -> datetime:
    return datetime.now(UTC)


def _problems(db: Any, post_id: Any) -> dict[str, list[str]] | None:
    found = (db.posts.find_one({"_id": post_id}) or {}).get("mcmpReadiness")
    if not found:
        return None
    return {p: [x["code"] for x in v["problems"]] for p, v in found["platforms"].items()}


def _seconds_until(condition: Any, what: str) -> float:
    started = time.monotonic()
    wait_until(condition, 30, 0.1, what)
    return time.monotonic() - started


@pytest.mark.platforms("linkedin", "google-business", "facebook", "website")
def test_each_problem_is_shown_ahead_and_each_fix_clears_it(
    platform_lab, procs, start_worker, start_dispatcher, make_client, make_account, make_post, db, tmp_path
):
    lab = platform_lab
    env = lab.env
    start_dispatcher(env)
    start_worker(env)  # publishing (publish, analytics, maintenance)
    start_worker(env, concurrency=1, pool="threads", name="readiness", queues="readiness")
    procs("beat", [*MCMP, "beat"], dict(env, MCMP_STATE_DIR=str(tmp_path)))
    when = _now() + 2 * DAY

    def tenant(platform: str | None, **account: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        client = make_client()
        made = None
        if platform is not None:
            made = make_account(client, platform, **{**lab.account_fields(platform, client), **account})
        return client, made

    a, _ = tenant("linkedin")
    b, _ = tenant("google-business")
    c, _ = tenant(None)
    d, d_account = tenant("google-business", refreshToken=None, expiresAt=_now() + DAY)
    e, _ = tenant("website")
    campaign = {
        "_id": ObjectId(),
        "clientId": str(e["_id"]),
        "name": "Autumn sale",
        "startDate": _now() - DAY,
        "endDate": _now() + DAY,
        "tags": [],
        "createdAt": _now(),
        "updatedAt": _now(),
        "__v": 0,
    }
    db.campaigns.insert_one(campaign)
    ok_client, _ = tenant("linkedin")
    expected = {
        "a": ("linkedin", "body_too_long"),
        "b": ("google-business", "media_kind_unsupported"),
        "c": ("facebook", "account_missing"),
        "d": ("google-business", "token_expires_before_post"),
        "e": ("website", "campaign_ended"),
    }
    shown: dict[str, float] = {}
    posts = {}
    for key, client, fields in (
        ("a", a, {"body": "x" * 70_000}),
        ("b", b, {"assetUrls": ["http://127.0.0.1:9/teaser.mp4"]}),
        ("c", c, {}),
        ("d", d, {}),
        ("e", e, {"campaignId": str(campaign["_id"])}),
    ):
        platform, code = expected[key]
        posts[key] = make_post(client, [platform], when, **fields)
        post_id = posts[key]["_id"]
        shown[key] = _seconds_until(
            lambda post_id=post_id, platform=platform, code=code: (
                (_problems(db, post_id) or {}).get(platform) == [code]
            ),
            f"{key}: {code} not shown",
        )
    clean = make_post(ok_client, ["linkedin"], when)
    wait_until(
        lambda: (db.posts.find_one({"_id": clean["_id"]}).get("mcmpReadiness") or {}).get("ok") is True,
        30,
        0.1,
    )

    def edit(post: dict[str, Any], **fields: Any) -> None:
        db.posts.update_one({"_id": post["_id"]}, {"$set": {**fields, "updatedAt": _now()}})

    cleared: dict[str, float] = {}
    fixes = {
        "a": lambda: edit(posts["a"], body="A short launch note"),
        "b": lambda: edit(posts["b"], assetUrls=[]),
        "c": lambda: make_account(c, "facebook", **lab.account_fields("facebook", c)),
        "d": lambda: db.integrationaccounts.update_one(
            {"_id": d_account["_id"]},
            {
                "$set": {
                    "refreshToken": "gbp-test-refresh-1",
                    "accessToken": "gbp-test-access",
                    "updatedAt": _now(),
                }
            },
        ),
        "e": lambda: edit(posts["e"], scheduleTime=_now() + timedelta(hours=12)),
    }
    for key, fix in fixes.items():
        fix()
        post_id = posts[key]["_id"]
        cleared[key] = _seconds_until(
            lambda post_id=post_id: (
                (db.posts.find_one({"_id": post_id}).get("mcmpReadiness") or {}).get("ok") is True
            ),
            f"{key}: fix not seen",
        )
    print(f"\nshown after (s): {shown}\ncleared after (s): {cleared}")
    assert max(shown.values()) <= WITHIN and max(cleared.values()) <= WITHIN
    # nothing reached any platform before the due time: no publish, no token refresh, no call at all
    for platform, sim in lab.sims.items():
        assert sim.requests_log() == [], platform
    assert db.deliveries.count_documents({}) == 0
    for post in posts.values():
        assert db.posts.find_one({"_id": post["_id"]})["status"] == "scheduled"


@pytest.mark.platforms("website")
def test_a_busy_readiness_lane_never_delays_a_due_post(
    platform_lab, procs, start_worker, start_dispatcher, make_client, make_account, make_post, db, tmp_path
):
    """Thousands of posts to re-check (a client edited) while another tenant's posts fall due."""
    from mcmp.devstack.documents import scheduled_post

    lab = platform_lab
    env = lab.env
    start_dispatcher(env)
    start_worker(env)
    start_worker(env, concurrency=1, pool="threads", name="readiness", queues="readiness")
    procs("beat", [*MCMP, "beat"], dict(env, MCMP_STATE_DIR=str(tmp_path)))
    busy = make_client()
    make_account(busy, "website", **lab.account_fields("website", busy))
    later = _now() + 2 * DAY
    db.posts.insert_many(
        [
            scheduled_post(str(busy["_id"]), ["website"], later, title="t", body=f"b{i}", _id=ObjectId())
            for i in range(3000)
        ]
    )
    wait_until(
        lambda: db.posts.count_documents({"mcmpReadiness.ok": True}) > 0, 30, 0.2, "readiness not running"
    )
    db.clients.update_one(
        {"_id": busy["_id"]}, {"$set": {"name": "Renamed", "updatedAt": _now()}}
    )  # all 3000 again
    quiet = make_client()
    make_account(quiet, "website", **lab.account_fields("website", quiet))
    due = [make_post(quiet, ["website"], _now() + timedelta(seconds=4 + i * 0.5)) for i in range(10)]
    wait_until(
        lambda: (
            db.posts.count_documents({"_id": {"$in": [p["_id"] for p in due]}, "status": "published"}) == 10
        ),
        60,
        0.2,
    )
    received = {p["postId"]: p["receivedAt"] for p in lab.sims["website"].state()["posts"]}
    late = [received[str(p["_id"])] - p["scheduleTime"].timestamp() for p in due]
    checked_meanwhile = db.posts.count_documents(
        {"clientId": str(busy["_id"]), "mcmpReadiness.checkedAt": {"$gt": due[0]["scheduleTime"]}}
    )
    print(
        f"\nlateness of the due posts (s): max {max(late):.3f}; busy tenant's posts re-checked meanwhile: {checked_meanwhile}"
    )
    assert min(late) >= 0 and max(late) < 2.0
    assert checked_meanwhile > 0  # readiness was at work while they were published
