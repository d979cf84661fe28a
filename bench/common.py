"""Shared scaffolding of the benchmarks: real processes on loopback, always stopped at the end."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from bson import ObjectId
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos.harness import PrivateRedis  # noqa: E402
from tests.services import Proc, SimClient, spawn, start_secantus, start_simulator  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Stack:
    """MongoDB + private Redis + webhook simulator + workers + dispatcher for one benchmark."""

    workdir: Path
    mongo_uri: str
    redis: PrivateRedis
    sim: SimClient
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    server_info: str = ""

    @property
    def db(self) -> Any:
        return MongoClient(self.mongo_uri, tz_aware=True).get_default_database()

    def start(self, name: str, *args: str) -> Proc:
        proc = spawn(name, [sys.executable, "-m", "worker.cli", *args], self.env, self.workdir / "logs")
        self.procs.append(proc)
        return proc

    def describe(self) -> str:
        load = os.getloadavg()[0]
        return (
            f"MongoDB: {self.server_info} | Redis: redis-server (private, loopback) | "
            f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()} | "
            f"load avg (1 min) at start: {load:.2f}"
        )


@contextmanager
def stack(workdir: Path, latency_ms: float, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    workdir.mkdir(parents=True, exist_ok=True)
    external = os.environ.get("MCMP_BENCH_MONGODB_URI")
    mongo_proc = None
    if external:
        base = external.rstrip("/") + "/"
    else:
        mongo_proc, base = start_secantus(workdir / "mongo")
    uri = f"{base}bench_{uuid.uuid4().hex[:8]}"
    info = MongoClient(base).server_info()
    server_info = f"{'SecantusDB' if mongo_proc else 'mongod'} {info.get('version')} ({'embedded' if mongo_proc else external})"
    private = PrivateRedis(workdir / "redis")
    private.start()
    env = dict(
        os.environ,
        MCMP_MONGODB_URI=uri,
        MCMP_REDIS_URL=private.url,
        MCMP_LOG_LEVEL="WARNING",
        MCMP_DISPATCH_INTERVAL_SECONDS="0.1",
        MCMP_LOOKAHEAD_SECONDS="2",
        MCMP_WEBSITE__TIMEOUT_SECONDS="10",
    )
    env.update(extra_env or {})
    sim_proc, sim_url = start_simulator("website", env, workdir / "logs", latency_ms=latency_ms)
    s = Stack(workdir, uri, private, SimClient(sim_url), env, [sim_proc], server_info)
    from models.db import connect, ensure_schema

    ensure_schema(connect(uri))
    try:
        yield s
    finally:
        for proc in reversed(s.procs):
            proc.stop()
        private.stop()
        if mongo_proc:
            mongo_proc.stop()


def seed_client(db: Any, sim_url: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    client = {
        "_id": ObjectId(),
        "name": "Bench",
        "slug": f"bench-{uuid.uuid4().hex[:6]}",
        "timezone": "UTC",
        "createdAt": now,
        "updatedAt": now,
    }
    db.clients.insert_one(client)
    db.integrationaccounts.insert_one(
        {
            "clientId": str(client["_id"]),
            "platform": "website",
            "status": "connected",
            "accessToken": "dev-webhook-secret",
            "createdAt": now,
            "updatedAt": now,
            "metadata": {"mode": "webhook", "webhookUrl": f"{sim_url}/hooks/{client['slug']}"},
        }
    )
    return client


def insert_spread(
    db: Any, client: dict[str, Any], start: datetime, count: int, seconds: float
) -> list[ObjectId]:
    """``count`` scheduled posts spread evenly over ``seconds`` from ``start`` (insert_many batches)."""
    ids: list[ObjectId] = []
    batch: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for i in range(count):
        doc = {
            "_id": ObjectId(),
            "clientId": str(client["_id"]),
            "title": f"Bench {i}",
            "body": f"bench post {i}",
            "platforms": ["website"],
            "assetUrls": [],
            "status": "scheduled",
            "scheduleTime": start + timedelta(seconds=seconds * i / max(1, count)),
            "platformPostIds": {},
            "publishedAt": {},
            "statusHistory": [],
            "createdAt": now,
            "updatedAt": now,
            "__v": 0,
        }
        batch.append(doc)
        ids.append(doc["_id"])
        if len(batch) == 5000:
            db.posts.insert_many(batch)
            batch = []
    if batch:
        db.posts.insert_many(batch)
    return ids


def wait_settled(db: Any, ids: list[ObjectId], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.posts.count_documents({"_id": {"$in": ids}, "status": "scheduled"}) == 0:
            return True
        time.sleep(1.0)
    return False


def redis_flush(url: str) -> None:
    redis.Redis.from_url(url).flushdb()


def git_rev() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "?"
