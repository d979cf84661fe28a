"""Cost of readiness: a pass must grow with the posts that changed, not with the future posts.

    .venv/bin/python -m bench.readiness                       # 100,000 future posts, 100 edits/s for 30 s
    .venv/bin/python -m bench.readiness --future 10000 --seconds 10      # quick

The real ``Readiness`` runs in this process, a pass every ``MCMP_READINESS_INTERVAL_SECONDS`` as
beat sends it, on an embedded SecantusDB and a private Redis. ``--future`` posts over the next
30 days (20 tenants, a website account each) are seeded with ``insert_many`` in batches of
5,000 (timed), and already carry a verdict (the steady state of a running system). Then an
editor thread changes ``--rate`` random posts a second (body and ``updatedAt``, as Mongoose's
``save()`` does) for ``--seconds``. Printed: the idle pass before the edits, each pass's time
and what it marked and checked, the time from each edit to its verdict (p50/p99/max), the
backlog of marked posts at the end, and MongoDB's own plan for the changed-posts scan.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId

from bench.common import add_common_args, git_rev, load_avg, percentile, stack
from bench.dispatcher_tick import explain
from mcmp.devstack.documents import scheduled_post

TENANTS = 20


def seed(db: Any, count: int) -> tuple[list[ObjectId], float]:
    """``count`` future posts over 30 days across TENANTS clients, each with a current verdict."""
    now = datetime.now(UTC)
    clients = []
    for i in range(TENANTS):
        stamp = now - timedelta(hours=1)  # judged long ago, like every post below
        client = {
            "_id": ObjectId(),
            "name": f"Tenant {i}",
            "slug": f"t{i}-{ObjectId()}",
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        db.clients.insert_one(client)
        db.integrationaccounts.insert_one(
            {
                "clientId": str(client["_id"]),
                "platform": "website",
                "status": "connected",
                "accessToken": "dev-webhook-secret",
                "metadata": {"mode": "webhook", "webhookUrl": "http://127.0.0.1:9/hook"},
                "createdAt": stamp,
                "updatedAt": stamp,
            }
        )
        clients.append(str(client["_id"]))
    stamp = now - timedelta(hours=1)
    verdict = {
        "checkedAt": stamp,
        "ok": True,
        "postUpdatedAt": stamp,
        "platforms": {"website": {"ok": True, "problems": []}},
    }
    ids: list[ObjectId] = []
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for i in range(count):
        doc = scheduled_post(
            clients[i % TENANTS],
            ["website"],
            now + timedelta(hours=2) + timedelta(seconds=30 * 86400 * i / count),
            title=f"Future {i}",
            body=f"future post {i}",
            now=stamp,
            _id=ObjectId(),
            mcmpReadiness={**verdict, "scheduleTime": None},
        )
        batch.append(doc)
        ids.append(doc["_id"])
        if len(batch) == 5000:
            db.posts.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.posts.insert_many(batch, ordered=False)
    return ids, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--future", type=int, default=100_000, help="future posts seeded")
    parser.add_argument("--rate", type=float, default=100.0, help="edits per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the edits go on")
    add_common_args(parser)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri) as s,
    ):
        for key, value in s.env.items():
            if key.startswith("MCMP_"):
                os.environ[key] = value
        import redis

        from mcmp.config.settings import get_settings
        from mcmp.worker.readiness import scan

        get_settings.cache_clear()
        settings = get_settings()
        db = s.db
        print(f"# bench/readiness.py @ {git_rev()} — {s.describe()}")
        ids, seeded = seed(db, args.future)
        print(
            f"# seeded {args.future} future posts ({TENANTS} tenants) with insert_many x5000 in {seeded:.1f} s",
            flush=True,
        )
        client = redis.Redis.from_url(settings.redis_url)
        readiness = scan.Readiness(settings, client)
        now = datetime.now(UTC)
        client.set(scan.PREFIX + "cursor:posts", now.isoformat())  # a running system: all judged
        for name in ("integrationaccounts", "campaigns", "clients"):
            client.set(scan.PREFIX + f"cursor:{name}", now.isoformat())
        readiness.run()
        t0 = time.perf_counter()
        idle = readiness.run()
        idle_ms = (time.perf_counter() - t0) * 1000
        print(
            f"# idle pass with {args.future} future posts: {idle_ms:.1f} ms (marked {idle.marked}, checked {idle.checked})"
        )
        edits: dict[ObjectId, float] = {}
        stop = threading.Event()

        def editor() -> None:
            interval = 1.0 / args.rate
            next_at = time.monotonic()
            end = next_at + args.seconds
            while time.monotonic() < end and not stop.is_set():
                post_id = random.choice(ids)
                at = datetime.now(UTC)
                db.posts.update_one(
                    {"_id": post_id}, {"$set": {"body": f"edited {at.isoformat()}", "updatedAt": at}}
                )
                edits[post_id] = at.timestamp()
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

        thread = threading.Thread(target=editor, daemon=True)
        print(f"{'t s':>6} {'pass ms':>8} {'marked':>7} {'checked':>8} {'backlog':>8}  load", flush=True)
        passes: list[float] = []
        begin = time.monotonic()
        thread.start()
        quiet = 0  # passes since the editor stopped that found nothing left to do
        while thread.is_alive() or (quiet < 2 and time.monotonic() - begin < args.seconds + 120):
            started = time.monotonic()
            stats = readiness.run()
            if not thread.is_alive():
                quiet = quiet + 1 if stats.marked == 0 and _backlog(client) == 0 else 0
            took = time.monotonic() - started
            passes.append(took)
            print(
                f"{started - begin:>6.1f} {took * 1000:>8.0f} {stats.marked:>7} {stats.checked:>8} {_backlog(client):>8}  {load_avg()}",
                flush=True,
            )
            time.sleep(max(0.0, settings.readiness_interval_seconds - took))
        stop.set()
        latencies = []
        stale = 0
        for doc in db.posts.find({"_id": {"$in": list(edits)}}, {"updatedAt": 1, "mcmpReadiness": 1}):
            verdict = doc.get("mcmpReadiness") or {}
            judged = verdict.get("postUpdatedAt")
            if judged is None or judged.replace(tzinfo=UTC) != doc["updatedAt"].replace(tzinfo=UTC):
                stale += 1
                continue
            latencies.append(verdict["checkedAt"].replace(tzinfo=UTC).timestamp() - edits[doc["_id"]])
        print(
            f"# {len(edits)} posts edited ({args.rate:g}/s for {args.seconds:g} s): edit → verdict "
            f"p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s, max {max(latencies, default=float('nan')):.2f} s; "
            f"{stale} without a current verdict; pass p50 {percentile(passes, 50) * 1000:.0f} ms, max {max(passes) * 1000:.0f} ms"
        )
        since = datetime.now(UTC) - timedelta(
            seconds=settings.readiness_interval_seconds + settings.readiness_scan_overlap_seconds
        )
        print(
            "# changed-posts scan: "
            + explain(
                db.posts.find({"updatedAt": {"$gt": since}}, {"_id": 1}).sort("updatedAt", 1).limit(1000)
            )
        )


def _backlog(client: Any) -> int:
    from mcmp.worker.readiness import scan

    return sum(int(client.zcard(scan.pending_key(m.decode()))) for m in client.smembers(scan.CLIENTS))


if __name__ == "__main__":
    main()
