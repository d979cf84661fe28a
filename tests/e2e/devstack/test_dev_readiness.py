"""Readiness through the admin API of ``./scripts/dev``, with the key it prints (as an operator uses it).

A post two days ahead with a 70,000-character LinkedIn body shows ``body_too_long`` on
``GET /v1/posts/{id}/readiness`` (the stored verdict) within 10 s, and the edit clears it within
10 s; ``POST /v1/posts/validate`` checks a draft without storing it; a post after the demo
LinkedIn token's expiry, once the account has lost its refresh token, puts that account in
``GET /v1/accounts?atRisk=true`` and in ``mcmp_posts_at_risk``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from bson import ObjectId
from pymongo import MongoClient

from mcmp.devstack import wait_until
from mcmp.devstack.documents import scheduled_post
from tests.e2e.devstack.test_dev import DevRun

pytestmark = pytest.mark.e2e  # starts mcmp dev (through tests.e2e.devstack.test_dev.DevRun)


def _readiness(api: str, key: str, post_id: Any) -> dict[str, Any]:
    r = requests.get(f"{api}/v1/posts/{post_id}/readiness", headers={"X-API-Key": key}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_readiness_through_the_dev_stack_api_with_the_printed_key(tmp_path):
    run = DevRun(tmp_path, "dev")
    try:
        shown = run.wait_started()
        api, key = shown["api"], shown["key"]
        db = MongoClient(shown["mongodb"], tz_aware=True).get_default_database()
        client_id = str(db.clients.find_one({"slug": "demo"})["_id"])
        now = datetime.now(UTC)
        post = scheduled_post(
            client_id, ["linkedin"], now + timedelta(days=2), title="Long read", body="x" * 70_000
        )
        post_id = db.posts.insert_one({**post, "_id": ObjectId()}).inserted_id
        started = time.monotonic()

        def shown_stored(code: str | None) -> bool:
            found = _readiness(api, key, post_id)
            codes = [p["code"] for p in found["platforms"]["linkedin"]["problems"]]
            return found["source"] == "stored" and codes == ([code] if code else [])

        wait_until(lambda: shown_stored("body_too_long"), 30, 0.2, "body_too_long not stored")
        shown_after = time.monotonic() - started
        db.posts.update_one({"_id": post_id}, {"$set": {"body": "Short", "updatedAt": datetime.now(UTC)}})
        started = time.monotonic()
        wait_until(lambda: shown_stored(None), 30, 0.2, "the edit was not judged")
        cleared_after = time.monotonic() - started
        print(f"\nshown after {shown_after:.1f} s, cleared after {cleared_after:.1f} s")
        assert shown_after <= 10 and cleared_after <= 10

        draft = {
            "clientId": client_id,
            "title": "Teaser",
            "body": "Soon",
            "platforms": ["google-business"],
            "assetUrls": ["http://127.0.0.1:9/teaser.mp4"],
            "scheduleTime": (now + timedelta(days=1)).isoformat(),
        }
        headers = {"X-API-Key": key}
        checked = requests.post(f"{api}/v1/posts/validate", json=draft, headers=headers, timeout=30).json()
        assert [p["code"] for p in checked["platforms"]["google-business"]["problems"]] == [
            "media_kind_unsupported"
        ]
        draft["assetUrls"] = []
        assert (
            requests.post(f"{api}/v1/posts/validate", json=draft, headers=headers, timeout=30).json()["ok"]
            is True
        )
        assert db.posts.count_documents({"title": "Teaser"}) == 0

        # the demo LinkedIn account expires in 50 days; reconnected without offline access (no
        # refresh token, as the frontend writes it), a post after that is at risk
        db.integrationaccounts.update_one(
            {"clientId": client_id, "platform": "linkedin"},
            {"$unset": {"refreshToken": ""}, "$set": {"updatedAt": datetime.now(UTC)}},
        )
        late = scheduled_post(client_id, ["linkedin"], now + timedelta(days=60), title="Far", body="Later")
        late_id = db.posts.insert_one({**late, "_id": ObjectId()}).inserted_id
        risky = requests.get(
            f"{api}/v1/accounts", params={"atRisk": "true"}, headers=headers, timeout=10
        ).json()
        [account] = [a for a in risky["items"] if a["platform"] == "linkedin"]
        assert account["atRisk"]["reason"] == "no_refresh_token" and account["atRisk"]["firstPostId"] == str(
            late_id
        )
        metrics = requests.get(f"{api}/metrics", timeout=10).text
        assert 'mcmp_posts_at_risk{platform="linkedin",reason="no_refresh_token"} 1.0' in metrics
        wait_until(
            lambda: _readiness(api, key, late_id)["source"] == "stored",
            30,
            0.2,
            "the far post was not checked",
        )
        far = _readiness(api, key, late_id)["platforms"]["linkedin"]["problems"]
        assert [(p["code"], p.get("reason")) for p in far] == [
            ("token_expires_before_post", "no_refresh_token")
        ]
        assert run.stop() == 0
    finally:
        run.kill()
