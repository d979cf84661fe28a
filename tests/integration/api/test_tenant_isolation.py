"""A key scoped to tenant A gets 404 — never 403, never data — for every tenant-B object.

The route list comes from ``app.routes``: a new route with a path parameter fails this test
until it is added to ``REQUESTS`` below, so isolation is checked for every route, not a sample.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.routing import APIRoute

from tests.integration.api.conftest import Tenant, headers

FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()

# (method, path) → (which tenant-B id fills the path parameter, a valid body)
REQUESTS: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("GET", "/v1/posts/{post_id}"): ("post", None),
    ("GET", "/v1/posts/{post_id}/readiness"): ("post", None),
    ("POST", "/v1/posts/{post_id}/retry"): ("post", {"platform": "website"}),
    ("POST", "/v1/posts/{post_id}/cancel"): ("post", {}),
    ("POST", "/v1/posts/{post_id}/reschedule"): ("post", {"scheduleTime": FUTURE}),
    ("GET", "/v1/accounts/{account_id}"): ("account", None),
    ("POST", "/v1/accounts/{account_id}/refresh"): ("account", None),
    ("PUT", "/v1/accounts/{account_id}/token"): ("account", {"accessToken": "stolen", "refreshToken": "x"}),
    ("GET", "/v1/campaigns/{campaign_id}/analytics"): ("campaign", None),
    ("GET", "/v1/analytics/backfills/{backfill_id}"): ("backfill", None),
}


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute of ``app.routes``, looking inside included routers (FastAPI ≥ 0.16x nests them)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


def _object_id(tenant: Tenant, kind: str) -> str:
    return {
        "post": str(tenant.post["_id"]),
        "account": str(tenant.account["_id"]),
        "campaign": str(tenant.campaign["_id"]),
        "backfill": tenant.backfill_id,
    }[kind]


def test_every_route_with_a_path_parameter_answers_404_for_another_tenant(
    app, api, db, make_key, make_tenant
):
    a, b = make_tenant(), make_tenant()
    key_a = make_key(a.id)
    before = {name: list(db[name].find()) for name in ("posts", "deliveries", "integrationaccounts")}
    routes = [
        (method, route.path)
        for route in api_routes(app.routes)
        if "{" in route.path
        for method in sorted(route.methods)
    ]
    assert routes and set(routes) == set(REQUESTS), "add new routes with path parameters to REQUESTS"
    openapi = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() if "{" in p for m in ops}
    assert openapi == set(routes)  # nothing routed that introspection missed
    for method, path in routes:
        kind, body = REQUESTS[(method, path)]
        param = path[path.index("{") + 1 : path.index("}")]
        own = api.request(
            method, path.replace(f"{{{param}}}", _object_id(a, kind)), json=body, headers=headers(key_a)
        )
        assert own.status_code != 404 or kind == "post", (method, path, own.text)  # A reaches its own object
        r = api.request(
            method, path.replace(f"{{{param}}}", _object_id(b, kind)), json=body, headers=headers(key_a)
        )
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert b.id not in r.text and "secret" not in r.text
    # tenant B's data is untouched by everything tenant A's key tried
    for name, docs in before.items():
        b_docs = [d for d in docs if d.get("clientId") == b.id]
        assert [d for d in db[name].find({"clientId": b.id})] == b_docs, name


def test_lists_and_stats_never_show_another_tenant(api, make_key, make_tenant):
    a, b = make_tenant(), make_tenant()
    key_a = make_key(a.id)
    for path in ("/v1/posts", "/v1/accounts"):
        items = api.get(path, headers=headers(key_a)).json()["items"]
        assert items and {i["clientId"] for i in items} == {a.id}
        r = api.get(path, params={"clientId": b.id}, headers=headers(key_a))
        assert r.status_code == 404
    assert api.get("/v1/stats/queue", params={"clientId": b.id}, headers=headers(key_a)).status_code == 404
    r = api.post(
        "/v1/analytics/backfills",
        json={"clientId": b.id, "since": "2024-01-01T00:00:00Z"},
        headers=headers(key_a),
    )
    assert r.status_code == 404
    # an all-tenants key sees both
    everyone = make_key(all_tenants=True, name="ops")
    seen = {i["clientId"] for i in api.get("/v1/posts", headers=headers(everyone)).json()["items"]}
    assert seen == {a.id, b.id}
