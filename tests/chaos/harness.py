"""A reusable chaos run: many posts due at once, platform faults, killed workers, two
dispatchers and a Redis restart — then an audit of the end state against the simulators' own
stores. Used by the webhook chaos test and by the per-platform chaos tests.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from mcmp.devstack import PrivateRedis, Proc, find_in, still_scheduled

FAULTS = [
    {"kind": "http_500", "rate": 0.10},
    {"kind": "commit_then_timeout", "rate": 0.05 / 0.90},  # ≈5% of all requests after the 500s
    {"kind": "rate_limit", "rate": 0.05 / 0.85, "retry_after": 1},
]


@dataclass
class ChaosReport:
    posts: int
    deliveries: int
    published: int
    duplicates: int
    lost: int
    mismatched_ids: int
    bad_history: int
    worker_kills: int
    redis_restarts: int
    seconds: float
    faults_fired: dict[str, int] = field(default_factory=dict)
    late_p50: float = float("nan")
    late_p99: float = float("nan")
    late_max: float = float("nan")
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        found = "".join(f"\n  {p}" for p in self.problems)
        return (
            f"chaos: posts={self.posts} deliveries={self.deliveries} published={self.published} "
            f"duplicates={self.duplicates} lost={self.lost} mismatched_ids={self.mismatched_ids} "
            f"bad_history={self.bad_history} worker_kills={self.worker_kills} "
            f"redis_restarts={self.redis_restarts} faults={self.faults_fired} seconds={self.seconds:.1f} "
            f"lateness p50={self.late_p50:.2f}s p99={self.late_p99:.2f}s max={self.late_max:.2f}s{found}"
        )


def insert_posts(
    db: Any,
    client: dict[str, Any],
    platforms_for: Callable[[int], list[str]],
    count: int,
    spread_seconds: float,
) -> list[ObjectId]:
    """Insert ``count`` Mongoose-shaped scheduled posts due within ``spread_seconds``."""
    now = datetime.now(UTC)
    docs = []
    for i in range(count):
        docs.append(
            {
                "_id": ObjectId(),
                "clientId": str(client["_id"]),
                "title": f"Chaos {i}",
                "body": f"Chaos post {i} {uuid.uuid4().hex[:6]}",
                "platforms": platforms_for(i),
                "assetUrls": [],
                "status": "scheduled",
                "scheduleTime": now + timedelta(seconds=2 + spread_seconds * i / count),
                "platformPostIds": {"_id": ObjectId()},
                "publishedAt": {"_id": ObjectId()},
                "statusHistory": [
                    {"_id": ObjectId(), "at": now, "fromStatus": "approved", "toStatus": "scheduled"}
                ],
                "createdAt": now,
                "updatedAt": now,
                "__v": 0,
            }
        )
    db.posts.insert_many(docs)
    return [d["_id"] for d in docs]


def run_chaos(
    db: Any,
    post_ids: list[ObjectId],
    start_worker: Callable[[], Proc],
    workers: list[Proc],
    private_redis: PrivateRedis,
    kills: int = 3,
    timeout: float = 240.0,
) -> tuple[int, int, float]:
    """Kill -9 a worker ``kills`` times and restart Redis once while the posts go out."""
    started = time.monotonic()
    rng = random.Random(7)
    done_kills = restarts = 0
    pending_ids = list(post_ids)
    schedule = [4.0 + 5.0 * i for i in range(kills)]
    redis_at = 9.0
    while True:
        elapsed = time.monotonic() - started
        if done_kills < kills and elapsed >= schedule[done_kills]:
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill9()
            done_kills += 1
            workers.append(start_worker())
        if restarts == 0 and elapsed >= redis_at:
            private_redis.restart()
            restarts += 1
        pending_ids = still_scheduled(db.posts, pending_ids)  # only those pending at the last look
        pending = len(pending_ids)
        if pending == 0 and done_kills >= kills and restarts:
            break
        if elapsed > timeout:
            stuck = [str(p) for p in pending_ids]
            detail = list(
                db.deliveries.find(
                    {"postId": {"$in": stuck[:5]}},
                    {
                        "state": 1,
                        "attempt": 1,
                        "lastError": 1,
                        "dueAt": 1,
                        "leaseUntil": 1,
                        "needsReconcile": 1,
                        "platform": 1,
                    },
                )
            )
            raise AssertionError(
                f"chaos run did not converge in {timeout}s: {pending} posts still scheduled: {detail}"
            )
        time.sleep(1.0)
    return done_kills, restarts, time.monotonic() - started


def audit(
    db: Any,
    post_ids: list[ObjectId],
    stored_by_platform: dict[str, list[dict[str, Any]]],
    key_of: Callable[[dict[str, Any]], str | None],
    id_of: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """Compare MongoDB with the simulators' own stores: duplicates, lost, id mismatches, history.

    ``problems`` describes each duplicated or lost delivery (its attempts, error, reconcile flag),
    so a failure that shows up one run in several can be explained from the report alone.
    """
    deliveries = {
        (d["postId"], d["platform"]): d for d in find_in(db.deliveries, "postId", [str(p) for p in post_ids])
    }
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for platform, stored in stored_by_platform.items():
        for item in stored:
            key = key_of(item)
            if key:
                by_key.setdefault((platform, key), []).append(item)
    duplicates = sum(len(v) - 1 for v in by_key.values() if len(v) > 1)
    by_id = {str(d["_id"]): d for d in deliveries.values()}
    problems = [
        f"duplicated on {platform}: {describe(by_id.get(key))} platform ids {[id_of(i) for i in items]}"
        for (platform, key), items in by_key.items()
        if len(items) > 1
    ]
    late = sorted(
        ((d.get("callStartedAt") or d.get("publishedAt")) - d["scheduledFor"]).total_seconds()
        for d in deliveries.values()
        if d.get("state") == "published"
        and d.get("scheduledFor")
        and (d.get("callStartedAt") or d.get("publishedAt"))
    )
    lost = mismatched = bad_history = published = 0
    for post in find_in(db.posts, "_id", post_ids):
        history = post.get("statusHistory", [])
        times = [h["at"] for h in history]
        if post["status"] != "published" or times != sorted(times) or history[-1]["toStatus"] != "published":
            bad_history += 1
        for platform in post["platforms"]:
            delivery = deliveries.get((str(post["_id"]), platform))
            stored = by_key.get((platform, str(delivery["_id"]))) if delivery else None
            if not stored:
                lost += 1
                problems.append(f"lost on {platform}: post {post['_id']} {describe(delivery)}")
                continue
            published += 1
            if post.get("platformPostIds", {}).get(platform) != id_of(stored[0]) or not post.get(
                "publishedAt", {}
            ).get(platform):
                mismatched += 1
    return {
        "duplicates": duplicates,
        "lost": lost,
        "mismatched_ids": mismatched,
        "bad_history": bad_history,
        "published": published,
        "deliveries": len(deliveries),
        "problems": problems,
        "late_p50": _pct(late, 50),
        "late_p99": _pct(late, 99),
        "late_max": late[-1] if late else float("nan"),
    }


def _pct(ordered: list[float], pct: float) -> float:
    """The lateness tail a user would notice (publish call start − scheduleTime), default leases."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def describe(delivery: dict[str, Any] | None) -> str:
    """The delivery fields that tell how it ended up duplicated or lost."""
    if delivery is None:
        return "no delivery"
    fields = ("state", "attempt", "needsReconcile", "lastError", "callStartedAt", "publishedAt", "createdAt")
    return f"delivery {delivery['_id']} " + " ".join(f"{f}={delivery.get(f)!r}" for f in fields)
