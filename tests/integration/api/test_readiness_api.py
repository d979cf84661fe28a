"""Readiness through the admin API (in-process, real database): a post's verdict, a draft checked
without storing anything, accounts at risk, the gauge; each scoped to the key's tenants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from tests.integration.api.conftest import headers

DAY = timedelta(days=1)


def _now() -> datetime:
    return datetime.now(UTC)


def test_post_readiness_stored_then_computed_after_an_edit(
    env, api, db, make_key, make_client, make_account, make_post
):
    from mcmp.config import get_settings
    from mcmp.worker.readiness.scan import Readiness

    client = make_client()
    make_account(
        client, "linkedin", accessToken="a", refreshToken="r", externalAccountId="urn:li:organization:1"
    )
    post = make_post(client, ["linkedin"], _now() + 2 * DAY, body="y" * 5000)
    Readiness(get_settings(), redis.Redis.from_url(env["MCMP_REDIS_URL"])).run()
    key = make_key(str(client["_id"]))
    r = api.get(f"/v1/posts/{post['_id']}/readiness", headers=headers(key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "stored" and body["watched"] is True and body["ok"] is False
    [problem] = body["platforms"]["linkedin"]["problems"]
    assert problem["code"] == "body_too_long" and problem["field"] == "body" and "3000" in problem["message"]
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"body": "short", "updatedAt": _now()}})
    again = api.get(f"/v1/posts/{str(post['_id']).upper()}/readiness", headers=headers(key)).json()
    assert again["source"] == "computed" and again["ok"] is True
    assert db.posts.find_one({"_id": post["_id"]})["mcmpReadiness"]["ok"] is False  # a GET stores nothing
    other = make_key(str(make_client()["_id"]), name="other")
    assert api.get(f"/v1/posts/{post['_id']}/readiness", headers=headers(other)).status_code == 404


def test_validate_checks_a_draft_and_stores_nothing(api, db, make_key, make_client, make_account):
    client = make_client()
    make_account(
        client,
        "google-business",
        accessToken="g",
        refreshToken="r",
        externalAccountId="accounts/1/locations/2",
    )
    key = make_key(str(client["_id"]))
    posts_before = db.posts.count_documents({})
    draft = {
        "clientId": str(client["_id"]),
        "title": "Launch",
        "body": "Come and see",
        "platforms": ["google-business", "linkedin"],
        "assetUrls": ["http://127.0.0.1:9/launch.mp4"],
        "scheduleTime": (_now() + DAY).isoformat(),
    }
    r = api.post("/v1/posts/validate", json=draft, headers=headers(key))
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert verdict["ok"] is False
    assert [p["code"] for p in verdict["platforms"]["google-business"]["problems"]] == [
        "media_kind_unsupported"
    ]
    assert [p["code"] for p in verdict["platforms"]["linkedin"]["problems"]] == ["account_missing"]
    fixed = {**draft, "assetUrls": [], "platforms": ["google-business"]}
    assert api.post("/v1/posts/validate", json=fixed, headers=headers(key)).json()["ok"] is True
    assert db.posts.count_documents({}) == posts_before
    stranger = make_key(str(make_client()["_id"]), name="stranger")
    assert api.post("/v1/posts/validate", json=draft, headers=headers(stranger)).status_code == 404
    missing = api.post("/v1/posts/validate", json={"title": "no client"}, headers=headers(key))
    assert missing.status_code == 422 and "clientId" in missing.text


def test_accounts_at_risk_listed_with_their_first_failing_post(
    api, make_key, make_client, make_account, make_post
):
    client = make_client()
    expiring = make_account(
        client, "linkedin", accessToken="a", externalAccountId="urn:li:organization:1", expiresAt=_now() + DAY
    )
    make_account(client, "google-business", accessToken="g", refreshToken="r", expiresAt=_now() + DAY)
    first = make_post(client, ["linkedin", "google-business"], _now() + 2 * DAY)
    make_post(client, ["linkedin"], _now() + 3 * DAY)
    make_post(client, ["linkedin"], _now() + timedelta(hours=2))  # before the expiry: fine
    key = make_key(str(client["_id"]))
    everyone = api.get("/v1/accounts", headers=headers(key)).json()["items"]
    assert len(everyone) == 2 and all(a["atRisk"] is None for a in everyone)
    r = api.get("/v1/accounts", params={"atRisk": "true"}, headers=headers(key))
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["id"] == str(expiring["_id"]) and item["hasRefreshToken"] is False
    risk: dict[str, Any] = item["atRisk"]
    assert (
        risk["reason"] == "no_refresh_token"
        and risk["firstPostId"] == str(first["_id"])
        and risk["posts"] == 2
    )
    assert datetime.fromisoformat(risk["firstPostAt"]) == first["scheduleTime"].replace(
        microsecond=first["scheduleTime"].microsecond // 1000 * 1000
    )
    other = make_key(str(make_client()["_id"]), name="other")
    assert api.get("/v1/accounts", params={"atRisk": "true"}, headers=headers(other)).json()["items"] == []
    metrics = api.get("/metrics").text
    assert 'mcmp_posts_at_risk{platform="linkedin",reason="no_refresh_token"} 2.0' in metrics


def test_readiness_routes_are_in_the_openapi_schema(app):
    paths = app.openapi()["paths"]
    assert "get" in paths["/v1/posts/{post_id}/readiness"]
    assert "post" in paths["/v1/posts/validate"]
    assert any(p["name"] == "atRisk" for p in paths["/v1/accounts"]["get"]["parameters"])
