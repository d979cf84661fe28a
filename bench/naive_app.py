"""The naive design a user might write instead of ours: one Celery task per post, sent when the
post is scheduled with ``apply_async(eta=scheduleTime)``, publishing through the same webhook.

    NAIVE_BROKER_URL=redis://… NAIVE_MONGODB_URI=mongodb://…/db \\
        python -m celery -A bench.naive_app worker -P threads -c 8 -Q naive

Kept deliberately simple and reasonable (keep-alive HTTP session per thread, a conditional
status update, an idempotency key the simulator can count): it is the baseline of
``bench/baseline_eta.py``, not a strawman. What it cannot avoid is the design itself: every
future post is a message the worker holds in memory until its ETA (Celery moves ETA messages
into the worker at once), and Redis redelivers them after the visibility timeout.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from typing import Any

import requests
from bson import ObjectId
from celery import Celery
from pymongo import MongoClient

from mcmp.connectors.signing import signed_headers

COLLECTION = "naive_posts"
QUEUE = "naive"

app = Celery("naive", broker=os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/1"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    enable_utc=True,
)

_local = threading.local()
_db_lock = threading.Lock()
_db: Any = None


def _database() -> Any:
    global _db
    with _db_lock:
        if _db is None:
            _db = MongoClient(os.environ["NAIVE_MONGODB_URI"], tz_aware=True).get_default_database()
    return _db


def _session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


@app.task(name="naive.publish")
def publish(post_id: str) -> str:
    """Read the post and its account, POST the signed webhook, mark the post published."""
    db = _database()
    post = db[COLLECTION].find_one({"_id": ObjectId(post_id)})
    if post is None or post.get("status") != "scheduled":
        return "skipped"
    account = db.integrationaccounts.find_one({"clientId": post["clientId"], "platform": "website"})
    body = json.dumps({"title": post["title"], "body": post["body"], "postId": post_id}).encode()
    url = account["metadata"]["webhookUrl"]
    headers = {
        "Content-Type": "application/json",
        **signed_headers(account["accessToken"], "POST", url, post_id, body),
    }
    started = datetime.now(UTC)
    resp = _session().post(url, data=body, headers=headers, timeout=10, allow_redirects=False)
    resp.raise_for_status()
    now = datetime.now(UTC)
    db[COLLECTION].update_one(
        {"_id": post["_id"], "status": "scheduled"},
        {
            "$set": {
                "status": "published",
                "platformPostIds.website": resp.json()["id"],
                "publishedAt.website": now,
                "callStartedAt": started,
                "updatedAt": now,
            }
        },
    )
    return "published"
