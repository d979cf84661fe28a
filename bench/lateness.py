"""Publish lateness (publish call start − scheduleTime) at offered loads, through real processes.

    .venv/bin/python -m bench.lateness                      # 50,100,200,400 deliveries/s, 10 s each
    .venv/bin/python -m bench.lateness --rates 100 --seconds 20 --workers 2 --concurrency 8
    .venv/bin/python -m bench.lateness --mongodb-uri mongodb://host:27017/   # a real mongod

Posts are spread evenly over a window at each offered rate; the webhook simulator answers after
``--latency-ms`` (default 50 ms). Lateness is read from each delivery (``callStartedAt`` −
``scheduledFor``), so it measures the dispatcher hand-off, the broker, the worker's preflight
and the database, not the platform call itself. Duplicates come from the simulator's own store.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    add_common_args,
    git_rev,
    insert_spread,
    load_avg,
    our_lateness,
    seed_client,
    stack,
    wait_settled,
)

HEADER = f"{'offered/s':>9} {'posts':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7} {'achieved/s':>10} {'dups':>5} {'lost':>5}  load"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each offered-load window")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (Celery parents)")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--pool", default="threads")
    add_common_args(parser)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri) as s,
    ):
        print(f"# bench/lateness.py @ {git_rev()} — {s.describe()}")
        print(
            f"# {args.workers} worker(s) × {args.concurrency} ({args.pool}), 1 dispatcher, "
            f"platform latency {args.latency_ms:g} ms, {args.seconds:g} s window per rate"
        )
        db = s.db
        client = seed_client(db, s.sim.base_url)
        s.start_publishing(args.workers, args.concurrency, args.pool)
        print(HEADER, flush=True)
        for rate in [float(r) for r in args.rates.split(",")]:
            count = int(rate * args.seconds)
            load = load_avg()
            start = datetime.now(UTC) + timedelta(seconds=4)
            ids = insert_spread(db, client, start, count, args.seconds)
            settled = wait_settled(db, ids, timeout=args.seconds * 10 + 120)
            result = our_lateness(db, ids)
            state = s.sim.state()
            print(
                f"{rate:>9.0f} {count:>6} {result.cells()} {state['duplicates']:>5} "
                f"{result.lost:>5}  {load}{'' if settled else '  (not drained in time)'}",
                flush=True,
            )
            if result.lost:
                posts = Counter(d["status"] for d in db.posts.find({"_id": {"$in": ids}}, {"status": 1}))
                rows = db.deliveries.find(
                    {"postId": {"$in": [str(i) for i in ids]}}, {"state": 1, "lastError": 1}
                )
                states = Counter(f"{d['state']}: {(d.get('lastError') or '')[:80]}" for d in rows)
                print(f"# not published: posts {dict(posts)}; deliveries {dict(states)}", flush=True)
            s.sim.reset()


if __name__ == "__main__":
    main()
