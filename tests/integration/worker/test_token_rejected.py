"""The one decision taken once a platform rejected a token (``publishing.auth.token_rejected``),
and the pipeline's way to it after a publish refused with ``AuthError`` — called directly."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from mcmp.connectors.errors import AuthError
from mcmp.models import IntegrationAccount
from mcmp.worker.accounts.store import Expiry
from mcmp.worker.publishing import auth, delivery_states, pipeline
from mcmp.worker.publishing.pipeline import Attempt, Outcome
from tests.integration.worker.helpers import new_delivery, now, take

REASON = "LinkedIn rejected the access token (HTTP 401: Invalid access token)"


@pytest.fixture
def linkedin(make_client: Any, make_account: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    client = make_client()
    account = make_account(
        client, "linkedin", accessToken="li-test-unit", externalAccountId="urn:li:organization:1"
    )
    return client, account


def _doc(account: dict[str, Any]) -> IntegrationAccount:
    found = IntegrationAccount.objects(pk=account["_id"]).first()
    assert found is not None
    return found


def _state(db: Any, delivery_id: Any) -> dict[str, Any]:
    return db.deliveries.find_one({"_id": delivery_id})


def test_expires_the_account_and_parks_its_open_deliveries_without_spending_attempts(
    db, linkedin, make_post, caplog
):
    client, account = linkedin
    due = now() - timedelta(seconds=1)
    queued = new_delivery(make_post(client, ["linkedin"], due), "linkedin")
    later_post = make_post(client, ["linkedin"], now() + timedelta(days=7))
    later = new_delivery(later_post, "linkedin", now() + timedelta(days=7))
    db.deliveries.update_one({"_id": later["_id"]}, {"$set": {"state": "pending", "attempt": 2}})
    other_platform = new_delivery(make_post(client, ["website"], due), "website")
    in_flight = take(make_post(client, ["linkedin"], due), "linkedin")

    with caplog.at_level(logging.WARNING, logger="mcmp.worker.publishing.auth"):
        rejection = auth.token_rejected(_doc(account), REASON, holding=1)

    assert rejection.expiry is Expiry.NOW and rejection.parked == 2
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert stored["status"] == "expired" and stored["metadata"]["authError"] == REASON
    for parked in (queued, later):
        d = _state(db, parked["_id"])
        assert d["state"] == "waiting_auth" and d["errorClass"] == "auth"
        assert d["lastError"] == f"linkedin: account must be reconnected ({REASON})"
    assert _state(db, queued["_id"])["attempt"] == 0
    assert _state(db, later["_id"])["attempt"] == 2  # unchanged
    assert _state(db, other_platform["_id"])["state"] == "queued"  # another account: untouched
    assert _state(db, in_flight.id)["state"] == "in_flight"  # its attempt records its own outcome
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        f"account {account['_id']} (linkedin): token rejected by the platform ({REASON}); "
        "marked expired; 3 deliveries wait for re-authorisation"
    )

    # Rejected again (another attempt met the same refusal): nothing more to do, nothing logged.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mcmp.worker.publishing.auth"):
        again = auth.token_rejected(_doc(account), REASON)
    assert again.expiry is Expiry.ALREADY and again.parked == 0 and not caplog.records

    # The reconnect releases them: due ones now, the one due next week keeps its time.
    assert delivery_states.resume_waiting(platform="linkedin", client_id=str(client["_id"])) == 2
    assert _state(db, queued["_id"])["state"] == "pending"
    assert _state(db, queued["_id"])["dueAt"] <= now()
    assert _state(db, later["_id"])["dueAt"] > now() + timedelta(days=6)


def test_a_reconnect_written_meanwhile_is_never_expired(db, linkedin, make_post):
    client, account = linkedin
    stale = _doc(account)
    db.integrationaccounts.update_one({"_id": account["_id"]}, {"$set": {"accessToken": "li-test-new"}})
    queued = new_delivery(make_post(client, ["linkedin"], now()), "linkedin")
    rejection = auth.token_rejected(stale, REASON)
    assert rejection.reconnected and rejection.parked == 0
    assert db.integrationaccounts.find_one({"_id": account["_id"]})["status"] == "connected"
    assert _state(db, queued["_id"])["state"] == "queued"


def _attempt(client: dict[str, Any], post: dict[str, Any]) -> Attempt:
    from mcmp.config import get_settings

    return Attempt(take(post, "linkedin"), get_settings(), post, uncertain=False)  # type: ignore[arg-type]


def test_a_token_no_refresh_can_cure_waits_at_once(db, linkedin, make_post):
    """Graph 190, a refused webhook secret or application password: no token endpoint is called."""
    client, account = linkedin
    post = make_post(client, ["linkedin"], now())
    attempt = _attempt(client, post)
    refused = AuthError("LinkedIn denied the call: the token lacks a scope (HTTP 403)", refreshable=False)
    record = pipeline._after_auth_error(attempt, _doc(account), refused)
    assert pipeline.commit(record, attempt.post) is Outcome.WAITING_AUTH
    d = _state(db, attempt.taken.id)
    assert d["state"] == "waiting_auth" and d["attempt"] == 0
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert stored["status"] == "expired" and "lacks a scope" in stored["metadata"]["authError"]
    assert "tokenRefreshedAt" not in stored["metadata"]


def test_a_401_right_after_a_refresh_waits_instead_of_refreshing_again(db, linkedin, make_post):
    client, account = linkedin
    db.integrationaccounts.update_one(
        {"_id": account["_id"]}, {"$set": {"metadata.tokenRefreshedAt": now() - timedelta(seconds=30)}}
    )
    post = make_post(client, ["linkedin"], now())
    attempt = _attempt(client, post)
    record = pipeline._after_auth_error(attempt, _doc(account), AuthError(REASON))
    assert pipeline.commit(record, attempt.post) is Outcome.WAITING_AUTH
    assert _state(db, attempt.taken.id)["attempt"] == 0
    stored = db.integrationaccounts.find_one({"_id": account["_id"]})
    assert stored["metadata"]["authError"] == f"{REASON}; refused again after a refresh"
    assert db.posts.find_one({"_id": post["_id"]})["lastError"].startswith(
        "linkedin: account must be reconnected"
    )
