"""A real Mongoose 8 frontend (tests/frontend/frontend.js, the seed's schemas) beside the worker.

Mongoose's ``autoIndex`` builds the seed's indexes with its own options (``background: true``):
the worker must start after it, and its ``init()`` must still succeed after the worker. Needs
``npm ci`` in tests/frontend (``./scripts/test`` runs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mcmp.devstack import wait_until
from mcmp.models.db import FRONTEND_INDEXES, with_database

HERE = Path(__file__).resolve().parent
UTC_PLUS_2 = timezone(timedelta(hours=2))


def frontend(command: str, uri: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "mongoose").is_dir():
        pytest.fail("node and tests/frontend/node_modules are required: run `npm ci` in tests/frontend")
    args = [node, str(HERE / "frontend.js"), command, uri] + ([json.dumps(spec)] if spec else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"Mongoose {command} failed: {done.stderr.strip()}"
    return json.loads(done.stdout)


def website(sim: Any, slug: str) -> dict[str, Any]:
    return {
        "platform": "website",
        "accessToken": "dev-webhook-secret",
        "metadata": {"webhookUrl": f"{sim.base_url}/hooks/{slug}", "mode": "webhook"},
    }


def post(title: str, when: datetime | str) -> dict[str, Any]:
    schedule = when if isinstance(when, str) else {"$date": when.isoformat()}
    return {
        "title": title,
        "body": f"{title} body",
        "platforms": ["website"],
        "status": "scheduled",
        "scheduleTime": schedule,
    }


def test_frontend_indexes_first_then_dispatcher_and_worker(
    env, mongo_base_uri, webhook_sim, start_dispatcher, start_worker
):
    """Mongoose creates the collections and indexes; the worker then starts and publishes."""
    uri = with_database(mongo_base_uri, f"mcmp_fe_{uuid.uuid4().hex[:10]}")  # untouched by us
    fresh_env = dict(env, MCMP_MONGODB_URI=uri)
    made = frontend("init", uri)["indexes"]
    assert {"key": {"email": 1}, "name": "email_1", "unique": True, "background": True}.items() <= {
        k: v for k, v in made["users"][1].items() if k != "v"
    }.items()
    slug = f"fe-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    as_date, as_offset = now + timedelta(seconds=5), now + timedelta(seconds=6)
    offset_text = as_offset.astimezone(UTC_PLUS_2).isoformat(timespec="milliseconds")
    ids = frontend(
        "write",
        uri,
        {
            "client": {"name": "Frontend Co", "slug": slug},
            "account": website(webhook_sim, slug),
            "posts": [post("dated", as_date), post("as text", offset_text)],
        },
    )
    dispatcher = start_dispatcher(fresh_env)
    start_worker(fresh_env)
    db = MongoClient(uri).get_default_database()
    try:
        wait_until(lambda: db.posts.count_documents({"status": "published"}) == 2, 40, 0.2, "not published")
        received = {p["postId"]: p["receivedAt"] for p in webhook_sim.state()["posts"]}
        assert received[ids["posts"][0]] >= as_date.timestamp()
        assert received[ids["posts"][1]] >= as_offset.timestamp(), "published before its instant"
        assert received[ids["posts"][1]] - as_offset.timestamp() < 3
        assert db.posts.find_one({"title": "as text"})["scheduleTime"] == offset_text
        assert "IndexKeySpecsConflict" not in dispatcher.log_text()
        frontend("init", uri)  # and Mongoose after the worker still succeeds
    finally:
        db.client.drop_database(db.name)


def test_worker_first_then_mongoose_init_succeeds(env, webhook_sim, start_dispatcher, start_worker):
    start_dispatcher(env)
    start_worker(env)
    uri = env["MCMP_MONGODB_URI"]
    made = frontend("init", uri)["indexes"]
    for collection, names in FRONTEND_INDEXES.items():
        assert names <= {ix["name"] for ix in made[collection]}, collection
    slug = f"fe-{uuid.uuid4().hex[:6]}"
    when = datetime.now(UTC) + timedelta(seconds=3)
    text = when.isoformat().replace("+00:00", "Z")
    ids = frontend(
        "write",
        uri,
        {
            "client": {"name": "Later Co", "slug": slug},
            "account": website(webhook_sim, slug),
            "posts": [post("z form", text), post("no offset", when.replace(tzinfo=None).isoformat())],
        },
    )
    db = MongoClient(uri).get_default_database()
    wait_until(lambda: db.posts.count_documents({"status": {"$in": ["published", "failed"]}}) == 2, 40, 0.2)
    assert [p["postId"] for p in webhook_sim.state()["posts"]] == ids["posts"][:1]
    no_offset = db.posts.find_one({"title": "no offset"})
    assert no_offset["status"] == "failed" and "has no UTC offset" in no_offset["lastError"]
    assert no_offset["lastError"].startswith("scheduleTime: ")
    assert webhook_sim.state()["posts"][0]["receivedAt"] >= when.timestamp()
    assert db.posts.find_one({"title": "z form"})["scheduleTime"] == text


def test_mongoose_save_keeps_the_readiness_verdict_and_the_recheck_sees_the_edit(env, webhook_sim):
    """The frontend loads a post carrying ``mcmpReadiness``, edits it and ``save()``s it."""
    import redis
    from bson import ObjectId

    from mcmp.config import get_settings
    from mcmp.worker.readiness.scan import Readiness

    uri = env["MCMP_MONGODB_URI"]
    slug = f"fe-{uuid.uuid4().hex[:6]}"
    both = {
        **post("two platforms", datetime.now(UTC) + timedelta(days=2)),
        "platforms": ["website", "linkedin"],
    }
    spec = {
        "client": {"name": "Ready Co", "slug": slug},
        "account": website(webhook_sim, slug),
        "posts": [both],
    }
    post_id = ObjectId(frontend("write", uri, spec)["posts"][0])
    readiness = Readiness(get_settings(), redis.Redis.from_url(env["MCMP_REDIS_URL"]))
    readiness.run()
    db = MongoClient(uri, tz_aware=True).get_default_database()
    before = db.posts.find_one({"_id": post_id})["mcmpReadiness"]
    assert before["ok"] is False and before["platforms"]["website"]["ok"] is True
    assert [p["code"] for p in before["platforms"]["linkedin"]["problems"]] == ["account_missing"]
    # the editor drops LinkedIn and saves: Mongoose keeps our field as it was
    edited = frontend(
        "edit", uri, {"post": str(post_id), "set": {"platforms": ["website"], "title": "website only"}}
    )
    kept = edited["stored"]["mcmpReadiness"]
    assert kept["ok"] is False and kept["platforms"]["linkedin"]["problems"][0]["code"] == "account_missing"
    readiness.run()  # the re-check sees the edit (Mongoose moved updatedAt)
    after = db.posts.find_one({"_id": post_id})
    assert after["title"] == "website only" and after["mcmpReadiness"]["ok"] is True
    assert list(after["mcmpReadiness"]["platforms"]) == ["website"]
    assert after["mcmpReadiness"]["postUpdatedAt"] == after["updatedAt"]
    assert after["updatedAt"].isoformat()[:23] == edited["updatedAt"][:23]  # our write never moved it
