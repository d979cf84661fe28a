"""Hostile callers of the admin API: ids in other spellings, large bodies, bodies without a key.

* An id is the same object in any case (``6B0B…`` is ``6b0b…``): every route, fed an uppercase
  id, does exactly what it does for the canonical one — a published post is never reopened.
* A body is never read for a caller without a valid key, nor beyond 1 MB for one with a key.
  The real ``mcmp api`` process is sent four concurrent 100 MB bodies without a key; its memory
  stays put.
* Free strings naming a platform are checked against the installed connectors.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId

from mcmp.models import DeliveryState
from mcmp.worker.publishing import delivery_states
from mcmp.worker.publishing.delivery_states import NewDelivery
from tests.integration.api.conftest import Tenant, headers
from tests.integration.api.test_tenant_isolation import REQUESTS, api_routes

MB = 1024 * 1024


def _published_post(db: Any, make_post: Any, tenant: Tenant) -> dict[str, Any]:
    post = make_post(
        tenant.client,
        ["website"],
        when=datetime.now(UTC) - timedelta(minutes=5),
        status="published",
        platformPostIds={"website": "site-1"},
    )
    delivery_states.ensure(
        [
            NewDelivery(
                str(post["_id"]), tenant.id, "website", post["scheduleTime"], state=DeliveryState.PUBLISHED
            )
        ]
    )
    return post


def _ids(tenant: Tenant, published: dict[str, Any]) -> dict[str, str]:
    return {
        "post": str(published["_id"]),
        "account": str(tenant.account["_id"]),
        "campaign": str(tenant.campaign["_id"]),
        "backfill": tenant.backfill_id,
    }


def test_every_route_treats_an_uppercase_id_as_the_same_object(
    app, api, db, make_key, make_tenant, make_post
):
    tenant = make_tenant()
    published = _published_post(db, make_post, tenant)
    key = make_key(tenant.id)
    routes = {(m, r.path) for r in api_routes(app.routes) if "{" in r.path for m in r.methods}
    assert routes == set(REQUESTS), "a new route with a path parameter needs a case here"
    ids = _ids(tenant, published)
    before = {name: list(db[name].find({"clientId": tenant.id})) for name in ("posts", "deliveries")}
    answers: dict[tuple[str, str], tuple[int, int]] = {}
    for method, path in sorted(routes):
        kind, body = REQUESTS[(method, path)]
        if kind == "post" and body == {"platform": "website"}:
            body = None  # retry every platform of the published post
        param = path[path.index("{") + 1 : path.index("}")]
        upper = api.request(
            method, path.replace(f"{{{param}}}", ids[kind].upper()), json=body, headers=headers(key)
        )
        lower = api.request(method, path.replace(f"{{{param}}}", ids[kind]), json=body, headers=headers(key))
        answers[(method, path)] = (upper.status_code, lower.status_code)
        assert upper.status_code == lower.status_code != 404, (method, path, upper.text, lower.text)
        if method == "GET":
            assert upper.json() == lower.json(), path
    assert answers[("POST", "/v1/posts/{post_id}/retry")] == (409, 409)  # nothing to retry, twice
    assert answers[("PUT", "/v1/accounts/{account_id}/token")] == (200, 200)
    after = {name: list(db[name].find({"clientId": tenant.id})) for name in ("posts", "deliveries")}
    assert after == before  # no history entry, no reopened delivery, no status change
    shown = api.get(f"/v1/posts/{ids['post'].upper()}", headers=headers(key)).json()
    assert shown["id"] == ids["post"] and [d["state"] for d in shown["deliveries"]] == ["published"]
    task = api.post(f"/v1/accounts/{ids['account'].upper()}/refresh", headers=headers(key)).json()
    assert task["args"] == [ids["account"]]  # the worker receives the canonical id


def test_ids_in_queries_bodies_and_keys_are_canonical_too(api, db, make_key, make_tenant):
    tenant = make_tenant()
    upper = tenant.id.upper()
    key = make_key(upper)  # a key created with an uppercase client id sees that client
    for path in ("/v1/posts", "/v1/accounts"):
        lower = api.get(path, params={"clientId": tenant.id}, headers=headers(key))
        assert lower.status_code == 200 and lower.json()["items"]
        assert api.get(path, params={"clientId": upper}, headers=headers(key)).json() == lower.json()
    by_campaign = api.get(
        "/v1/posts", params={"campaignId": str(tenant.campaign["_id"]).upper()}, headers=headers(key)
    ).json()["items"]
    assert [p["id"] for p in by_campaign] == [str(tenant.post["_id"])]
    stats = api.get("/v1/stats/queue", params={"clientId": upper}, headers=headers(key))
    assert stats.status_code == 200
    job = api.post(
        "/v1/analytics/backfills",
        json={"clientId": upper, "since": "2024-01-01T00:00:00Z"},
        headers=headers(key),
    )
    assert job.status_code == 202 and job.json()["clientId"] == tenant.id
    assert db.analyticsbackfills.find_one({"_id": ObjectId(job.json()["id"])})["clientId"] == tenant.id
    for bad in ("not-an-id", tenant.id + "0"):
        assert api.get("/v1/posts", params={"clientId": bad}, headers=headers(key)).status_code == 404


def test_platform_names_are_checked_against_the_installed_connectors(api, make_key, make_tenant):
    tenant = make_tenant()
    key = make_key(tenant.id)
    r = api.post(
        "/v1/analytics/backfills",
        json={"clientId": tenant.id, "since": "2024-01-01T00:00:00Z", "platform": "myspace"},
        headers=headers(key),
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    [error] = r.json()["errors"]
    assert error["field"] == "body.platform" and error["message"].startswith(
        "unknown platform 'myspace' (known: "
    )
    r = api.get("/v1/accounts", params={"platform": "LinkedIn"}, headers=headers(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.platform"
    assert api.get("/v1/accounts", params={"platform": "linkedin"}, headers=headers(key)).status_code == 200


def test_bodies_over_the_cap_are_refused_and_bodies_without_a_key_are_never_read(api, make_key, make_tenant):
    tenant = make_tenant()
    key = make_key(tenant.id)
    token = f"/v1/accounts/{tenant.account['_id']}/token"
    big = {"accessToken": "x" * (2 * MB)}
    declared = api.put(token, json=big, headers=headers(key))
    assert declared.status_code == 413 and declared.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert declared.json()["type"] == "urn:mcmp:problem:payload-too-large"

    def chunks() -> Any:  # no Content-Length: counted while read
        for _ in range(3):
            yield b"x" * MB

    streamed = api.put(token, content=chunks(), headers={**headers(key), "Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["type"] == "urn:mcmp:problem:payload-too-large"
    for anonymous in ({}, headers("mcmp_not-a-key")):
        r = api.put(token, json={"accessToken": "new"}, headers=anonymous)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "ApiKey"
    assert api.put(token, json={"accessToken": "fine"}, headers=headers(key)).status_code == 200


# --- the real API process -------------------------------------------------------------------------
def _status_line(port: int, head: bytes, timeout: float = 5.0) -> str:
    """Send request headers only (the promised body never comes) and read the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()


def _memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")
