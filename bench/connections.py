"""TCP connections the workers open per 1,000 deliveries: to one website, and to a platform.

    .venv/bin/python -m bench.connections                        # this checkout
    .venv/bin/python -m bench.connections --before 4b7d63a       # and the same run with that commit's workers

Real processes on loopback, as every benchmark: SecantusDB, a private Redis, the website
(webhook) and Facebook simulators, ``--workers`` Celery workers with ``--concurrency`` threads and
a dispatcher. Each simulator counts the TCP connections it **accepted** (``GET
/_sim/connections``), so the figure is what a client's site or a platform sees, not what our
code thinks it did. Per target: a warm-up at the same rate (what it opens is the once-per-process cost:
about one connection per thread that calls at once), then ``--deliveries`` posts spread over
``--seconds``; reported: connections accepted in each, per 1,000 measured deliveries, with the
published count and duplicates. The posts come from ``--tenants`` clients (default 10, as the other benchmarks) whose
accounts point at the same site: one client alone at 100/s is held to its fair share
(``MCMP_TENANT_MAX_IN_FLIGHT``), its posts start seconds late and in bursts, and each burst opens
connections — that measures the fair share, not the pool.

``--before REV`` extracts ``mcmp/`` of that commit (``git archive``) and runs the same scenario
with the workers and dispatcher of that code against the same simulators (this checkout's), one
after the other in the same run. In production each connection to a site is a TCP and TLS
handshake (1–3 round trips) and a thread of the site's server.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from bson import ObjectId

from bench.common import (
    ROOT,
    Stack,
    add_common_args,
    add_worker_args,
    git_rev,
    insert_docs,
    load_avg,
    post_docs,
    seed_client,
    stack,
    wait_settled,
)
from mcmp.devstack import scheduled_post, spawn, start_simulator

PAGE = "1000001"


def accepted(sim_url: str) -> int:
    """Connections the simulator accepted so far, less the one this reading opens."""
    return int(requests.get(f"{sim_url}/_sim/connections", timeout=10).json()["accepted"]) - 1


def facebook_account(db: Any, page: str = PAGE) -> dict[str, Any]:
    now = datetime.now(UTC)
    client = {"_id": ObjectId(), "name": "Page", "slug": f"page-{ObjectId()}", "timezone": "UTC"}
    db.clients.insert_one({**client, "createdAt": now, "updatedAt": now})
    db.integrationaccounts.insert_one(
        {
            "clientId": str(client["_id"]),
            "platform": "facebook",
            "status": "connected",
            "accessToken": "EAAB-bench-page",
            "externalAccountId": PAGE,
            "metadata": {},
            "createdAt": now,
            "updatedAt": now,
        }
    )
    return client


def facebook_posts(
    client: dict[str, Any], start: datetime, count: int, seconds: float
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        scheduled_post(
            str(client["_id"]),
            ["facebook"],
            start + timedelta(seconds=seconds * i / max(1, count)),
            title=f"Conn {i}",
            body=f"connections bench post {i}",
            now=now,
            _id=ObjectId(),
        )
        for i in range(count)
    ]


Posts = Callable[[dict[str, Any], datetime, int, float], list[dict[str, Any]]]


def spread(
    clients: list[dict[str, Any]], make: Posts, start: datetime, count: int, seconds: float
) -> list[dict[str, Any]]:
    """``count`` posts over ``seconds`` from ``clients`` in turn: one steady stream to the site."""
    step = seconds / max(1, count)
    docs: list[dict[str, Any]] = []
    for k, client in enumerate(clients):
        share = len(range(k, count, len(clients)))
        docs += make(client, start + timedelta(seconds=k * step), share, share * len(clients) * step)
    return docs


def measure(
    s: Stack, sim_url: str, clients: list[dict[str, Any]], make: Posts, count: int, seconds: float, warm: int
) -> tuple[int, int, int, int]:
    """(connections in the warm-up, in the measured posts, deliveries published, duplicates).

    The warm-up runs at the measured rate, so each thread has met the concurrency it will see:
    what it opens is the once-per-process cost, what the measured posts open is the running one.
    The measured posts follow the warm-up's without a pause, as steady traffic to a site does: a
    pause longer than the pool's idle time (``MCMP_FETCH_POOL_IDLE_SECONDS``) closes the kept
    connections, and the next burst pays the once-per-process cost again.
    """
    db = s.db
    start = accepted(sim_url)
    rate = count / seconds
    first = datetime.now(UTC) + timedelta(seconds=5)  # after both inserts
    measured_from = first + timedelta(seconds=warm / rate)
    warm_ids = insert_docs(db.posts, spread(clients, make, first, warm, warm / rate))
    ids = insert_docs(db.posts, spread(clients, make, measured_from, count, seconds))
    time.sleep(max(0.0, (measured_from - datetime.now(UTC)).total_seconds()))
    before = accepted(sim_url)
    wait_settled(db, warm_ids + ids, timeout=seconds * 10 + 180)
    opened = accepted(sim_url) - before
    published = db.deliveries.count_documents(
        {"postId": {"$in": [str(i) for i in ids]}, "state": "published"}
    )
    duplicates = int(requests.get(f"{sim_url}/_sim/state", timeout=10).json().get("duplicates", 0))
    return before - start, opened, published, duplicates


def extract(rev: str, into: Path) -> Path:
    """``mcmp/`` of ``rev`` in a directory of its own (no worktree, nothing in the repository changes)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "mcmp"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def run(label: str, code: Path, args: argparse.Namespace, workdir: Path) -> list[str]:
    extra = {"MCMP_FACEBOOK__TIMEOUT_SECONDS": "10"}
    with stack(workdir, args.latency_ms, extra, mongodb_uri=args.mongodb_uri) as s:
        fb_proc, fb_url = start_simulator("facebook", s.env, workdir / "logs", latency_ms=args.latency_ms)
        s.procs.append(fb_proc)
        s.env["MCMP_FACEBOOK__BASE_URL"] = fb_url
        env = dict(s.env, PYTHONPATH=str(code))
        for i in range(args.workers):
            argv = ["worker", "-c", str(args.concurrency), "--pool", "threads", "-n", f"conn{i}@%h"]
            s.procs.append(
                spawn(
                    f"worker{i}", [sys.executable, "-m", "mcmp.cli", *argv], env, workdir / "logs", cwd=code
                )
            )
        s.procs.append(
            spawn(
                "dispatcher",
                [sys.executable, "-m", "mcmp.cli", "dispatcher"],
                env,
                workdir / "logs",
                cwd=code,
            )
        )
        time.sleep(6)
        lines = []
        tenants = range(args.tenants)
        targets: list[tuple[str, str, list[dict[str, Any]], Posts]] = [
            (
                "webhook (one site)",
                s.sim.base_url,
                [seed_client(s.db, s.sim.base_url) for _ in tenants],
                post_docs,
            ),
            (
                "facebook simulator",
                fb_url,
                [facebook_account(s.db, f"{PAGE}{k}") for k in tenants],
                facebook_posts,
            ),
        ]
        for name, url, clients, make in targets:
            load = load_avg()
            warmed, opened, published, dups = measure(
                s, url, clients, make, args.deliveries, args.seconds, args.warm
            )
            per_1000 = opened * 1000 / max(1, published)
            lines.append(
                f"{label:<22} {name:<20} {warmed:>8} {published:>9} {opened:>11} {per_1000:>10.1f} {dups:>5}  {load}"
            )
        return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=1000, help="measured posts per target")
    parser.add_argument("--seconds", type=float, default=10.0, help="spread the measured posts over this")
    parser.add_argument("--warm", type=int, default=1000, help="unmeasured posts first, same rate")
    parser.add_argument(
        "--tenants",
        type=int,
        default=10,
        help="clients posting to the same site (each within its fair share, MCMP_TENANT_MAX_IN_FLIGHT)",
    )
    parser.add_argument("--before", metavar="REV", help="also run the workers of this commit first")
    add_worker_args(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mcmp-connections-"))
    runs: list[tuple[str, Path]] = []
    if args.before:
        runs.append((f"before ({args.before})", extract(args.before, workdir / "before-code")))
    runs.append((f"after ({git_rev()})", ROOT))
    print(
        f"TCP connections accepted by the simulator: during {args.warm} unmeasured posts (warm-up), then "
        f"during {args.deliveries} measured ones, both at {args.deliveries / args.seconds:.0f}/s from {args.tenants} clients; "
        f"{args.workers} workers x {args.concurrency} threads, simulator latency {args.latency_ms:g} ms"
    )
    print(
        f"{'code':<22} {'target':<20} {'warm-up':>8} {'published':>9} {'connections':>11} "
        f"{'per 1,000':>10} {'dups':>5}  load"
    )
    for label, code in runs:
        for line in run(label, code, args, workdir / label.split()[0]):
            print(line, flush=True)


if __name__ == "__main__":
    main()
