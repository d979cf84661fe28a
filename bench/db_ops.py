"""Database operations per delivery, by collection and kind, and the server CPU they cost.

    .venv/bin/python -m bench.db_ops                       # 60 deliveries/s for 15 s
    .venv/bin/python -m bench.db_ops --rate 300 --seconds 10   # a backlog

Posts are spread evenly over the window (as in ``bench.lateness``); the MongoDB ``top`` command
is read before and after, so every operation of the workers, the dispatcher and its
maintenance is counted, with the server's wall time per operation (on SecantusDB that includes
waiting for its global lock). For an embedded SecantusDB the server process's CPU per delivery
is read from ``/proc``: the figure the profiling fixes in docs/performance.md were measured with.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench.common import (
    add_common_args,
    add_worker_args,
    cpu_seconds,
    git_rev,
    insert_spread,
    our_lateness,
    seed_client,
    stack,
    wait_settled,
)

KINDS = ("queries", "getmore", "insert", "update", "remove", "commands")


def top(uri: str) -> dict[str, Any]:
    totals = MongoClient(uri).admin.command("top")["totals"]
    return {name: value for name, value in totals.items() if isinstance(value, dict)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=60.0, help="offered deliveries/s")
    parser.add_argument("--seconds", type=float, default=15.0)
    add_worker_args(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri) as s,
    ):
        print(f"# bench/db_ops.py @ {git_rev()} — {s.describe()}")
        db = s.db
        client = seed_client(db, s.sim.base_url)
        s.start_publishing(args.workers, args.concurrency, tag="ops")
        server_cpu = (lambda: cpu_seconds([s.mongo_pid])) if s.mongo_pid else (lambda: 0.0)
        before, cpu_before = top(s.mongo_uri), server_cpu()
        ids = insert_spread(
            db, client, datetime.now(UTC) + timedelta(seconds=3), int(args.rate * args.seconds), args.seconds
        )
        wait_settled(db, ids, timeout=args.seconds * 20 + 120)
        after, cpu_after = top(s.mongo_uri), server_cpu()
        n = len(ids)
        lateness = our_lateness(db, ids)
        print(
            f"# {n} deliveries offered at {args.rate:g}/s; lateness p50 p95 p99 max achieved/s: {lateness.cells()}"
        )
        if s.mongo_pid:
            print(f"# SecantusDB process CPU: {1000 * (cpu_after - cpu_before) / n:.2f} ms per delivery")
        print(f"{'ops/delivery':>12} {'server ms/op':>12} {'server ms/delivery':>18}  collection kind")
        rows = []
        for coll, value in after.items():
            old = before.get(coll, {})
            for kind in KINDS:
                count = value[kind]["count"] - old.get(kind, {}).get("count", 0)
                micros = value[kind]["time"] - old.get(kind, {}).get("time", 0)
                if count:
                    rows.append((micros, count, coll.split(".", 1)[-1], kind))
        for micros, count, coll, kind in sorted(rows, reverse=True):
            print(
                f"{count / n:>12.2f} {micros / count / 1000:>12.3f} {micros / n / 1000:>18.3f}  {coll} {kind}"
            )
        print(
            f"{sum(r[1] for r in rows) / n:>12.2f} {'':>12} {sum(r[0] for r in rows) / n / 1000:>18.3f}  total"
        )


if __name__ == "__main__":
    main()
