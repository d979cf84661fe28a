"""Ours vs the naive design (one Celery task per post, ``apply_async(eta=scheduleTime)``), side by
side in one run on the same posts, the same simulator, the same MongoDB and Redis server.

    .venv/bin/python -m bench.baseline_eta                   # rates 50,100,200,400; 1k/10k/100k future
    .venv/bin/python -m bench.baseline_eta --rates 50 --seconds 3 --future 1000,10000   # quick

1. Lateness and throughput: posts spread over ``--seconds`` at each offered rate; ours (dispatcher
   + workers) first, then the baseline (``bench/naive_app.py``) on identical schedules. Both use
   ``--workers`` processes × ``--concurrency`` threads.
2. Memory with future posts scheduled over the next 30 days, 1k → 10k → 100k: ours stores them in
   MongoDB only (the workers and the dispatcher see what is due); the baseline sends one ETA
   message each, which Celery moves into the worker's memory at once. RSS of every worker and
   of the dispatcher (from /proc), and Redis ``used_memory`` (the baseline's unacked messages).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    Lateness,
    Mix,
    Offered,
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
    offer_mix,
    post_docs,
    rss_mib,
    seed_tenants,
    stack,
    wait_settled,
)
from bench.naive_app import COLLECTION, QUEUE
from bench.naive_app import app as naive_app
from bench.naive_app import publish as naive_publish
from mcmp.devstack import Proc, find_in

NAIVE_REDIS_DB = 1
DAY = 86400.0


def send_eta(docs: list[dict[str, Any]]) -> float:
    """One ``apply_async(eta=scheduleTime)`` per post over one producer connection; seconds taken."""
    started = time.monotonic()
    with naive_app.producer_or_acquire() as producer:
        for doc in docs:
            naive_publish.apply_async(
                args=[str(doc["_id"])], eta=doc["scheduleTime"], queue=QUEUE, producer=producer
            )
    return time.monotonic() - started


def naive_lateness(db: Any, docs: list[dict[str, Any]]) -> Lateness:
    """One (scheduleTime, call start) pair per platform of each published post."""
    rows = find_in(
        db[COLLECTION],
        "_id",
        [d["_id"] for d in docs],
        {"status": "published"},
        {"callStartedAt": 1, "scheduleTime": 1},
    )
    pairs = [
        (r["scheduleTime"], started) for r in rows for started in (r.get("callStartedAt") or {}).values()
    ]
    return Lateness.of(deliveries_of(docs), pairs)


def wait_rss_stable(pids: list[int], timeout: float, queue_empty: Any = None) -> float:
    """RSS once the queue is drained into the workers and memory stopped moving (±1% over 2 s)."""
    deadline = time.monotonic() + timeout
    last = rss_mib(pids)
    while time.monotonic() < deadline:
        time.sleep(2)
        now = rss_mib(pids)
        if (queue_empty is None or queue_empty()) and abs(now - last) <= 0.01 * last:
            return now
        last = now
    return last


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--future", default="1000,10000,100000", help="future posts (cumulative steps)")
    add_worker_args(parser)
    add_common_args(parser)
    add_mix_args(parser)
    args = parser.parse_args(argv)
    mix = Mix.from_args(args)
    rates = [float(r) for r in args.rates.split(",") if r]
    steps = [int(n) for n in args.future.split(",") if n]

    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri, mix=mix) as s,
    ):
        print(f"# bench/baseline_eta.py @ {git_rev()} — {s.describe()}")
        print(
            f"# {args.workers} worker process(es) × {args.concurrency} threads each design; ours + 1 dispatcher; "
            f"{args.seconds:g} s window per rate; rates are platform deliveries/s (a post of k platforms is k)"
        )
        db = s.db
        clients = seed_tenants(db, s)
        client = clients[0]
        naive_url = s.redis.url.rsplit("/", 1)[0] + f"/{NAIVE_REDIS_DB}"
        naive_app.conf.broker_url = naive_url
        naive_env = dict(s.env, NAIVE_BROKER_URL=naive_url, NAIVE_MONGODB_URI=s.mongo_uri)
        late_rows: list[str] = []
        cpu_rows: list[str] = []
        mem_rows: list[str] = []

        # --- ours -----------------------------------------------------------------------------
        workers, dispatcher = s.start_publishing(args.workers, args.concurrency, tag="ours")
        warm_up = mixed_post_docs(clients, mix, datetime.now(UTC), 20 * args.workers, 1, label="Warm")
        wait_settled(db, insert_docs(db.posts, warm_up), timeout=120)  # imports, connections: not measured
        s.reset_sims()
        ours_groups = {
            "workers": [w.popen.pid for w in workers],
            "dispatcher": [dispatcher.popen.pid],
            **server_groups(s),
        }
        for rate in rates:
            cpu = CpuMeter(ours_groups)
            measured = offer_mix(s, clients, rate, args.seconds)[0]
            late_rows.append(f"{'ours':<10} {measured.row()}")
            cpu_rows.append(cpu.row("ours", rate, len(measured.lateness.late)))
            print(late_rows[-1], flush=True)
        total = 0
        for n in steps:
            load = load_avg()
            started = time.monotonic()
            start = datetime.now(UTC) + timedelta(hours=1)
            insert_docs(db.posts, post_docs(client, start, n - total, 30 * DAY, label="Future"))
            enqueue = time.monotonic() - started
            total = n
            time.sleep(8)  # ≥ 50 dispatcher ticks over the new posts
            worker_rss = wait_rss_stable([w.popen.pid for w in workers], 30)
            mem_rows.append(
                mem_row("ours", n, worker_rss, rss_mib([dispatcher.popen.pid]), s.redis.url, enqueue, load)
            )
            print(mem_rows[-1], flush=True)
        for proc in [*workers, dispatcher]:
            s.stop(proc)

        # --- naive baseline -------------------------------------------------------------------
        # The seed's Post indexes (a naive worker shares the frontend's posts collection) and the
        # due-time index a careful user would add.
        for keys in (["clientId"], ["campaignId"], ["status", "scheduleTime"]):
            db[COLLECTION].create_index([(k, 1) for k in keys])
        naive = [start_naive(s, naive_env, i, args.concurrency) for i in range(args.workers)]
        time.sleep(6)
        warm_docs = mixed_post_docs(clients, mix, datetime.now(UTC), 20 * args.workers, 1, label="Warm")
        insert_docs(db[COLLECTION], warm_docs)
        send_eta(warm_docs)
        wait_settled(db, [d["_id"] for d in warm_docs], timeout=120, collection=COLLECTION)
        s.reset_sims()
        naive_groups = {"workers": [p.popen.pid for p in naive], "dispatcher": [], **server_groups(s)}
        for rate in rates:
            count = int(rate * args.seconds)
            load = load_avg()
            cpu = CpuMeter(naive_groups)
            docs = mixed_post_docs(
                clients, mix, datetime.now(UTC) + timedelta(seconds=4 + count / 2000), count, args.seconds
            )
            insert_docs(db[COLLECTION], docs)
            send_eta(docs)
            settled = wait_settled(
                db, [d["_id"] for d in docs], timeout=args.seconds * 10 + 180, collection=COLLECTION
            )
            naive_run = Offered(rate, naive_lateness(db, docs), s.delivered()[1], settled, load)
            cpu_rows.append(cpu.row("naive ETA", rate, len(naive_run.lateness.late)))
            late_rows.append(f"{'naive ETA':<10} {naive_run.row()}")
            print(late_rows[-1], flush=True)
            s.reset_sims()
        total = 0
        broker = redis.Redis.from_url(naive_url)
        for n in steps:
            load = load_avg()
            started = time.monotonic()
            docs = post_docs(
                client, datetime.now(UTC) + timedelta(hours=1), n - total, 30 * DAY, label="Future"
            )
            insert_docs(db[COLLECTION], docs)
            send_eta(docs)
            enqueue = time.monotonic() - started
            total = n
            rss = wait_rss_stable(
                [p.popen.pid for p in naive], 60 + n / 500, queue_empty=lambda: broker.llen(QUEUE) == 0
            )
            mem_rows.append(mem_row("naive ETA", n, rss, None, naive_url, enqueue, load))
            mem_rows[-1] += f"  (held in Redis 'unacked': {broker.hlen('unacked')})"
            print(mem_rows[-1], flush=True)

        print("\n## lateness and throughput (same schedules, same servers)")
        print(LATE_HEADER)
        print("\n".join(late_rows))
        print("\n## CPU per delivery of every process, ms (from /proc, over each rate's window)")
        print(CPU_HEADER)
        print("\n".join(cpu_rows))
        print(
            "# 'ours w/o db' = workers + dispatcher + redis-server: the part that carries over to a real mongod; "
            "the simulator is the platform's side"
        )
        print("\n## memory with future posts scheduled over the next 30 days")
        print(MEM_HEADER)
        print("\n".join(mem_rows))


CPU_GROUPS = ("workers", "dispatcher", "redis-server", "SecantusDB", "simulator")
CPU_HEADER = (
    f"{'design':<10} {'offered/s':>9} {'delivered':>9} "
    + " ".join(f"{g:>12}" for g in CPU_GROUPS)
    + f" {'w/o db':>8} {'total':>8}"
)


def server_groups(s: Stack) -> dict[str, list[int]]:
    """The processes both designs share: database server (embedded only), Redis, simulator."""
    return {
        "redis-server": [s.redis_pid],
        "SecantusDB": [s.mongo_pid] if s.mongo_pid else [],
        "simulator": s.sim_pids,
    }


class CpuMeter:
    """CPU seconds of each group of processes (with descendants) since construction, from /proc."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start = {name: cpu_seconds(pids) for name, pids in groups.items()}

    def row(self, design: str, rate: float, delivered: int) -> str:
        per = {
            name: 1000 * (cpu_seconds(pids) - self.start[name]) / max(1, delivered)
            for name, pids in self.groups.items()
        }
        cells = " ".join(f"{per[g]:>12.2f}" if self.groups.get(g) else f"{'—':>12}" for g in CPU_GROUPS)
        own = per["workers"] + per.get("dispatcher", 0.0) + per["redis-server"]
        total = own + per.get("SecantusDB", 0.0)
        return f"{design:<10} {rate:>9.0f} {delivered:>9} {cells} {own:>8.2f} {total:>8.2f}"


LATE_HEADER = f"{'design':<10} {'offered/s':>9} {'deliv':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7} {'achieved/s':>10} {'dups':>5} {'lost':>5}  load"
MEM_HEADER = f"{'design':<10} {'future':>7} {'workers RSS MiB':>16} {'dispatcher MiB':>15} {'redis MiB':>10} {'enqueue s':>10}  load"


def mem_row(
    design: str, n: int, workers: float, dispatcher: float | None, redis_url: str, enqueue: float, load: str
) -> str:
    used = redis.Redis.from_url(redis_url).info("memory")["used_memory"] / 2**20
    disp = f"{dispatcher:>15.1f}" if dispatcher is not None else f"{'—':>15}"
    return f"{design:<10} {n:>7} {workers:>16.1f} {disp} {used:>10.1f} {enqueue:>10.1f}  {load}"


def start_naive(s: Stack, env: dict[str, str], i: int, concurrency: int) -> Proc:
    argv = ["-m", "celery", "-A", "bench.naive_app", "worker", "-P", "threads", "-c", str(concurrency)]
    argv += ["-Q", QUEUE, "--loglevel", "WARNING", "-n", f"naive{i}@%h"]
    import sys

    return s.spawn(f"naive{i}", [sys.executable, *argv], env)


if __name__ == "__main__":
    main()
