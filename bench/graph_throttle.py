"""Draining a backlog into a Facebook Page that throttles above N posts per minute.

    .venv/bin/python -m bench.graph_throttle                       # 600 posts, 300/min, regain time announced
    .venv/bin/python -m bench.graph_throttle --no-regain           # bare code 32: our escalating blocks
    .venv/bin/python -m bench.graph_throttle --posts 100 --per-minute 60

All posts are due at once. The Facebook twin refuses a post that would make more than
``--per-minute`` posts of the Page in the trailing minute (Graph code 32 with ``X-Page-Usage``,
``estimated_time_to_regain_access`` unless ``--no-regain``). Reported: drain time against the
Page's own minimum (``posts / per-minute`` minutes, the first minute's burst included), the
longest stall between two accepted posts against the longest block the Page announced (or our
longest block without announcements), the throttles taken, duplicates and lost posts (both
must be 0).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from bson import ObjectId

from bench.common import add_common_args, stack, wait_settled
from mcmp.devstack import scheduled_post, start_simulator
from mcmp.worker import rate_limit

PAGE = "1000001"
TOKEN = "EAAB-bench-page"


@dataclass
class Drain:
    posts: int
    per_minute: int
    published: int
    duplicates: int
    drain_seconds: float
    longest_stall: float
    announced: float | None  # the longest block the Page announced (None: never announced one)
    throttles: int
    # per throttle episode: when, the wait to the next call that reached the Page, the block announced
    episodes: list[tuple[float, float, float | None]]
    window: float = 60.0

    @property
    def minimum_seconds(self) -> float:
        """The backlog at the Page's allowed rate (``per_minute`` posts per window)."""
        return self.posts / self.per_minute * self.window

    @property
    def overrun(self) -> float:
        """How much longer than announced the longest post-throttle wait was (≤ 0: never longer)."""
        return max((wait - a for _, wait, a in self.episodes if a is not None), default=0.0)

    @property
    def lost(self) -> int:
        return self.posts - self.published

    def line(self) -> str:
        announced = f"{self.announced:.0f} s" if self.announced is not None else "none (bare code 32)"
        return (
            f"posts={self.posts} limit={self.per_minute}/{self.window:.0f}s published={self.published} "
            f"duplicates={self.duplicates} lost={self.lost} drain={self.drain_seconds:.1f} s "
            f"(Page minimum {self.minimum_seconds:.0f} s, {self.drain_seconds / max(1.0, self.minimum_seconds):.2f}×) "
            f"longest stall={self.longest_stall:.1f} s announced block={announced} throttles={self.throttles} "
            f"in {len(self.episodes)} episodes, waits after them "
            f"{[round(w, 1) for _, w, _ in self.episodes]} s (overrun vs announced {self.overrun:+.1f} s)"
        )


def facebook_posts(db: Any, client_id: str, count: int, label: str) -> list[ObjectId]:
    now = datetime.now(UTC)
    docs = [
        scheduled_post(
            client_id,
            ["facebook"],
            now,
            title=f"{label} {i}",
            body=f"{label} post {i}",
            now=now,
            _id=ObjectId(),
        )
        for i in range(count)
    ]
    db.posts.insert_many(docs)
    return [d["_id"] for d in docs]


def facebook_account(db: Any) -> str:
    now = datetime.now(UTC)
    client = {
        "_id": ObjectId(),
        "name": "Throttled",
        "slug": f"thr-{uuid.uuid4().hex[:6]}",
        "timezone": "UTC",
    }
    db.clients.insert_one({**client, "createdAt": now, "updatedAt": now})
    db.integrationaccounts.insert_one(
        {
            "clientId": str(client["_id"]),
            "platform": "facebook",
            "status": "connected",
            "accessToken": TOKEN,
            "externalAccountId": PAGE,
            "metadata": {},
            "createdAt": now,
            "updatedAt": now,
        }
    )
    return str(client["_id"])


def throttle(sim_url: str, per_minute: int, regain: bool, window_seconds: float = 60.0) -> None:
    requests.post(
        f"{sim_url}/_sim/throttle",
        json={"posts_per_minute": per_minute, "regain": regain, "window_seconds": window_seconds},
        timeout=5,
    ).raise_for_status()
    requests.post(
        f"{sim_url}/_sim/budget",
        json={"app_call_limit": 10_000_000, "owner_call_limit": 10_000_000},
        timeout=5,
    ).raise_for_status()


def measure(
    sim_url: str,
    count: int,
    per_minute: int,
    db: Any,
    ids: list[ObjectId],
    timeout: float,
    window: float = 60.0,
) -> Drain:
    """Wait for the backlog, then read the Page's own record (the twin's posts and refusals)."""
    wait_settled(db, ids, timeout)
    state = requests.get(f"{sim_url}/_sim/state", timeout=10).json()
    times = sorted(p["created_time"] for p in state["posts"] if p["page_id"] == PAGE)
    published = db.posts.count_documents({"_id": {"$in": ids}, "status": "published"})
    first_due = min(d["scheduleTime"] for d in db.posts.find({"_id": {"$in": ids}}, {"scheduleTime": 1}))
    start = first_due.timestamp() if isinstance(first_due, datetime) else times[0]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    announced = [e["announced"] for e in state["throttle_log"] if e["announced"] is not None]
    # An episode: refusals close together (calls that were in flight at once). Its wait runs to
    # the next call that reached the Page: an accepted post or the next episode's first refusal.
    events = sorted(state["throttle_log"], key=lambda e: e["t"])
    starts = [e for i, e in enumerate(events) if i == 0 or e["t"] - events[i - 1]["t"] > 3.0]
    episodes: list[tuple[float, float, float | None]] = []
    for i, event in enumerate(starts):
        last_refusal = max(
            e["t"]
            for e in events
            if e["t"] >= event["t"] and (i + 1 == len(starts) or e["t"] < starts[i + 1]["t"])
        )
        reached = [t for t in times if t > last_refusal] + (
            [starts[i + 1]["t"]] if i + 1 < len(starts) else []
        )
        if reached:
            episodes.append((event["t"], min(reached) - event["t"], event["announced"]))
    return Drain(
        posts=count,
        per_minute=per_minute,
        published=published,
        duplicates=state["duplicate_markers"] + state["duplicates"],
        drain_seconds=(times[-1] - start) if times else 0.0,
        longest_stall=max(gaps, default=0.0),
        announced=max(announced) if announced else None,
        throttles=state["throttled"],
        episodes=episodes,
        window=window,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--per-minute", type=int, default=300)
    parser.add_argument(
        "--no-regain", action="store_true", help="code 32 without estimated_time_to_regain_access"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    add_common_args(parser)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mcmp-graph-throttle-"))
    pace = f"{args.per_minute / 60.0:.3f}"
    extra = {"MCMP_FACEBOOK__PACE_CALLS_PER_SECOND": pace, "MCMP_FACEBOOK__TIMEOUT_SECONDS": "10"}
    with stack(workdir, args.latency_ms, extra, mongodb_uri=args.mongodb_uri) as s:
        proc, sim_url = start_simulator("facebook", s.env, workdir / "logs", latency_ms=args.latency_ms)
        s.procs.append(proc)
        s.env["MCMP_FACEBOOK__BASE_URL"] = sim_url
        throttle(sim_url, args.per_minute, regain=not args.no_regain)
        client_id = facebook_account(s.db)
        s.start_publishing(workers=1, concurrency=args.concurrency)
        started = time.monotonic()
        ids = facebook_posts(s.db, client_id, args.posts, "Throttle")
        drain = measure(sim_url, args.posts, args.per_minute, s.db, ids, timeout=30 * 60)
        print(f"graph throttle: {drain.line()} (wall {time.monotonic() - started:.0f} s, pace {pace}/s)")
        print(
            f"escalation: first {rate_limit.ESCALATE_FIRST_SECONDS:.0f} s, cap {rate_limit.ESCALATE_MAX_SECONDS:.0f} s"
        )
        print(s.describe())


if __name__ == "__main__":
    main()
