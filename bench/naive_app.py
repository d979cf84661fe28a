"""The naive design a user might write instead of ours: one Celery task per post, sent when the
post is scheduled with ``apply_async(eta=scheduleTime)``, publishing to each of its platforms in turn (webhook, Graph, LinkedIn, Google) over the same simulators.

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


def _post_website(post: dict[str, Any], account: dict[str, Any], post_id: str) -> str:
    body = json.dumps({"title": post["title"], "body": post["body"], "postId": post_id}).encode()
    url = account["metadata"]["webhookUrl"]
    headers = {
        "Content-Type": "application/json",
        **signed_headers(account["accessToken"], "POST", url, post_id, body),
    }
    resp = _session().post(url, data=body, headers=headers, timeout=10, allow_redirects=False)
    resp.raise_for_status()
    return str(resp.json()["id"])


def _post_facebook(post: dict[str, Any], account: dict[str, Any], post_id: str) -> str:
    base = os.environ.get("MCMP_FACEBOOK__BASE_URL", "https://graph.facebook.com").rstrip("/")
    version = os.environ.get("MCMP_FACEBOOK__API_VERSION", "v21.0")
    resp = _session().post(
        f"{base}/{version}/{account['externalAccountId']}/feed",
        data={"message": post["body"], "access_token": account["accessToken"]},
        timeout=10,
    )
    resp.raise_for_status()
    return str(resp.json()["id"])


def _post_linkedin(post: dict[str, Any], account: dict[str, Any], post_id: str) -> str:
    base = os.environ.get("MCMP_LINKEDIN__BASE_URL", "https://api.linkedin.com").rstrip("/")
    body = {
        "author": account["externalAccountId"],
        "commentary": post["body"],
        "visibility": "PUBLIC",
        "distribution": {
            "feedDistribution": "MAIN_FEED",
            "targetEntities": [],
            "thirdPartyDistributionChannels": [],
        },
        "lifecycleState": "PUBLISHED",
    }
    headers = {
        "Authorization": f"Bearer {account['accessToken']}",
        "LinkedIn-Version": os.environ.get("MCMP_LINKEDIN__API_VERSION", "202607"),
        "X-Restli-Protocol-Version": "2.0.0",
        "Content-Type": "application/json",
    }
    resp = _session().post(f"{base}/rest/posts", data=json.dumps(body), headers=headers, timeout=10)
    resp.raise_for_status()
    return str(resp.headers["x-restli-id"])


def _post_google(post: dict[str, Any], account: dict[str, Any], post_id: str) -> str:
    base = os.environ.get("MCMP_GOOGLE_BUSINESS__BASE_URL", "https://mybusiness.googleapis.com").rstrip("/")
    body = {"languageCode": "en", "summary": post["body"], "topicType": "STANDARD"}
    resp = _session().post(
        f"{base}/v4/{account['externalAccountId']}/localPosts",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {account['accessToken']}", "Content-Type": "application/json"},
        timeout=10,
    )
    resp.raise_for_status()
    return str(resp.json()["name"])


PUBLISHERS = {
    "website": _post_website,
    "facebook": _post_facebook,
    "linkedin": _post_linkedin,
    "google-business": _post_google,
}


@app.task(name="naive.publish")
def publish(post_id: str) -> str:
    """Read the post and its accounts, publish to each of its platforms in turn, mark it published.

    One task per post however many platforms it goes to: a failure on one platform fails the task
    (and a redelivery repeats the platforms already done) — the naive design's trade.
    """
    db = _database()
    post = db[COLLECTION].find_one({"_id": ObjectId(post_id)})
    if post is None or post.get("status") != "scheduled":
        return "skipped"
    done: dict[str, Any] = {}
    for platform in post.get("platforms") or []:
        account = db.integrationaccounts.find_one({"clientId": post["clientId"], "platform": platform})
        started = datetime.now(UTC)
        external_id = PUBLISHERS[platform](post, account, post_id)
        done[f"platformPostIds.{platform}"] = external_id
        done[f"publishedAt.{platform}"] = datetime.now(UTC)
        done[f"callStartedAt.{platform}"] = started
    now = datetime.now(UTC)
    db[COLLECTION].update_one(
        {"_id": post["_id"], "status": "scheduled"},
        {"$set": {"status": "published", "updatedAt": now, **done}},
    )
    return "published"
