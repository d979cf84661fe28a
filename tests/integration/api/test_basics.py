"""Authentication, problem+json, pagination, posts with deliveries, health and OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.api.conftest import headers


def test_missing_and_revoked_keys_get_401_problems(api, make_key, make_client):
    client = make_client()
    r = api.get("/v1/posts")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == "urn:mcmp:problem:unauthorized" and body["status"] == 401
    assert body["instance"] == "/v1/posts" and body["title"] == "Unauthorized"
    from mcmp.api.keys import revoke_key

    key = make_key(str(client["_id"]), name="temp")
    assert api.get("/v1/posts", headers=headers(key)).status_code == 200
    assert revoke_key("temp") == 1
    assert api.get("/v1/posts", headers=headers(key)).status_code == 401


def test_keys_are_stored_hashed(db, make_key, make_client):
    key = make_key(str(make_client()["_id"]))
    stored = db.apikeys.find_one()
    assert key not in str(stored) and stored["keyHash"] != key and key.startswith(stored["prefix"])


def test_validation_errors_name_the_field(api, make_key, make_tenant):
    tenant = make_tenant()
    key = make_key(tenant.id)
    r = api.post(
        f"/v1/posts/{tenant.post['_id']}/reschedule", json={"scheduleTime": "tomorrow"}, headers=headers(key)
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["errors"][0]["field"] == "body.scheduleTime" and "scheduleTime" in body["detail"]
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = api.post(
        f"/v1/posts/{tenant.post['_id']}/reschedule", json={"scheduleTime": past}, headers=headers(key)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.scheduleTime"
    r = api.get("/v1/posts", params={"cursor": "nonsense"}, headers=headers(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cursor"


def test_cursor_pagination_walks_every_post_once(api, make_key, make_client, make_post):
    client = make_client()
    made = {str(make_post(client, ["website"])["_id"]) for _ in range(7)}
    key = make_key(str(client["_id"]))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/posts", params=params, headers=headers(key)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and set(seen) == made
    assert seen == sorted(seen, reverse=True)  # newest first


def test_post_shows_per_platform_delivery_state(api, make_key, make_tenant):
    tenant = make_tenant()
    r = api.get(f"/v1/posts/{tenant.post['_id']}", headers=headers(make_key(tenant.id)))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "failed"
    [delivery] = body["deliveries"]
    assert delivery["platform"] == "website" and delivery["state"] == "failed"
    assert delivery["errorClass"] == "permanent" and delivery["lastError"] == "refused"
    assert delivery["attempt"] == 0 and delivery["dueAt"]


def test_liveness_readiness_and_openapi(api):
    assert api.get("/v1/health/live").json() == {"status": "ok"}
    r = api.get("/v1/health/ready", params={"workerTimeout": 0.2})
    assert r.status_code == 200 and r.json()["mongodb"] == "ok" and r.json()["redis"] == "ok"
    assert r.json()["workers"] == 0  # reported, not required
    schema = api.get("/openapi.json").json()
    assert all(p.startswith("/v1/") or p == "/metrics" for p in schema["paths"])
    retry = schema["paths"]["/v1/posts/{post_id}/retry"]["post"]["responses"]
    assert "application/problem+json" in retry["409"]["content"]


def test_readiness_fails_with_a_problem_when_redis_or_mongo_is_down(api, monkeypatch):
    from mcmp.config import reset_settings
    from mcmp.devstack import free_port

    monkeypatch.setenv("MCMP_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_settings()
    r = api.get("/v1/health/ready")
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
    assert "redis" in r.json()["detail"] and r.json()["type"] == "urn:mcmp:problem:not-ready"
    monkeypatch.setenv("MCMP_MONGODB_URI", f"mongodb://127.0.0.1:{free_port()}/x")
    reset_settings()
    r = api.get("/v1/health/ready")
    assert r.status_code == 503 and "mongodb" in r.json()["detail"]
