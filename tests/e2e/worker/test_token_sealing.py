"""A worker never refreshes a token it could not store sealed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcmp.worker.accounts import crypto
from tests.integration.worker.test_token_sealing import ORG, _allow_plaintext


@pytest.mark.platforms("linkedin")
def test_the_worker_does_not_refresh_a_token_it_could_not_store(
    no_token_keys, db, platform_lab, make_client, make_account, monkeypatch
) -> None:
    from mcmp.config import reset_settings
    from mcmp.connectors import registry
    from mcmp.models import IntegrationAccount
    from mcmp.worker.accounts import tokens

    base = platform_lab.env["MCMP_LINKEDIN__BASE_URL"]
    for name, value in {
        "MCMP_LINKEDIN__BASE_URL": base,
        "MCMP_LINKEDIN__APP_ID": "cid",
        "MCMP_LINKEDIN__APP_SECRET": "csecret",
        "MCMP_LINKEDIN__TOKEN_URL": f"{base}/oauth/v2/accessToken",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    registry.clear_cache()
    client = make_client()
    doc: dict[str, Any] = make_account(
        client,
        "linkedin",
        accessToken="li-test-old-access",
        refreshToken="li-test-refresh-original",
        expiresAt=datetime.now(UTC) + timedelta(hours=1),
        externalAccountId=ORG,
    )
    sim = platform_lab.sims["linkedin"]

    fresh = tokens.ensure_fresh(IntegrationAccount.objects.get(pk=doc["_id"]), force=True)
    assert fresh.outcome is tokens.Outcome.UNAVAILABLE and "MCMP_TOKEN_KEYS is not set" in fresh.reason
    assert fresh.credentials is not None  # the old token is still valid: publishing goes on with it
    assert not [r for r in sim.requests_log() if r["path"] == "/oauth/v2/accessToken"]
    stored = db.integrationaccounts.find_one({"_id": doc["_id"]})
    assert (stored["accessToken"], stored["refreshToken"]) == (
        "li-test-old-access",
        "li-test-refresh-original",
    )

    _allow_plaintext(monkeypatch)
    fresh = tokens.ensure_fresh(IntegrationAccount.objects.get(pk=doc["_id"]), force=True)
    assert fresh.outcome is tokens.Outcome.REFRESHED
    stored = db.integrationaccounts.find_one({"_id": doc["_id"]})
    assert stored["accessToken"] != "li-test-old-access" and not crypto.is_encrypted(stored["accessToken"])
