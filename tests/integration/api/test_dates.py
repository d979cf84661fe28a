"""Dates written to the admin API are ISO 8601 strings with an offset, or a 422 naming the field.

pydantic alone reads ``123`` (and ``"123"``) as a Unix time: an ``expiresAt`` of 1970 expires the
account at once, a backfill ``since`` of 1970 walks back over fifty years.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from tests.integration.api.conftest import headers

REFUSED = [123, 1735689600, "123", 1.5, True, "2025-01-31", "2025-01-31T09:00:00", "31/01/2025 09:00Z", {}]
MESSAGE = "must be an ISO 8601 date-time string with an offset, e.g. 2025-01-31T09:00:00Z"


def _problem(response: Any, field: str) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    assert error["field"] == field
    return str(error["message"])


@pytest.mark.parametrize("value", REFUSED)
def test_a_token_expiry_that_is_not_an_iso_string_with_an_offset_is_refused(
    api, db, make_key, make_tenant, value: Any
) -> None:
    tenant = make_tenant()
    path = f"/v1/accounts/{tenant.account['_id']}/token"
    before = db.integrationaccounts.find_one({"_id": tenant.account["_id"]})
    r = api.put(
        path, json={"accessToken": "new-token", "expiresAt": value}, headers=headers(make_key(tenant.id))
    )
    assert MESSAGE in _problem(r, "body.expiresAt")
    assert db.integrationaccounts.find_one({"_id": tenant.account["_id"]}) == before  # nothing stored


@pytest.mark.parametrize("value", REFUSED)
def test_a_backfill_since_that_is_not_an_iso_string_with_an_offset_is_refused(
    api, db, make_key, make_tenant, value: Any
) -> None:
    tenant = make_tenant()
    jobs = db.analyticsbackfills.count_documents({})
    r = api.post(
        "/v1/analytics/backfills",
        json={"clientId": tenant.id, "since": value},
        headers=headers(make_key(tenant.id)),
    )
    assert MESSAGE in _problem(r, "body.since")
    assert db.analyticsbackfills.count_documents({}) == jobs


def test_a_backfill_since_in_the_future_is_refused(api, db, make_key, make_tenant) -> None:
    tenant = make_tenant()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = api.post(
        "/v1/analytics/backfills",
        json={"clientId": tenant.id, "since": tomorrow},
        headers=headers(make_key(tenant.id)),
    )
    assert "must not be in the future" in _problem(r, "body.since")


def test_iso_strings_with_an_offset_are_taken(api, db, make_key, make_tenant) -> None:
    tenant = make_tenant()
    key = make_key(tenant.id)
    path = f"/v1/accounts/{tenant.account['_id']}/token"
    r = api.put(
        path,
        json={"accessToken": "new-token", "expiresAt": "2031-01-31T09:00:00+02:00"},
        headers=headers(key),
    )
    assert r.status_code == 200, r.text
    stored = db.integrationaccounts.find_one({"_id": tenant.account["_id"]})["expiresAt"]
    assert stored.replace(tzinfo=UTC) == datetime(2031, 1, 31, 7, tzinfo=UTC)
    r = api.post(
        "/v1/analytics/backfills",
        json={"clientId": tenant.id, "since": "2024-03-01T00:00:00.5Z"},
        headers=headers(key),
    )
    assert r.status_code == 202, r.text
    job = db.analyticsbackfills.find_one({"_id": ObjectId(r.json()["id"])})
    assert job["since"].replace(tzinfo=UTC) == datetime(2024, 3, 1, 0, 0, 0, 500000, tzinfo=UTC)
