"""Publish lateness (publish call start − scheduleTime) at offered loads, through real processes.

    .venv/bin/python -m bench.lateness                      # 50,100,200,400 deliveries/s, 10 s each
    .venv/bin/python -m bench.lateness --rates 100 --seconds 20 --workers 2 --concurrency 16
    .venv/bin/python -m bench.lateness --mongodb-uri mongodb://host:27017/   # a real mongod

Posts are spread evenly over a window at each offered rate; the webhook simulator answers after
``--latency-ms`` (default 50 ms). Lateness is read from each delivery (``callStartedAt`` −
``scheduledFor``), so it measures the dispatcher hand-off, the broker, the worker's preflight
and the database, not the platform call itself. Duplicates come from the simulator's own store.
A short unmeasured batch first (``--warmup-seconds``) lets every worker thread open its
connections, so the first window measures the steady state like the others.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import (
    OFFERED_HEADER,
    add_common_args,
    add_worker_args,
    find_in,
    git_rev,
    offer,
    seed_client,
    stack,
    warm_up,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each offered-load window")
    add_worker_args(parser)
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=3.0,
        help="an unmeasured batch at the first rate first: each worker thread opens its connections",
    )
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
        rates = [float(r) for r in args.rates.split(",")]
        if warm := warm_up(s, client, rates[0], args.warmup_seconds):
            print(f"# warm-up: {warm} posts at {rates[0]:g}/s, not measured", flush=True)
        print(OFFERED_HEADER, flush=True)
        for rate in rates:
            result, ids = offer(s, client, rate, args.seconds)
            print(result.row(), flush=True)
            if result.lateness.lost:
                posts = Counter(d["status"] for d in find_in(db.posts, "_id", ids, projection={"status": 1}))
                rows = find_in(
                    db.deliveries, "postId", [str(i) for i in ids], projection={"state": 1, "lastError": 1}
                )
                states = Counter(f"{d['state']}: {(d.get('lastError') or '')[:80]}" for d in rows)
                print(f"# not published: posts {dict(posts)}; deliveries {dict(states)}", flush=True)


if __name__ == "__main__":
    main()
