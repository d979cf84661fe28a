"""A burst: 10,000 posts of the platform mix (~25,000 deliveries) due in the same minute — time to drain, duplicates and lost posts.

    .venv/bin/python -m bench.bulk                           # 10,000 posts within one minute
    .venv/bin/python -m bench.bulk --posts 1000              # quick

Posts are scheduled uniformly over ``--window`` seconds (one minute by default). Drain time is
from the first scheduleTime to the last publish call; the audit compares MongoDB with the
simulators' own stores (each counts what it accepted, and duplicates by content): lost =
deliveries expected − distinct ones received. ``first late s``: the first-due delivery's call start − its time.
Every ``--progress`` seconds while it drains: calls received per second (the simulators' own
counts) and the CPU of each process (% of one core) over that interval, so a slow drain shows
which process was short of CPU (or that none was). ``--progress-states`` adds deliveries by
state, read from MongoDB: two aggregations over every delivery each interval, in the server
being measured (whole-collection scans on SecantusDB).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    Mix,
    add_common_args,
    add_mix_args,
    add_worker_args,
    cpu_seconds,
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
    parser.add_argument(
        "--progress", type=float, default=10.0, help="seconds between progress lines (0: none)"
    )
    parser.add_argument(
        "--progress-states",
        action="store_true",
        help="progress lines also count deliveries by state (reads every delivery each time)",
    )
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
        workers, dispatcher = s.start_publishing(args.workers, args.concurrency, tag="bulk")
        groups = {
            "workers": [w.popen.pid for w in workers],
            "dispatcher": [dispatcher.popen.pid],
            "redis": [s.redis_pid],
            "db": [s.mongo_pid] if s.mongo_pid else [],
            "sims": s.sim_pids,
        }
        done = threading.Event()
        if args.progress > 0:
            threading.Thread(
                target=progress,
                args=(s, db if args.progress_states else None, groups, args.progress, done),
                daemon=True,
            ).start()
        load = load_avg()
        first_due = datetime.now(UTC) + timedelta(seconds=5 + args.posts / 5000)
        # as many deliveries as --posts posts of the mix make on average (seeded: the same each run)
        docs = mixed_post_docs(clients, mix, first_due, round(args.posts * mix.average), args.window)
        docs = docs[: args.posts] if len(docs) > args.posts else docs
        ids = insert_docs(db.posts, docs)
        expected = deliveries_of(docs)
        settled = wait_settled(db, ids, timeout=args.posts / 5 + 600)
        done.set()
        result = our_lateness(db, ids, expected)
        # A delivery a lookup found published (reconciled after its lease ran out in the backlog)
        # made no call of its own: it has no call start to count.
        rows = [
            r
            for r in db.deliveries.find({"state": "published"}, {"callStartedAt": 1, "scheduledFor": 1})
            if r.get("callStartedAt") is not None
        ]
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


def progress(s: Any, db: Any, groups: dict[str, list[int]], every: float, done: threading.Event) -> None:
    """A line every ``every`` s: calls received/s, each process's CPU (% of a core), and with
    ``db`` the deliveries by state."""
    cpu = {name: cpu_seconds(pids) for name, pids in groups.items()}
    received, at = s.delivered()[0], time.monotonic()
    while not done.wait(every):
        now_received = s.delivered()[0]
        now_cpu = {name: cpu_seconds(pids) for name, pids in groups.items()}
        now = time.monotonic()
        rate = (now_received - received) / (now - at)
        shares = " ".join(f"{n} {100 * (now_cpu[n] - cpu[n]) / (now - at):.0f}%" for n in groups if groups[n])
        print(
            f"# {time.strftime('%H:%M:%S')} received {now_received} ({rate:.1f}/s){states(db) if db is not None else ''}"
            f" | CPU {shares} | {load_avg()}",
            flush=True,
        )
        cpu, received, at = now_cpu, now_received, now


def states(db: Any) -> str:
    """Deliveries by state, and the pending ones by error class and whether due (two full scans)."""
    by_state = {
        d["_id"]: d["n"] for d in db.deliveries.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}])
    }
    waiting = {
        f"{d['_id'].get('e') or 'new'}{' due' if d['_id'].get('due') else ' later'}": d["n"]
        for d in db.deliveries.aggregate(
            [
                {"$match": {"state": "pending"}},
                {
                    "$group": {
                        "_id": {"e": "$errorClass", "due": {"$lte": ["$dueAt", "$$NOW"]}},
                        "n": {"$sum": 1},
                    }
                },
            ]
        )
    }
    return f" {by_state} pending {waiting}"


if __name__ == "__main__":
    main()
