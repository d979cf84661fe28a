"""Readiness on the real database and Redis: each problem's code, each fix clearing it, no loop.

Passes are run directly here (the Celery lane is exercised by tests/e2e/worker/test_readiness_e2e.py).
Every scenario is its own tenant, written the way Mongoose writes documents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from bson import ObjectId

from mcmp.worker.readiness.scan import Readiness

DAY = timedelta(days=1)
NOT_ROUTED = "http://127.0.0.1:9/clip.mp4"  # refused at once: kind from the extension, facts unknown


def _now() -> datetime:
    return datetime.now(UTC)


def _touch(db: Any, collection: str, _id: Any, **fields: Any) -> None:
    """A frontend edit: Mongoose's save() sets the fields and moves updatedAt."""
    db[collection].update_one({"_id": _id}, {"$set": {**fields, "updatedAt": _now()}})


def _verdict(db: Any, post: dict[str, Any]) -> dict[str, Any]:
    return db.posts.find_one({"_id": post["_id"]})["mcmpReadiness"]


def _codes(verdict: dict[str, Any], platform: str) -> list[str]:
    return [p["code"] for p in verdict["platforms"][platform]["problems"]]


@pytest.fixture
def readiness(env: dict[str, str]) -> Readiness:
    from mcmp.config import get_settings

    return Readiness(get_settings(), redis.Redis.from_url(env["MCMP_REDIS_URL"]))


@pytest.fixture
def scenarios(
    db: Any,
    make_client: Callable[..., dict[str, Any]],
    make_account: Callable[..., dict[str, Any]],
    make_post: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """(a)–(e) of the issue and a clean post, each a tenant of its own, two days ahead."""
    when = _now() + 2 * DAY
    linkedin = {
        "accessToken": "li-test-access",
        "refreshToken": "li-r",
        "externalAccountId": "urn:li:organization:1",
    }
    gbp = {
        "accessToken": "gbp-test-access",
        "refreshToken": "gbp-r",
        "externalAccountId": "accounts/1/locations/2",
    }
    made: dict[str, Any] = {"when": when}
    a = make_client()
    make_account(a, "linkedin", **linkedin)
    made["a"] = make_post(a, ["linkedin"], when, body="x" * 70_000)
    b = make_client()
    make_account(b, "google-business", **gbp)
    made["b"] = make_post(b, ["google-business"], when, assetUrls=[NOT_ROUTED])
    c = make_client()
    made["c_client"] = c
    made["c"] = make_post(c, ["facebook"], when)
    d = make_client()
    made["d_account"] = make_account(
        d, "google-business", **{**gbp, "refreshToken": None}, expiresAt=_now() + DAY
    )
    made["d"] = make_post(d, ["google-business"], when)
    e = make_client()
    campaign = {
        "_id": ObjectId(),
        "clientId": str(e["_id"]),
        "name": "Spring",
        "startDate": _now() - DAY,
        "endDate": _now() + DAY,
        "tags": [],
        "createdAt": _now(),
        "updatedAt": _now(),
        "__v": 0,
    }
    db.campaigns.insert_one(campaign)
    make_account(
        e,
        "website",
        accessToken="a-webhook-secret-of-32-bytes-len",
        metadata={"mode": "webhook", "webhookUrl": "http://127.0.0.1:9/h"},
    )
    made["e"] = make_post(e, ["website"], when, campaignId=str(campaign["_id"]))
    clean = make_client()
    make_account(clean, "linkedin", **linkedin)
    made["clean"] = make_post(clean, ["linkedin"], when)
    return made


def test_each_problem_shows_its_code_and_each_fix_clears_it(db, readiness, scenarios, make_account):
    stats = readiness.run()
    assert stats.checked == 6 and stats.written == 6
    s = scenarios
    assert _codes(_verdict(db, s["a"]), "linkedin") == ["body_too_long"]
    assert _codes(_verdict(db, s["b"]), "google-business") == ["media_kind_unsupported"]
    assert _codes(_verdict(db, s["c"]), "facebook") == ["account_missing"]
    d = _verdict(db, s["d"])["platforms"]["google-business"]["problems"]
    assert [(p["code"], p["reason"], p["field"]) for p in d] == [
        ("token_expires_before_post", "no_refresh_token", "account.expiresAt")
    ]
    assert _codes(_verdict(db, s["e"]), "website") == ["campaign_ended"]
    clean = _verdict(db, s["clean"])
    assert clean["ok"] is True and clean["platforms"]["linkedin"] == {"ok": True, "problems": []}
    for key in "abcde":
        assert _verdict(db, s[key])["ok"] is False, key

    # the fixes, as people make them
    _touch(db, "posts", s["a"]["_id"], body="A shorter text")
    _touch(db, "posts", s["b"]["_id"], assetUrls=[])
    make_account(s["c_client"], "facebook", accessToken="EAAB-test-page", externalAccountId="1000001")
    _touch(db, "integrationaccounts", s["d_account"]["_id"], expiresAt=_now() + 10 * DAY)
    _touch(db, "posts", s["e"]["_id"], scheduleTime=_now() + 12 * 3600 * timedelta(seconds=1))
    stats = readiness.run()
    assert stats.checked == 5
    for key in "abcde":
        assert _verdict(db, s[key])["ok"] is True, (key, _verdict(db, s[key]))


def test_writing_the_verdict_never_moves_updated_at_nor_checks_again(db, readiness, scenarios):
    readiness.run()
    before = {p["_id"]: (p["updatedAt"], p["mcmpReadiness"]["checkedAt"]) for p in db.posts.find()}
    for _ in range(3):
        stats = readiness.run()
        assert stats.checked == 0 and stats.marked == 0
    after = {p["_id"]: (p["updatedAt"], p["mcmpReadiness"]["checkedAt"]) for p in db.posts.find()}
    assert after == before


def test_a_post_edited_during_its_check_keeps_its_mark(db, readiness, scenarios, monkeypatch):
    from mcmp.worker.readiness import checks, scan

    post = scenarios["a"]
    real = checks.check

    def edited_meanwhile(doc: Any, *args: Any) -> Any:
        if doc["_id"] == post["_id"]:
            _touch(db, "posts", post["_id"], body="edited while it was being checked")
        return real(doc, *args)

    monkeypatch.setattr(checks, "check", edited_meanwhile)
    readiness.run()
    assert "mcmpReadiness" not in db.posts.find_one({"_id": post["_id"]})  # a stale verdict is not written
    assert readiness.redis.zscore(scan.pending_key(post["clientId"]), str(post["_id"])) is not None
    monkeypatch.setattr(checks, "check", real)
    readiness.run()
    fresh = db.posts.find_one({"_id": post["_id"]})
    assert fresh["mcmpReadiness"]["postUpdatedAt"] == fresh["updatedAt"]
    assert fresh["mcmpReadiness"]["ok"] is True


def test_lead_time_check_sees_what_nobody_wrote(
    db, readiness, make_client, make_account, make_post, monkeypatch
):
    from mcmp.config import get_settings, reset_settings

    client = make_client()
    account = make_account(client, "linkedin", accessToken="a", externalAccountId="urn:li:organization:1")
    post = make_post(client, ["linkedin"], _now() + timedelta(minutes=30))
    readiness.run()
    assert _verdict(db, post)["ok"] is True
    # the token's expiry moves without updatedAt (no writer said so): only the lead-time check sees it
    db.integrationaccounts.update_one(
        {"_id": account["_id"]}, {"$set": {"expiresAt": _now() + timedelta(minutes=5)}}
    )
    monkeypatch.setenv("MCMP_READINESS_LEAD_SECONDS", "3600")
    reset_settings()
    readiness.settings = get_settings()
    readiness.redis.set("mcmp:readiness:lead", (_now() + timedelta(minutes=10)).isoformat())
    stats = readiness.run()
    assert stats.checked == 1
    assert _codes(_verdict(db, post), "linkedin") == ["token_expires_before_post"]


def test_account_at_risk_names_the_first_post_and_logs_once_a_day(db, readiness, scenarios, caplog):
    from mcmp.worker import services

    caplog.set_level(logging.WARNING, logger="mcmp.worker.readiness.risk")
    readiness.run()
    risky = services.accounts_at_risk({})
    assert [(r["accountId"], r["reason"], r["firstPostId"], r["posts"]) for r in risky] == [
        (str(scenarios["d_account"]["_id"]), "no_refresh_token", str(scenarios["d"]["_id"]), 1)
    ]
    assert services.posts_at_risk() == {("google-business", "no_refresh_token"): 1}
    lines = [r for r in caplog.records if getattr(r, "event", None) == "account_at_risk"]
    assert len(lines) == 1 and str(scenarios["d_account"]["_id"]) in lines[0].getMessage()
    _touch(db, "posts", scenarios["d"]["_id"], title="again")
    readiness.run()
    assert len([r for r in caplog.records if getattr(r, "event", None) == "account_at_risk"]) == 1


def test_refused_refresh_and_revoked_grant_are_at_risk_until_reconnected(
    db, make_client, make_account, make_post
):
    from mcmp.worker import services

    client = make_client()
    when = _now() + 3 * DAY
    refused = make_account(
        client,
        "linkedin",
        accessToken="a",
        refreshToken="r",
        externalAccountId="urn:li:organization:1",
        expiresAt=_now() + DAY,
    )
    at = _now()
    db.integrationaccounts.update_one(
        {"_id": refused["_id"]},
        {"$set": {"metadata.refreshError": "invalid_client", "metadata.refreshErrorAt": at, "updatedAt": at}},
    )
    other = make_client()
    make_account(other, "facebook", accessToken="a", status="expired", metadata={"authError": "Graph 190"})
    make_post(client, ["linkedin"], when)
    make_post(other, ["facebook"], when)
    reasons = {r["reason"] for r in services.accounts_at_risk({})}
    assert reasons == {"refresh_failed", "grant_revoked"}
    services.store_token(str(refused["_id"]), {}, "new-token", expires_at=_now() + 30 * DAY)
    assert {r["reason"] for r in services.accounts_at_risk({})} == {"grant_revoked"}


def test_one_tenants_thousand_changes_do_not_hold_back_another(
    db, readiness, make_client, make_account, make_post
):
    from mcmp.worker.readiness import scan

    busy, quiet = make_client(), make_client()
    for client in (busy, quiet):
        make_account(
            client,
            "website",
            accessToken="a-webhook-secret-of-32-bytes-len",
            metadata={"mode": "webhook", "webhookUrl": "http://127.0.0.1:9/h"},
        )
    when = _now() + 2 * DAY
    from mcmp.devstack.documents import scheduled_post

    db.posts.insert_many(
        [
            scheduled_post(
                str(busy["_id"]),
                ["website"],
                when,
                title="t",
                body=f"b{i}",
                _id=ObjectId(),
            )
            for i in range(1000)
        ]
    )
    lone = make_post(quiet, ["website"], when)
    stats = readiness.run()
    share = readiness.settings.readiness_tenant_share
    assert _verdict(db, lone)["ok"] is True  # checked in the same pass as the busy tenant's first share
    assert stats.checked == share + 1
    assert readiness.redis.zcard(scan.pending_key(str(busy["_id"]))) == 1000 - share
    while readiness.run().checked:
        pass
    assert db.posts.count_documents({"clientId": str(busy["_id"]), "mcmpReadiness.ok": True}) == 1000


def test_media_facts_are_fetched_once_per_url_through_the_guarded_fetcher(
    db, readiness, make_client, make_account, make_post
):
    from mcmp.worker.publishing.media_checks import clear_probe_cache
    from tests.hostile_media import JPEG, HostileServer, Route

    clear_probe_cache()
    server = HostileServer()
    try:
        url = server.add("/same.jpg", Route("serve", "image/jpeg", JPEG))
        client = make_client()
        make_account(
            client, "linkedin", accessToken="a", refreshToken="r", externalAccountId="urn:li:organization:1"
        )
        posts = [make_post(client, ["linkedin"], _now() + 2 * DAY, assetUrls=[url]) for _ in range(5)]
        readiness.run()
        assert all(_verdict(db, p)["ok"] is True for p in posts)
        assert [(method, path) for method, path, _ in server.requests] == [("HEAD", "/same.jpg")]
        # a URL inside our own network is refused before connecting (only loopback is allowed in tests)
        private = make_post(client, ["linkedin"], _now() + 2 * DAY, assetUrls=["http://10.255.255.1/x.jpg"])
        readiness.run()
        assert _verdict(db, private)["ok"] is True  # unknown facts never refuse: the platform decides
    finally:
        server.stop()


def test_a_platform_without_account_still_shows_what_its_content_would_meet(
    db, readiness, make_client, make_post
):
    client = make_client()
    post = make_post(client, ["google-business"], _now() + 2 * DAY, assetUrls=[NOT_ROUTED])
    readiness.run()
    assert _codes(_verdict(db, post), "google-business") == ["account_missing", "media_kind_unsupported"]


def test_a_queued_post_is_checked_at_its_next_window_minute(
    db, readiness, make_client, make_account, make_post
):
    client = make_client(
        timezone="Mars/Base", defaultPostingWindows=[{"dayOfWeek": 1, "start": "09:00", "end": "10:00"}]
    )
    make_account(
        client,
        "website",
        accessToken="a-webhook-secret-of-32-bytes-len",
        metadata={"mode": "webhook", "webhookUrl": "http://127.0.0.1:9/h"},
    )
    post = make_post(client, ["website"], None, status="approved", queue=True)
    db.posts.update_one({"_id": post["_id"]}, {"$unset": {"scheduleTime": ""}})
    readiness.run()
    [found] = _verdict(db, post)["platforms"]["website"]["problems"]
    assert found["code"] == "posting_window_invalid" and "Mars/Base" in found["message"]
    _touch(db, "clients", client["_id"], timezone="Europe/Paris")
    readiness.run()
    verdict = _verdict(db, post)
    assert verdict["ok"] is True and verdict["scheduleTime"].astimezone(UTC) > _now()
