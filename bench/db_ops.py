"""Database operations per delivery, by collection and kind, and the server CPU they cost.

    .venv/bin/python -m bench.db_ops                       # 60 deliveries/s for 15 s
    .venv/bin/python -m bench.db_ops --rate 300 --seconds 10   # a backlog

Posts are spread evenly over the window (as in ``bench.lateness``); the MongoDB ``top`` command
is read before and after, so every operation of the workers, the dispatcher and its
maintenance is counted, with the server's wall time per operation (on SecantusDB that includes
waiting for its global lock). For an embedded SecantusDB the server process's CPU per delivery
is read from ``/proc``: the figure the profiling fixes in docs/performance.md were measured with.
Documents written per delivery are counted on the wire (``bench/write_counter.py``), first with
the platform mix, then with one-platform posts. Every process's CPU per delivery (workers,
dispatcher, Redis, the server, the simulators) is printed for each phase; ``--profile`` adds a
py-spy split of the workers' CPU (``bench/profiling.py``).
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
    load_avg,
    mixed_post_docs,
    our_lateness,
    seed_tenants,
    stack,
    wait_settled,
)
from bench.profiling import PySpy, py_spy_path
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
    parser.add_argument("--profile", action="store_true", help="py-spy the workers during each phase")
    parser.add_argument(
        "--profile-dir", help="keep py-spy's raw profiles here (default: deleted with the run)"
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=0.0,
        help="seconds of the mix at --rate first, not measured (imports, pools)",
    )
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
        workers, dispatcher = s.start_publishing(args.workers, args.concurrency, tag="ops")
        groups = {
            "workers": [w.popen.pid for w in workers],
            "dispatcher": [dispatcher.popen.pid],
            "redis-server": [s.redis_pid],
            "SecantusDB": [s.mongo_pid] if s.mongo_pid else [],
            "simulators": s.sim_pids,
        }
        if args.warm_up > 0:
            docs = mixed_post_docs(
                clients,
                mix,
                datetime.now(UTC) + timedelta(seconds=1),
                int(args.rate * args.warm_up),
                args.warm_up,
                label="Warm",
            )
            wait_settled(db, insert_docs(db.posts, docs), timeout=args.warm_up * 20 + 120)
            print(f"# warm-up: {deliveries_of(docs)} deliveries of the mix at {args.rate:g}/s, not measured")
        phases = [("the mix", mix)]
        if mix.hi > 1:
            phases.append(("one platform", Mix(1, 1, mix.latency_ms, mix.tenants)))
        for label, phase in phases:
            measure(s, db, clients, counter, label, phase, args, groups)


def measure(
    s: Stack,
    db: Any,
    clients: list[dict[str, Any]],
    counter: WriteCounter,
    label: str,
    mix: Mix,
    args: Any,
    groups: dict[str, list[int]],
) -> None:
    load = load_avg()
    spy = (
        PySpy(groups["workers"], Path(args.profile_dir or s.workdir) / f"profile-{mix.hi}")
        if args.profile and py_spy_path()
        else None
    )
    cpu_before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    before, written_before = top(s.mongo_uri), counter.snapshot()
    docs = mixed_post_docs(
        clients, mix, datetime.now(UTC) + timedelta(seconds=3), int(args.rate * args.seconds), args.seconds
    )
    ids = insert_docs(db.posts, docs)
    wait_settled(db, ids, timeout=args.seconds * 20 + 120)
    time.sleep(2)  # the last batch's post-status write lands after its posts left 'scheduled'
    after, written = top(s.mongo_uri), counter.snapshot()
    cpu = {name: 1000 * (cpu_seconds(pids) - cpu_before[name]) for name, pids in groups.items()}
    profile = spy.stop() if spy else None
    written.subtract(written_before)
    n = deliveries_of(docs)
    lateness = our_lateness(db, ids, n)
    print(
        f"\n## {label}: {len(docs)} posts, {n} deliveries ({n / len(docs):.2f} per post), offered at {args.rate:g}/s"
    )
    print(f"# lateness p50 p95 p99 max achieved/s: {lateness.cells()}")
    if s.mongo_pid:
        print(f"# SecantusDB process CPU: {cpu['SecantusDB'] / n:.2f} ms per delivery")
    own = sum(cpu[g] for g in ("workers", "dispatcher", "redis-server")) / n
    print(
        "# CPU ms per delivery (/proc, whole phase incl. the 2 s settle): "
        + ", ".join(f"{name} {ms / n:.2f}" for name, ms in cpu.items() if groups[name])
        + f"; ours w/o db {own:.2f} | {load} at start, {load_avg()} at end"
    )
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
    if profile is not None:
        print(profile.report(cpu["workers"] / n))


if __name__ == "__main__":
    main()
