"""A token the platform definitely rejects ends the same way on every platform — real worker,
dispatcher and simulators.

One scenario for all platforms (one worker, one dispatcher, posts in parallel): each account's
credential is revoked through its simulator's ``/_sim`` control API, a post is due for each,
and then each account is reconnected the way the frontend does it. What a user must see, per
platform: the account ``expired`` with the platform's reason, the delivery waiting for
re-authorisation with no attempt spent and nothing published, one clear log line, and after
the reconnect the post published exactly once.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from bson import ObjectId

from mcmp.devstack import Proc, SimClient, scheduled_post, spawn, start_simulator, wait_until
from tests import ROOT
from tests.conftest import fresh_env
from tests.integration.worker.test_assets import JPEG, MediaServer

WP_USER = "auth-e2e"
# Every credential the scenario uses: none may appear in a reason or a log line.
SECRETS = (
    "EAAB-auth-",
    "li-test-auth-",
    "li-test-refresh-auth-",
    "gbp-test-auth-",
    "gbp-test-refresh-auth-",
    "auth-old-webhook-secret",
    "auth-new-webhook-secret",
    "wp-old-app-password",
    "wp-new-app-password",
)


@dataclass
class Case:
    """One platform's account: how its credential is revoked, then reconnected."""

    name: str  # the test id (two website variants)
    platform: str
    sim: str  # simulator entry point
    fields: Callable[[str, dict[str, Any]], dict[str, Any]]  # account fields from (sim url, client)
    revoke: Callable[[str], None]  # revoke through the simulator's control API
    new_token: str  # what the reconnect writes
    reconnect_sim: Callable[[str], None] = lambda url: None  # the platform side of a reconnect
    expect_reason: str = ""  # the platform's words in authError
    no_refresh: bool = False  # no token endpoint should have been called
    with_image: bool = False
    # filled in by the scenario
    account_id: Any = None
    post_id: Any = None
    parked: dict[str, Any] = field(default_factory=dict)
    done: dict[str, Any] = field(default_factory=dict)


def _post(url: str, path: str, body: dict[str, Any]) -> None:
    requests.post(f"{url}{path}", json=body, timeout=5).raise_for_status()


CASES = [
    Case(  # a Page token invalidated (password change): Graph 190/460; no app credentials configured
        "facebook",
        "facebook",
        "facebook",
        lambda url, client: {"accessToken": "EAAB-auth-fb-dead", "externalAccountId": "1000001"},
        lambda url: _post(url, "/_sim/tokens", {"action": "revoke", "token": "EAAB-auth-fb-dead"}),
        "EAAB-auth-fb-new",
        expect_reason="190/460",
        no_refresh=True,
    ),
    Case(  # the token expired on Meta's side: Graph 190/463
        "instagram",
        "instagram",
        "instagram",
        lambda url, client: {"accessToken": "EAAB-auth-ig-dead", "externalAccountId": "17841400000001"},
        lambda url: _post(url, "/_sim/tokens", {"action": "expire", "token": "EAAB-auth-ig-dead"}),
        "EAAB-auth-ig-new",
        expect_reason="190/463",
        no_refresh=True,
        with_image=True,
    ),
    Case(  # 401 on publish, then the forced refresh answers invalid_grant
        "linkedin",
        "linkedin",
        "linkedin",
        lambda url, client: {
            "accessToken": "li-test-auth-dead",
            "refreshToken": "li-test-refresh-auth-dead",
            "expiresAt": datetime.now(UTC) + timedelta(days=30),
            "externalAccountId": "urn:li:organization:2414183",
        },
        lambda url: _post(
            url,
            "/_sim/tokens",
            {"action": "revoke", "token": "li-test-auth-dead", "refresh_token": "li-test-refresh-auth-dead"},
        ),
        "li-test-auth-new",
        expect_reason="refresh token",
    ),
    Case(
        "google-business",
        "google-business",
        "google-business",
        lambda url, client: {
            "accessToken": "gbp-test-auth-dead",
            "refreshToken": "gbp-test-refresh-auth-dead",
            "expiresAt": datetime.now(UTC) + timedelta(minutes=50),
            "externalAccountId": "accounts/100/locations/200",
        },
        lambda url: _post(
            url,
            "/_sim/tokens",
            {
                "action": "revoke",
                "token": "gbp-test-auth-dead",
                "refresh_token": "gbp-test-refresh-auth-dead",
            },
        ),
        "gbp-test-auth-new",
        expect_reason="invalid_grant",
    ),
    Case(  # the site rotated its webhook secret: 401 on the signature
        "website-webhook",
        "website",
        "website",
        lambda url, client: {
            "accessToken": "auth-old-webhook-secret",
            "metadata": {"mode": "webhook", "webhookUrl": f"{url}/hooks/{client['slug']}"},
        },
        lambda url: None,  # the site (registered below) knows only its new secret
        "auth-new-webhook-secret",
        expect_reason="401",
        no_refresh=True,
    ),
    Case(  # the application password was revoked in WordPress: 401 incorrect_password
        "website-wordpress",
        "website",
        "website-wordpress",
        lambda url, client: {
            "accessToken": "wp-old-app-password",
            "metadata": {"mode": "wordpress", "siteUrl": url, "username": WP_USER},
        },
        lambda url: _post(url, "/_sim/users", {"username": WP_USER, "app_password": "wp-new-app-password"}),
        "wp-new-app-password",
        expect_reason="incorrect_password",
        no_refresh=True,
    ),
]


def _sim_state(sims: dict[str, SimClient], case: Case) -> dict[str, Any]:
    state = sims[case.sim].state()
    posts = state.get("posts")
    return {
        "count": len(posts) if isinstance(posts, list | dict) else state.get("count", 0),
        "duplicates": state.get("duplicates", 0),
        "refresh_calls": state.get("refresh_calls", 0),
    }


def _delivery(db: Any, case: Case) -> dict[str, Any]:
    return db.deliveries.find_one({"postId": str(case.post_id)}) or {}


def _log_lines(proc: Proc, account_id: Any) -> list[str]:
    return [
        line
        for line in proc.log_text().splitlines()
        if f"account {account_id} (" in line and "token rejected by the platform" in line
    ]


def _start(name: str, args: list[str], env: dict[str, str], logs: Path, ready: str) -> Proc:
    proc = spawn(name, args, env, logs, cwd=ROOT)
    wait_until(lambda: ready in proc.log_text() or not proc.alive(), 60, 0.2, f"{name} did not start")
    assert proc.alive(), proc.log_text()[-3000:]
    return proc


@pytest.fixture(scope="module")
def scenario(mongo_base_uri: str, redis_url: str, run_dir: Path) -> Iterator[dict[str, Case]]:
    """Runs the whole story once and records what each platform looked like at both stages.

    Waiting never fails here: a platform that does not get there is recorded as it stands, so
    each platform's test fails on its own with what it saw.
    """
    from mcmp.models import Post

    logs = run_dir / "logs"
    procs: list[Proc] = []
    media = MediaServer()
    with pytest.MonkeyPatch.context() as mp, fresh_env(mongo_base_uri, redis_url, mp) as env:
        try:
            db = Post._get_collection().database
            sims: dict[str, SimClient] = {}
            for sim in dict.fromkeys(c.sim for c in CASES):
                proc, url = start_simulator(sim, env, logs)
                procs.append(proc)
                sims[sim] = SimClient(url)
            li, gbp = sims["linkedin"].base_url, sims["google-business"].base_url
            env = dict(
                env,
                MCMP_FACEBOOK__BASE_URL=sims["facebook"].base_url,
                MCMP_INSTAGRAM__BASE_URL=sims["instagram"].base_url,
                MCMP_LINKEDIN__BASE_URL=li,
                MCMP_LINKEDIN__APP_ID="cid",
                MCMP_LINKEDIN__APP_SECRET="csecret",
                MCMP_LINKEDIN__TOKEN_URL=f"{li}/oauth/v2/accessToken",
                MCMP_GOOGLE_BUSINESS__BASE_URL=gbp,
                MCMP_GOOGLE_BUSINESS__APP_ID="gcid",
                MCMP_GOOGLE_BUSINESS__APP_SECRET="gsecret",
                MCMP_GOOGLE_BUSINESS__TOKEN_URL=f"{gbp}/token",
            )
            _post(
                sims["website-wordpress"].base_url,
                "/_sim/users",
                {"username": WP_USER, "app_password": "wp-old-app-password"},
            )
            image = media.add("/auth.jpg", "image/jpeg", len(JPEG), JPEG)
            now = datetime.now(UTC)
            for case in CASES:
                url = sims[case.sim].base_url
                slug = f"auth-{case.name}-{uuid.uuid4().hex[:6]}"
                client_id = ObjectId()
                db.clients.insert_one({"_id": client_id, "name": slug, "slug": slug, "timezone": "UTC"})
                if case.name == "website-webhook":
                    _post(url, "/_sim/sites", {"site": slug, "secret": "auth-new-webhook-secret"})
                account = {
                    "_id": ObjectId(),
                    "clientId": str(client_id),
                    "platform": case.platform,
                    "accountName": slug,
                    "status": "connected",
                    "metadata": {},
                    "createdAt": now,
                    "updatedAt": now,
                    "__v": 0,
                    **case.fields(url, {"slug": slug}),
                }
                db.integrationaccounts.insert_one(account)
                case.revoke(url)
                case.account_id = account["_id"]
                case.post_id = db.posts.insert_one(
                    scheduled_post(
                        str(client_id),
                        [case.platform],
                        now + timedelta(seconds=3),
                        title="Auth",
                        body=f"Post {slug}",
                        asset_urls=[image] if case.with_image else [],
                        now=now,
                    )
                ).inserted_id
            cli = [sys.executable, "-m", "mcmp.cli"]
            worker = _start(
                "worker",
                [*cli, "worker", "-c", "6", "--pool", "threads", "-n", f"auth-{uuid.uuid4().hex[:6]}@%h"],
                env,
                logs,
                "worker ready",
            )
            procs.append(worker)
            procs.append(_start("dispatcher", [*cli, "dispatcher"], env, logs, "dispatcher started"))

            def parked(case: Case) -> bool:
                return _delivery(db, case).get("state") == "waiting_auth"

            _wait_quietly(lambda: all(parked(c) for c in CASES), 60)
            time.sleep(2)  # a few dispatcher/maintenance rounds: nothing may move a parked delivery
            for case in CASES:
                case.parked = {
                    "account": db.integrationaccounts.find_one({"_id": case.account_id}),
                    "delivery": _delivery(db, case),
                    "post": db.posts.find_one({"_id": case.post_id}),
                    "sim": _sim_state(sims, case),
                    "log": _log_lines(worker, case.account_id),
                }
            for case in CASES:  # the frontend reconnects: plaintext token, status connected
                case.reconnect_sim(sims[case.sim].base_url)
                db.integrationaccounts.update_one(
                    {"_id": case.account_id},
                    {
                        "$set": {
                            "accessToken": case.new_token,
                            "status": "connected",
                            "updatedAt": datetime.now(UTC),
                        }
                    },
                )

            def published(case: Case) -> bool:
                return _delivery(db, case).get("state") == "published"

            _wait_quietly(lambda: all(published(c) for c in CASES), 60)
            for case in CASES:
                case.done = {
                    "account": db.integrationaccounts.find_one({"_id": case.account_id}),
                    "delivery": _delivery(db, case),
                    "post": db.posts.find_one({"_id": case.post_id}),
                    "sim": _sim_state(sims, case),
                    "worker_log": worker.log_text(),
                }
            yield {c.name: c for c in CASES}
        finally:
            for proc in reversed(procs):
                proc.stop()
            media.stop()


def _wait_quietly(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.3)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_rejected_token_expires_the_account_and_parks_the_delivery(
    scenario: dict[str, Case], name: str
) -> None:
    case = scenario[name]
    account, delivery, post, sim = (case.parked[k] for k in ("account", "delivery", "post", "sim"))
    assert delivery.get("state") == "waiting_auth", delivery.get("lastError")
    assert delivery["attempt"] == 0  # the refused attempt was given back
    assert delivery["errorClass"] == "auth" and "account must be reconnected" in delivery["lastError"]
    assert account["status"] == "expired"
    reason = account["metadata"]["authError"]
    assert case.expect_reason in reason
    assert not [s for s in SECRETS if s in reason]  # platform words, never a token
    assert post["status"] == "scheduled" and "must be reconnected" in post.get("lastError", "")
    assert sim["count"] == 0  # nothing published
    if case.no_refresh:
        assert sim["refresh_calls"] == 0  # no refresh grant exists: the token endpoint is not called
    else:
        assert sim["refresh_calls"] == 1  # one forced refresh, refused
    (line,) = case.parked["log"]
    assert "marked expired" in line and "1 deliveries wait for re-authorisation" in line
    assert case.expect_reason in line


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_after_reconnecting_the_post_publishes_once(scenario: dict[str, Case], name: str) -> None:
    case = scenario[name]
    delivery, sim = case.done["delivery"], case.done["sim"]
    assert delivery.get("state") == "published", delivery.get("lastError")
    assert delivery["attempt"] == 1  # only the attempt that published counted
    assert sim["count"] == 1 and sim["duplicates"] == 0
    assert case.done["post"]["status"] == "published"
    account = case.done["account"]
    assert account["status"] == "connected"
    assert not [s for s in SECRETS if s in case.done["worker_log"]]  # no token in the logs
