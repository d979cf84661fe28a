"""Database operations per delivery, by collection and kind, and the server CPU they cost.

    .venv/bin/python -m bench.db_ops                       # 60 deliveries/s for 15 s
    .venv/bin/python -m bench.db_ops --rate 300 --seconds 10   # a backlog

Posts are spread evenly over the window (as in ``bench.lateness``); the MongoDB ``top`` command
is read before and after, so every operation of the workers, the dispatcher and its
maintenance is counted, with the server's wall time per operation (on SecantusDB that includes
waiting for its global lock). For an embedded SecantusDB the server process's CPU per delivery
is read from ``/proc``: the figure the profiling fixes in docs/performance.md were measured with.
Documents written per delivery are counted on the wire (``bench/write_counter.py``), first with
the platform mix, then with one-platform posts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pymongo import MongoClient

from bench.common import (
    Mix,
    Stack,
    add_common_args,
    add_mix_args,
    add_worker_args,
    cpu_seconds,
    deliveries_of,
    git_rev,
    insert_docs,
    mixed_post_docs,
    our_lateness,
    seed_tenants,
    stack,
    wait_settled,
)
from bench.write_counter import WriteCounter

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
    add_mix_args(parser)
    args = parser.parse_args(argv)
    mix = Mix.from_args(args)

    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri, mix=mix) as s,
    ):
        print(f"# bench/db_ops.py @ {git_rev()} — {s.describe()}")
        db = s.db
        clients = seed_tenants(db, s)
        # the workers and the dispatcher reach the server through the write counter; the bench's
        # own inserts (the frontend's posts) do not
        host, port = urlsplit(s.mongo_uri).hostname or "127.0.0.1", urlsplit(s.mongo_uri).port or 27017
        counter = WriteCounter(host, port)
        s.env["MCMP_MONGODB_URI"] = s.mongo_uri.replace(f"{host}:{port}", f"127.0.0.1:{counter.port}", 1)
        s.start_publishing(args.workers, args.concurrency, tag="ops")
        phases = [("the mix", mix)]
        if mix.hi > 1:
            phases.append(("one platform", Mix(1, 1, mix.latency_ms, mix.tenants)))
        for label, phase in phases:
            measure(s, db, clients, counter, label, phase, args)


def measure(
    s: Stack, db: Any, clients: list[dict[str, Any]], counter: WriteCounter, label: str, mix: Mix, args: Any
) -> None:
    server_cpu = (lambda: cpu_seconds([s.mongo_pid])) if s.mongo_pid else (lambda: 0.0)
    before, cpu_before, written_before = top(s.mongo_uri), server_cpu(), counter.snapshot()
    docs = mixed_post_docs(
        clients, mix, datetime.now(UTC) + timedelta(seconds=3), int(args.rate * args.seconds), args.seconds
    )
    ids = insert_docs(db.posts, docs)
    wait_settled(db, ids, timeout=args.seconds * 20 + 120)
    time.sleep(2)  # the last batch's post-status write lands after its posts left 'scheduled'
    after, cpu_after, written = top(s.mongo_uri), server_cpu(), counter.snapshot()
    written.subtract(written_before)
    n = deliveries_of(docs)
    lateness = our_lateness(db, ids, n)
    print(
        f"\n## {label}: {len(docs)} posts, {n} deliveries ({n / len(docs):.2f} per post), offered at {args.rate:g}/s"
    )
    print(f"# lateness p50 p95 p99 max achieved/s: {lateness.cells()}")
    if s.mongo_pid:
        print(f"# SecantusDB process CPU: {1000 * (cpu_after - cpu_before) / n:.2f} ms per delivery")
    by_coll = ", ".join(f"{coll} {count / n:.2f}" for coll, count in written.most_common() if count)
    print(f"# documents written per delivery (on the wire): {sum(written.values()) / n:.2f} ({by_coll})")
    print(f"{'ops/delivery':>12} {'server ms/op':>12} {'server ms/delivery':>18}  collection kind")
    rows = []
    for coll, value in after.items():
        old = before.get(coll, {})
        for kind in KINDS:
            count = value[kind]["count"] - old.get(kind, {}).get("count", 0)
            micros = value[kind]["time"] - old.get(kind, {}).get("time", 0)
            if count and not coll.split(".", 1)[-1].startswith("system"):
                rows.append((micros, count, coll.split(".", 1)[-1], kind))
    for micros, count, coll, kind in sorted(rows, reverse=True):
        print(f"{count / n:>12.2f} {micros / count / 1000:>12.3f} {micros / n / 1000:>18.3f}  {coll} {kind}")
    print(f"{sum(r[1] for r in rows) / n:>12.2f} {'':>12} {sum(r[0] for r in rows) / n / 1000:>18.3f}  total")


if __name__ == "__main__":
    main()
