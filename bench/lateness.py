"""Publish lateness (publish call start − scheduleTime) at offered loads, through real processes.

    .venv/bin/python bench/lateness.py                      # 50,100,200,400 deliveries/s, 10 s each
    .venv/bin/python bench/lateness.py --rates 100 --seconds 20 --workers 2 --concurrency 8

Posts are spread evenly over a window at each offered rate; the webhook simulator answers after
``--latency-ms`` (default 50 ms). Lateness is read from each delivery (``callStartedAt`` −
``scheduledFor``), so it measures the dispatcher hand-off, the broker, the worker's preflight
and the database, not the platform call itself.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import git_rev, insert_spread, percentile, seed_client, stack, wait_settled


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each offered-load window")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (Celery parents)")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp, stack(Path(tmp), args.latency_ms) as s:
        print(f"# bench/lateness.py @ {git_rev()} — {s.describe()}")
        print(
            f"# {args.workers} worker(s) × {args.concurrency} ({args.pool}), 1 dispatcher, platform latency {args.latency_ms:g} ms"
        )
        db = s.db
        client = seed_client(db, s.sim.base_url)
        for i in range(args.workers):
            s.start(
                f"worker{i}", "worker", "-c", str(args.concurrency), "--pool", args.pool, "-n", f"bench{i}@%h"
            )
        s.start("dispatcher", "dispatcher")
        time.sleep(6)  # workers and dispatcher up
        print(
            f"{'offered/s':>9} {'posts':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7} {'achieved/s':>10} {'dups':>5} {'lost':>5}"
        )
        for rate in [float(r) for r in args.rates.split(",")]:
            count = int(rate * args.seconds)
            start = datetime.now(UTC) + timedelta(seconds=4)
            ids = insert_spread(db, client, start, count, args.seconds)
            settled = wait_settled(db, ids, timeout=args.seconds * 10 + 120)
            rows = list(
                db.deliveries.find(
                    {"postId": {"$in": [str(i) for i in ids]}, "state": "published"},
                    {"callStartedAt": 1, "scheduledFor": 1, "publishedAt": 1},
                )
            )
            late = [
                (r["callStartedAt"] - r["scheduledFor"]).total_seconds()
                for r in rows
                if r.get("callStartedAt")
            ]
            first = min((r["callStartedAt"] for r in rows), default=None)
            last = max((r["callStartedAt"] for r in rows), default=None)
            span = (last - first).total_seconds() if first and last else 0.0
            state = s.sim.state()
            print(
                f"{rate:>9.0f} {count:>6} {percentile(late, 50):>7.3f} {percentile(late, 95):>7.3f} "
                f"{percentile(late, 99):>7.3f} {max(late, default=float('nan')):>7.3f} "
                f"{(len(rows) / span if span else float('nan')):>10.1f} {state['duplicates']:>5} "
                f"{count - len(rows):>5}{'' if settled else '  (not drained in time)'}",
                flush=True,
            )
            s.sim.reset()


if __name__ == "__main__":
    main()
