"""Refresh per platform through ``mcmp.worker.accounts.tokens`` and the real simulators (over HTTP): what ends
up stored is what a user relies on — a new sealed token, the right expiry, the refresh token kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.platforms("facebook", "instagram", "google-business", "website")


@pytest.fixture
def lab_env(platform_lab: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mcmp.config import reset_settings
    from mcmp.connectors import registry

    gbp = platform_lab.env["MCMP_GOOGLE_BUSINESS__BASE_URL"]
    values = {
        **{k: v for k, v in platform_lab.env.items() if k.endswith("__BASE_URL")},
        "MCMP_FACEBOOK__APP_ID": "app",
        "MCMP_FACEBOOK__APP_SECRET": "secret",
        "MCMP_INSTAGRAM__APP_ID": "app",
        "MCMP_INSTAGRAM__APP_SECRET": "secret",
        "MCMP_GOOGLE_BUSINESS__APP_ID": "gcid",
        "MCMP_GOOGLE_BUSINESS__APP_SECRET": "gsecret",
        "MCMP_GOOGLE_BUSINESS__TOKEN_URL": f"{gbp}/token",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    registry.clear_cache()
    return platform_lab


def _doc(account: dict[str, Any]) -> Any:
    from mcmp.models import IntegrationAccount

    return IntegrationAccount.objects(pk=account["_id"]).first()


def _open(doc: dict[str, Any], field: str) -> str:
    from mcmp.worker.accounts import secrets

    assert doc[field].startswith("mcmpenc:v2:")  # sealed, bound to the account
    return secrets.reveal(doc[field], str(doc["_id"]))


def _register(lab: Any, platform: str, token: str, expires_in: float | None) -> None:
    requests.post(
        f"{lab.sims[platform].base_url}/_sim/tokens",
        json={"action": "register", "token": token, "expires_in": expires_in},
        timeout=5,
    ).raise_for_status()


@pytest.mark.parametrize("platform", ["facebook", "instagram"])
def test_graph_long_lived_exchange_and_page_tokens_that_never_expire(
    lab_env, db, make_client, make_account, platform
):
    from mcmp.worker.accounts import tokens

    client = make_client()
    _register(lab_env, platform, "EAAB-user-short", 120)
    user = make_account(
        client,
        platform,
        accessToken="EAAB-user-short",
        expiresAt=datetime.now(UTC) + timedelta(seconds=120),
        **{k: v for k, v in lab_env.account_fields(platform, client).items() if k != "accessToken"},
    )
    fresh = tokens.ensure_fresh(_doc(user))
    assert fresh.outcome is tokens.Outcome.REFRESHED
    stored = db.integrationaccounts.find_one({"_id": user["_id"]})
    assert _open(stored, "accessToken") == fresh.credentials.access_token != "EAAB-user-short"
    assert stored["expiresAt"] > datetime.now(UTC) + timedelta(days=59)  # long-lived (~60 days)

    _register(lab_env, platform, "EAAB-page", None)  # a Page token from a long-lived user token
    page = make_account(
        make_client(), platform, accessToken="EAAB-page", expiresAt=datetime.now(UTC) + timedelta(days=1)
    )
    assert tokens.ensure_fresh(_doc(page)).outcome is tokens.Outcome.REFRESHED
    stored = db.integrationaccounts.find_one({"_id": page["_id"]})
    assert "expiresAt" not in stored  # never expires: not refreshed again
    assert tokens.ensure_fresh(_doc(page)).outcome is tokens.Outcome.NOT_DUE
    assert lab_env.sims[platform].state()["refresh_calls"] == 2


def test_graph_190_on_exchange_expires_the_account(lab_env, db, make_client, make_account):
    from mcmp.worker.accounts import tokens

    requests.post(
        f"{lab_env.sims['facebook'].base_url}/_sim/tokens",
        json={"action": "revoke", "token": "EAAB-revoked", "subcode": 460},
        timeout=5,
    ).raise_for_status()
    account = make_account(
        make_client(), "facebook", accessToken="EAAB-revoked", expiresAt=datetime.now(UTC) + timedelta(days=1)
    )
    fresh = tokens.ensure_fresh(_doc(account))
    assert fresh.outcome is tokens.Outcome.REVOKED and fresh.credentials is None
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert stored["status"] == "expired" and stored["metadata"]["authError"]
    assert "EAAB-revoked" not in stored["metadata"]["authError"]


def test_google_oauth_refresh_keeps_the_refresh_token(lab_env, db, make_client, make_account):
    from mcmp.worker.accounts import tokens

    account = make_account(
        make_client(),
        "google-business",
        accessToken="gbp-test-old",
        refreshToken="gbp-test-refresh-keep",
        expiresAt=datetime.now(UTC) + timedelta(minutes=5),  # inside the 10-minute margin
        externalAccountId="accounts/100/locations/200",
    )
    fresh = tokens.ensure_fresh(_doc(account))
    assert fresh.outcome is tokens.Outcome.REFRESHED
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert (
        _open(stored, "accessToken").startswith("gbp-test-")
        and _open(stored, "accessToken") != "gbp-test-old"
    )
    assert _open(stored, "refreshToken") == "gbp-test-refresh-keep"
    assert timedelta(minutes=55) < stored["expiresAt"] - datetime.now(UTC) < timedelta(minutes=61)
    assert stored["status"] == "connected"


def test_website_secrets_do_not_expire(lab_env, db, make_client, make_account):
    from mcmp.worker.accounts import tokens

    client = make_client()
    account = make_account(client, "website", **lab_env.account_fields("website", client))
    fresh = tokens.ensure_fresh(_doc(account))
    assert fresh.outcome is tokens.Outcome.NOT_DUE
    assert fresh.credentials.access_token == "dev-webhook-secret"
    # ...and the plaintext secret written by the frontend is sealed on this first touch.
    assert (
        _open(db.integrationaccounts.find_one({"_id": account["_id"]}), "accessToken") == "dev-webhook-secret"
    )


def test_a_refused_refresh_is_remembered_for_readiness_until_a_refresh_succeeds(
    lab_env, db, make_client, make_account, make_post, monkeypatch
):
    """Google refuses our OAuth client: the account says so (``metadata.refreshError``), its post
    after the expiry is at risk (``refresh_failed``); the next good refresh clears it."""
    from mcmp.config import reset_settings
    from mcmp.connectors import registry
    from mcmp.worker import services
    from mcmp.worker.accounts import tokens

    client = make_client()
    account = make_account(
        client,
        "google-business",
        accessToken="gbp-test-old",
        refreshToken="gbp-test-refresh-1",
        expiresAt=datetime.now(UTC) + timedelta(minutes=5),
        externalAccountId="accounts/100/locations/200",
    )
    post = make_post(client, ["google-business"], datetime.now(UTC) + timedelta(days=1))
    monkeypatch.setenv("MCMP_GOOGLE_BUSINESS__APP_SECRET", "")  # the sim answers invalid_client
    reset_settings()
    registry.clear_cache()
    assert tokens.ensure_fresh(_doc(account)).outcome is tokens.Outcome.FAILED
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert "invalid_client" in stored["metadata"]["refreshError"]
    [risky] = services.accounts_at_risk({"clientId": str(client["_id"])})
    assert (risky["reason"], risky["firstPostId"]) == ("refresh_failed", str(post["_id"]))
    monkeypatch.setenv("MCMP_GOOGLE_BUSINESS__APP_SECRET", "gsecret")
    reset_settings()
    registry.clear_cache()
    tokens._r(tokens.get_settings()).delete(tokens.BACKOFF_PREFIX + str(account["_id"]))
    assert tokens.ensure_fresh(_doc(account)).outcome is tokens.Outcome.REFRESHED
    assert "refreshError" not in db.integrationaccounts.find_one({"_id": account["_id"]})["metadata"]
    assert services.accounts_at_risk({"clientId": str(client["_id"])}) == []
