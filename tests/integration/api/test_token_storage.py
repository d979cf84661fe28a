"""The admin API never stores a token unsealed unless ``MCMP_ALLOW_PLAINTEXT_TOKENS`` says so.

Without ``MCMP_TOKEN_KEYS`` it used to store a new token as plaintext (only a warning outside
prod); now it answers 503 and writes nothing.
"""

from __future__ import annotations

from tests.conftest import allow_plaintext_tokens
from tests.integration.api.conftest import headers


def test_the_api_refuses_to_store_a_token_it_cannot_seal(
    no_token_keys, app, api, db, make_key, make_tenant, monkeypatch
):
    tenant = make_tenant()
    key = make_key(tenant.id)
    account = db.integrationaccounts.find_one({"_id": tenant.account["_id"]})
    path = f"/v1/accounts/{tenant.account['_id']}/token"
    r = api.put(
        path, json={"accessToken": "AT-new-plain", "refreshToken": "RT-new-plain"}, headers=headers(key)
    )
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
    assert "MCMP_TOKEN_KEYS is not set" in r.json()["detail"] and "AT-new-plain" not in r.text
    assert db.integrationaccounts.find_one({"_id": tenant.account["_id"]}) == account  # nothing written

    allow_plaintext_tokens(monkeypatch)  # said explicitly: stored as given
    r = api.put(path, json={"accessToken": "AT-new-plain"}, headers=headers(key))
    assert r.status_code == 200
    assert db.integrationaccounts.find_one({"_id": tenant.account["_id"]})["accessToken"] == "AT-new-plain"
