"""Maximum sustained deliveries/s with 1, 2 and 4 worker processes, prefork vs threads pool, and
the CPU milliseconds each delivery costs, split by process and (inside the worker) by code.

    .venv/bin/python -m bench.throughput                     # 600 posts per configuration
    .venv/bin/python -m bench.throughput --posts 100 --configs threads:2 --profile threads:2

A backlog of ``--posts`` posts all due at the same instant is drained by each configuration
(one dispatcher throughout); throughput = published / (last call start − first call start).
``prefork:N`` is one Celery worker with N pool processes; ``threads:N`` is N Celery worker
processes × ``--concurrency`` threads. CPU is read from ``/proc`` before and after each drain:
workers (our code + Celery), dispatcher, redis-server (broker), SecantusDB (database; not shown
for an external mongod) and the simulator (the platform, not ours). ``--profile`` drains one more
backlog under py-spy and splits the worker's CPU into ours / Celery+broker client / database
driver / HTTP client, with the top frames (the hot path).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    Stack,
    add_common_args,
    cpu_seconds,
    git_rev,
    insert_spread,
    load_avg,
    our_lateness,
    seed_client,
    stack,
    wait_settled,
)
from bench.profiling import PySpy, py_spy_path
from mcmp.devstack import Proc


@dataclass
class Drain:
    published: int
    throughput: float
    wall: float
    cpu_ms: dict[str, float]  # per delivery, by process group
    load: str


def start_workers(s: Stack, pool: str, procs: int, concurrency: int) -> list[Proc]:
    if pool == "prefork":
        return [s.start("worker-prefork", "worker", "-c", str(procs), "--pool", "prefork", "-n", "tp0@%h")]
    return [
        s.start(
            f"worker-threads{i}", "worker", "-c", str(concurrency), "--pool", "threads", "-n", f"tp{i}@%h"
        )
        for i in range(procs)
    ]


def process_groups(s: Stack, workers: list[Proc], dispatcher: Proc) -> dict[str, list[int]]:
    groups = {
        "workers": [w.popen.pid for w in workers],
        "dispatcher": [dispatcher.popen.pid],
        "redis-server": [s.redis_pid],
        "simulator": [s.sim_pid] if s.sim_pid else [],
    }
    if s.mongo_pid:
        groups["SecantusDB"] = [s.mongo_pid]
    return groups


def drain(s: Stack, db: Any, client: dict[str, Any], count: int, groups: dict[str, list[int]]) -> Drain:
    load = load_avg()
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    started = time.monotonic()
    ids = insert_spread(db, client, datetime.now(UTC) + timedelta(seconds=1), count, 0)
    settled = wait_settled(db, ids, timeout=count / 5 + 120)
    wall = time.monotonic() - started
    after = {name: cpu_seconds(pids) for name, pids in groups.items()}
    result = our_lateness(db, ids)
    published = len(result.late)
    cpu_ms = {name: (after[name] - before[name]) * 1000 / max(1, published) for name in groups}
    if not settled:
        load += " (not drained in time)"
    return Drain(published, result.achieved, wall, cpu_ms, load)


def warm_up(s: Stack, db: Any, client: dict[str, Any], n: int) -> None:
    """Let every worker import and connect (first tasks are slow) before measuring."""
    ids = insert_spread(db, client, datetime.now(UTC), n, 0)
    wait_settled(db, ids, timeout=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=600, help="backlog drained per configuration")
    parser.add_argument(
        "--configs",
        default="prefork:1,prefork:2,prefork:4,threads:1,threads:2,threads:4",
        help="pool:processes, comma-separated",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="threads per threads-pool worker")
    parser.add_argument(
        "--profile", default="threads:2", help="configuration drained once more under py-spy ('' = none)"
    )
    add_common_args(parser)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri) as s,
    ):
        print(f"# bench/throughput.py @ {git_rev()} — {s.describe()}")
        print(
            f"# backlog of {args.posts} posts due at once per configuration, 1 dispatcher, "
            f"platform latency {args.latency_ms:g} ms, threads pool: {args.concurrency} threads/process"
        )
        db = s.db
        client = seed_client(db, s.sim.base_url)
        dispatcher = s.start("dispatcher", "dispatcher")
        names = ["workers", "dispatcher", "redis-server", "SecantusDB" if s.mongo_pid else None, "simulator"]
        cols = [n for n in names if n]
        print(
            f"{'pool':>8} {'procs':>5} {'posts':>6} {'deliv/s':>8} {'drain s':>8} | CPU ms/delivery: "
            + " ".join(f"{c:>12}" for c in cols)
            + f" {'total':>7}  load",
            flush=True,
        )
        configs = [c for c in args.configs.split(",") if c]
        runs = [(c, False) for c in configs] + ([(args.profile, True)] if args.profile else [])
        for config, profiled in runs:
            pool, procs = config.split(":")
            workers = start_workers(s, pool, int(procs), args.concurrency)
            time.sleep(5)
            warm_up(s, db, client, 8 * int(procs))
            groups = process_groups(s, workers, dispatcher)
            spy = None
            if profiled:
                if py_spy_path() is None:
                    print("# --profile: py-spy is not installed (pip install py-spy); no split")
                    for w in workers:
                        s.stop(w)
                    break
                spy = PySpy(groups["workers"], s.workdir / "profile")
                time.sleep(1)
            result = drain(s, db, client, args.posts, groups)
            profile = spy.stop() if spy else None
            for w in workers:
                s.stop(w)
            total = sum(v for k, v in result.cpu_ms.items() if k != "simulator")
            label = f"{pool}{' (py-spy)' if profiled else ''}"
            print(
                f"{label:>8} {procs:>5} {result.published:>6} {result.throughput:>8.1f} {result.wall:>8.1f} |"
                + " " * 17
                + " ".join(f"{result.cpu_ms[c]:>12.2f}" for c in cols)
                + f" {total:>7.2f}  {result.load}",
                flush=True,
            )
            if profile is not None:
                print(f"# profile of {config} ({args.posts} deliveries):")
                print(profile.report(result.cpu_ms["workers"]), flush=True)
        print(
            "# 'total' excludes the simulator (the platform's side); SecantusDB is the database server process"
        )


if __name__ == "__main__":
    main()
