"""A sealed token is bound to its account: a value copied to another account does not open there
(a clear error naming no secret); values sealed before binding still open, and ``mcmp tokens
rotate`` re-seals them bound, under the newest key."""

from __future__ import annotations

import json
import subprocess
import sys

from cryptography.fernet import Fernet

from mcmp.models import IntegrationAccount
from mcmp.worker.accounts import crypto, secrets, tokens
from mcmp.worker.accounts.store import credentials_for
from tests import ROOT

MCMP = [sys.executable, "-m", "mcmp.cli"]


def _account(pk: object) -> IntegrationAccount:
    found = IntegrationAccount.objects(pk=pk).first()
    assert found is not None
    return found


def test_a_token_copied_to_another_account_does_not_open_there(db, make_client, make_account) -> None:
    client = make_client()
    owner = make_account(
        client, "linkedin", accessToken="li-test-owner-token", externalAccountId="urn:li:organization:1"
    )
    other = make_account(make_client(), "linkedin", accessToken="li-test-other-token")
    sealed = secrets.seal("li-test-owner-token", str(owner["_id"]))
    assert sealed.startswith(crypto.PREFIX)
    db.integrationaccounts.update_one({"_id": owner["_id"]}, {"$set": {"accessToken": sealed}})
    assert credentials_for(_account(owner["_id"])).access_token == "li-test-owner-token"

    db.integrationaccounts.update_one({"_id": other["_id"]}, {"$set": {"accessToken": sealed}})  # copied
    try:
        credentials_for(_account(other["_id"]))
        raise AssertionError("a token sealed for another account was opened")
    except crypto.TokenBindingError as refused:
        message = str(refused)
    assert f"account {other['_id']}" in message and "sealed for another account" in message
    assert "li-test-owner-token" not in message and sealed[len(crypto.PREFIX) :][:20] not in message
    assert str(owner["_id"]) not in message  # nor whose it was

    fresh = tokens.ensure_fresh(_account(other["_id"]))  # what a publish meets: no token, a reason
    assert fresh.outcome is tokens.Outcome.KEY_ERROR and fresh.credentials is None
    assert "sealed for another account" in fresh.reason and "li-test-owner-token" not in fresh.reason
    assert db.integrationaccounts.find_one({"_id": other["_id"]})["accessToken"] == sealed  # untouched


def test_unbound_values_still_open_and_rotate_seals_them_bound_under_the_newest_key(
    env, db, make_client, make_account
) -> None:
    old_key, new_key = crypto.configured_keys()[0], Fernet.generate_key().decode()
    unbound = crypto.UNBOUND_PREFIX + Fernet(old_key).encrypt(b"li-test-legacy").decode()
    legacy = make_account(
        make_client(), "linkedin", accessToken=unbound, refreshToken="li-test-refresh-plain"
    )
    assert credentials_for(_account(legacy["_id"])).access_token == "li-test-legacy"  # migration: opens
    copied = make_account(
        make_client(), "linkedin", accessToken=secrets.seal("li-test-x", str(legacy["_id"]))
    )

    result = subprocess.run(
        [*MCMP, "tokens", "rotate"],
        env=dict(env, MCMP_TOKEN_KEYS=f"{new_key},{old_key}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # the copied value is reported
    assert f"account {copied['_id']}" in result.stderr and "li-test-x" not in result.stderr + result.stdout
    stored = db.integrationaccounts.find_one({"_id": legacy["_id"]})
    for field, plain in (("accessToken", "li-test-legacy"), ("refreshToken", "li-test-refresh-plain")):
        value = stored[field]
        assert value.startswith(crypto.PREFIX)
        payload = json.loads(Fernet(new_key).decrypt(value[len(crypto.PREFIX) :].encode()))  # new key alone
        assert payload == {"account": str(legacy["_id"]), "token": plain}
    assert db.integrationaccounts.find_one({"_id": copied["_id"]})["accessToken"] == copied["accessToken"]
