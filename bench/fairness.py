"""One tenant's backlog on a slow site with slow media, and another tenant's posts beside it.

    .venv/bin/python -m bench.fairness                      # noisy tenant at 0, 150 and 500 posts
    .venv/bin/python -m bench.fairness --noisy 150 --site-latency-ms 8000 --media-delay 2.5

The dev stack's worker layout and default settings (``mcmp dev``: a publish worker of 2
processes, the long lane's worker of threads, one dispatcher): tenant A ("noisy") has N posts due
together on a website whose webhook answers after ``--site-latency-ms``, each post with 4 image
URLs on a loopback host that answers every request after ``--media-delay`` seconds; tenant B
("quiet") has 10 plain Facebook posts due 3 to 7.5 s later. Printed: B's lateness (platform call
start − scheduled time) p50/p99/max, how long A took to drain (its last publish − its due time),
and what the simulators saw twice (must be 0).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from bson import ObjectId

from bench.common import Stack, find_in, git_rev, insert_docs, percentile, scheduled_post, stack, wait_settled
from mcmp.cli import dev
from mcmp.devstack import SimClient, start_simulator
from mcmp.devstack.media import MediaHost
from mcmp.worker import liveness

# The dev stack's layout (an older checkout, run with --before, had one worker of 2 processes).
PUBLISH_WORKER_ARGS: list[str] = getattr(dev, "PUBLISH_WORKER_ARGS", ["worker", "-c", "2"])
LONG_WORKER_ARGS: list[str] | None = getattr(dev, "LONG_WORKER_ARGS", None)
QUIET_POSTS = 10
QUIET_AFTER = 3.0  # B's first post is due this long after A's
QUIET_SPREAD = 4.5  # ... and its last this much later (3 to 7.5 s)
MEDIA_PER_POST = 4


@dataclass
class Outcome:
    noisy: int
    quiet_late: list[float]
    quiet_published: int
    noisy_published: int
    noisy_drain: float | None
    duplicates: int
    settled: bool

    def row(self) -> str:
        late = self.quiet_late
        cells = [percentile(late, 50), percentile(late, 99), max(late, default=float("nan"))]
        drain = f"{self.noisy_drain:8.1f}" if self.noisy_drain is not None else f"{'-':>8}"
        return (
            f"{self.noisy:>6} {cells[0]:>8.3f} {cells[1]:>8.3f} {cells[2]:>8.3f} "
            f"{self.quiet_published:>3}/{QUIET_POSTS:<3} {self.noisy_published:>5}/{self.noisy:<5} {drain} "
            f"{self.duplicates:>5}{'' if self.settled else '  (not drained in time)'}"
        )


HEADER = (
    f"{'A posts':>6} {'B p50 s':>8} {'B p99 s':>8} {'B max s':>8} {'B pub':>7} {'A pub':>11} "
    f"{'A drain s':>8} {'dups':>5}"
)


@dataclass
class Fleet:
    """The running stack: MongoDB, Redis, the slow site, Facebook, the media host, the dev workers."""

    s: Stack
    site: SimClient
    facebook: SimClient
    media: MediaHost

    def client(self, name: str, platform: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        client = {
            "_id": ObjectId(),
            "name": name,
            "slug": f"{name}-{uuid.uuid4().hex[:6]}",
            "timezone": "UTC",
        }
        client.update(createdAt=now, updatedAt=now)
        self.s.db.clients.insert_one(client)
        account: dict[str, Any] = {
            "clientId": str(client["_id"]),
            "platform": platform,
            "status": "connected",
            "createdAt": now,
            "updatedAt": now,
        }
        if platform == "website":
            hook = f"{self.site.base_url}/hooks/{client['slug']}"
            account.update(accessToken="dev-webhook-secret", metadata={"mode": "webhook", "webhookUrl": hook})
        else:
            account.update(accessToken="EAAB-test-page", externalAccountId="1000001", metadata={})
        self.s.db.integrationaccounts.insert_one(account)
        return client


@contextmanager
def start(workdir: Path, site_latency_ms: float) -> Iterator[Fleet]:
    """The fleet, stopped at the end whatever happens."""
    with stack(workdir, site_latency_ms) as s:
        s.env.pop("MCMP_WEBSITE__TIMEOUT_SECONDS", None)  # default settings, as mcmp dev runs
        proc, fb_url = start_simulator("facebook", s.env, workdir / "logs")
        s.procs.append(proc)
        s.env["MCMP_FACEBOOK__BASE_URL"] = fb_url
        media = MediaHost()
        try:
            workers = [s.start("worker", *PUBLISH_WORKER_ARGS)]
            if LONG_WORKER_ARGS is not None:
                workers.append(s.start("worker-long", *LONG_WORKER_ARGS))
            s.start("dispatcher", "dispatcher")
            deadline = time.monotonic() + 90
            live = redis.Redis.from_url(s.env["MCMP_REDIS_URL"])
            # Each worker registers its liveness when it is ready (mcmp.worker.liveness.announce).
            while int(live.zcard(liveness.MEMBERS)) < len(workers):
                if any(not w.alive() for w in workers) or time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not start within 90 s; see {workdir / 'logs'}")
                time.sleep(0.3)
            yield Fleet(s, s.sim, SimClient(fb_url), media)
        finally:
            media.stop()


def run(
    fleet: Fleet, noisy: int, media_delay: float, lead: float = 6.0, images: int = MEDIA_PER_POST
) -> Outcome:
    """Seed both tenants, wait for every post to settle, read lateness, drain time and duplicates."""
    db = fleet.s.db
    fleet.site.reset()
    fleet.facebook.reset()
    a = fleet.client("noisy", "website")
    b = fleet.client("quiet", "facebook")
    due = datetime.now(UTC) + timedelta(seconds=lead)
    now = datetime.now(UTC)
    run_id = uuid.uuid4().hex[:6]
    a_docs = [
        scheduled_post(
            str(a["_id"]),
            ["website"],
            due,
            title=f"noisy {i}",
            body=f"noisy post {i}",
            asset_urls=[fleet.media.image(f"{run_id}-{i}-{k}.jpg", delay=media_delay) for k in range(images)],
            now=now,
            _id=ObjectId(),
        )
        for i in range(noisy)
    ]
    b_docs = [
        scheduled_post(
            str(b["_id"]),
            ["facebook"],
            due + timedelta(seconds=QUIET_AFTER + QUIET_SPREAD * i / max(1, QUIET_POSTS - 1)),
            title=f"quiet {i}",
            body=f"quiet post {run_id} {i}",
            now=now,
            _id=ObjectId(),
        )
        for i in range(QUIET_POSTS)
    ]
    a_ids = insert_docs(db.posts, a_docs) if a_docs else []
    b_ids = insert_docs(db.posts, b_docs)
    settled = wait_settled(db, a_ids + b_ids, timeout=120 + noisy * 1.5)
    fields = {"state": 1, "callStartedAt": 1, "scheduledFor": 1, "publishedAt": 1}
    b_rows = [r for r in find_in(db.deliveries, "postId", [str(i) for i in b_ids], projection=fields)]
    a_rows = [r for r in find_in(db.deliveries, "postId", [str(i) for i in a_ids], projection=fields)]
    b_pub = [r for r in b_rows if r.get("state") == "published" and r.get("callStartedAt")]
    a_pub = [r for r in a_rows if r.get("state") == "published"]
    late = [(r["callStartedAt"] - r["scheduledFor"]).total_seconds() for r in b_pub]
    drain = max(((r["publishedAt"] - due).total_seconds() for r in a_pub), default=None)
    site, facebook = fleet.site.state(), fleet.facebook.state()
    duplicates = int(site.get("duplicates", 0)) + int(facebook.get("duplicates", 0))
    duplicates += max(0, int(site.get("count", 0)) - noisy)  # a post of A received twice
    return Outcome(noisy, late, len(b_pub), len(a_pub), drain, duplicates, settled)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--noisy", default="0,150,500", help="tenant A's post counts, one run each")
    parser.add_argument("--site-latency-ms", type=float, default=8000.0)
    parser.add_argument("--media-delay", type=float, default=2.5)
    parser.add_argument(
        "--images", type=int, default=MEDIA_PER_POST, help="image URLs per post of A (0: a slow site alone)"
    )
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        start(Path(tmp), args.site_latency_ms) as fleet,
    ):
        print(f"# bench/fairness.py @ {git_rev()} — {fleet.s.describe()}")
        print(
            f"# mcmp dev's workers ({' | '.join(' '.join(a) for a in (PUBLISH_WORKER_ARGS, LONG_WORKER_ARGS) if a)}), default "
            f"settings; A: website answering after {args.site_latency_ms / 1000:g} s, {args.images} images "
            f"each answering after {args.media_delay:g} s; B: {QUIET_POSTS} Facebook posts due "
            f"{QUIET_AFTER:g}–{QUIET_AFTER + QUIET_SPREAD:g} s after A's"
        )
        print(HEADER, flush=True)
        for count in (int(n) for n in args.noisy.split(",")):
            print(run(fleet, count, args.media_delay, images=args.images).row(), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
