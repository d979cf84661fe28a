"""A burst: 10,000 posts of the platform mix (~25,000 deliveries) due in the same minute — time to drain, duplicates and lost posts.

    .venv/bin/python -m bench.bulk                           # 10,000 posts within one minute
    .venv/bin/python -m bench.bulk --posts 1000              # quick

Posts are scheduled uniformly over ``--window`` seconds (one minute by default). Drain time is
from the first scheduleTime to the last publish call; the audit compares MongoDB with the
simulators' own stores (each counts what it accepted, and duplicates by content): lost =
deliveries expected − distinct ones received. ``first late s``: the first-due delivery's call start − its time.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    Mix,
    add_common_args,
    add_mix_args,
    add_worker_args,
    deliveries_of,
    git_rev,
    insert_docs,
    load_avg,
    mixed_post_docs,
    our_lateness,
    percentile,
    seed_tenants,
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
    add_mix_args(parser)
    args = parser.parse_args(argv)
    mix = Mix.from_args(args)

    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri, mix=mix) as s,
    ):
        print(f"# bench/bulk.py @ {git_rev()} — {s.describe()}")
        print(
            f"# {args.posts} posts due within {args.window:g} s; {args.workers} worker(s) × {args.concurrency} "
            "threads, 1 dispatcher"
        )
        db = s.db
        clients = seed_tenants(db, s)
        s.start_publishing(args.workers, args.concurrency, tag="bulk")
        load = load_avg()
        first_due = datetime.now(UTC) + timedelta(seconds=5 + args.posts / 5000)
        # as many deliveries as --posts posts of the mix make on average (seeded: the same each run)
        docs = mixed_post_docs(clients, mix, first_due, round(args.posts * mix.average), args.window)
        docs = docs[: args.posts] if len(docs) > args.posts else docs
        ids = insert_docs(db.posts, docs)
        expected = deliveries_of(docs)
        settled = wait_settled(db, ids, timeout=args.posts / 5 + 600)
        result = our_lateness(db, ids, expected)
        rows = list(db.deliveries.find({"state": "published"}, {"callStartedAt": 1, "scheduledFor": 1}))
        last_call = max((r["callStartedAt"] for r in rows), default=first_due)
        first = min(rows, key=lambda r: (r["scheduledFor"], r["callStartedAt"]), default=None)
        first_late = (
            (first["callStartedAt"] - first["scheduledFor"]).total_seconds() if first else float("nan")
        )
        drain = (last_call - first_due).total_seconds()
        received, duplicates = s.delivered()
        lost = expected - (received - duplicates)
        statuses = Counter(d["status"] for d in find_in(db.posts, "_id", ids, projection={"status": 1}))
        print(
            f"{'posts':>6} {'deliv':>6} {'window s':>8} {'first late s':>12} {'drain s':>8} {'deliv/s':>8} "
            f"{'p50 late s':>10} {'p99 late s':>10} {'max late s':>10} {'received':>8} {'dups':>5} {'lost':>5}  "
            "post statuses / load"
        )
        print(
            f"{len(docs):>6} {expected:>6} {args.window:>8.0f} {first_late:>12.3f} {drain:>8.1f} "
            f"{result.achieved:>8.1f} {percentile(result.late, 50):>10.2f} {percentile(result.late, 99):>10.2f} "
            f"{max(result.late, default=float('nan')):>10.2f} {received:>8} {duplicates:>5} {lost:>5}  "
            f"{dict(statuses)} / {load}{'' if settled else ' (not drained in time)'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
