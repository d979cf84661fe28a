"""A burst: 10,000 posts due in the same minute — time to drain, duplicates and lost posts.

    .venv/bin/python -m bench.bulk                           # 10,000 posts within one minute
    .venv/bin/python -m bench.bulk --posts 1000              # quick

Posts are scheduled uniformly over ``--window`` seconds (one minute by default). Drain time is
from the first scheduleTime to the last publish call; the audit compares MongoDB with the
webhook simulator's own store (which keeps every accepted POST): duplicates = posts received
more than once, lost = posts the simulator never received.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    add_common_args,
    add_worker_args,
    git_rev,
    insert_spread,
    load_avg,
    our_lateness,
    percentile,
    seed_client,
    stack,
    wait_settled,
)
from mcmp.devstack import find_in


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which the posts are due")
    add_worker_args(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri) as s,
    ):
        print(f"# bench/bulk.py @ {git_rev()} — {s.describe()}")
        print(
            f"# {args.posts} posts due within {args.window:g} s; {args.workers} worker(s) × {args.concurrency} "
            f"threads, 1 dispatcher, platform latency {args.latency_ms:g} ms"
        )
        db = s.db
        client = seed_client(db, s.sim.base_url)
        s.start_publishing(args.workers, args.concurrency, tag="bulk")
        load = load_avg()
        first_due = datetime.now(UTC) + timedelta(seconds=5 + args.posts / 5000)
        ids = insert_spread(db, client, first_due, args.posts, args.window)
        settled = wait_settled(db, ids, timeout=args.posts / 5 + 600)
        result = our_lateness(db, ids)
        last_call = max(
            (r["callStartedAt"] for r in db.deliveries.find({"state": "published"}, {"callStartedAt": 1})),
            default=first_due,
        )
        drain = (last_call - first_due).total_seconds()
        state = s.sim.state()
        received = Counter(p.get("postId") for p in state["posts"])
        wanted = {str(i) for i in ids}
        lost = len(wanted - set(received))
        duplicates = sum(n - 1 for key, n in received.items() if key in wanted and n > 1)
        statuses = Counter(d["status"] for d in find_in(db.posts, "_id", ids, projection={"status": 1}))
        print(
            f"{'posts':>6} {'window s':>8} {'drain s':>8} {'deliv/s':>8} {'p50 late s':>10} {'p99 late s':>10} "
            f"{'max late s':>10} {'received':>8} {'dups':>5} {'lost':>5}  post statuses / load"
        )
        print(
            f"{args.posts:>6} {args.window:>8.0f} {drain:>8.1f} {result.achieved:>8.1f} "
            f"{percentile(result.late, 50):>10.2f} {percentile(result.late, 99):>10.2f} "
            f"{max(result.late, default=float('nan')):>10.2f} {state['count']:>8} {duplicates:>5} {lost:>5}  "
            f"{dict(statuses)} / {load}{'' if settled else ' (not drained in time)'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
