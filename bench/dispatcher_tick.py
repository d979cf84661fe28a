"""Cost of one dispatcher tick: it must grow with the number of due posts, not with the total.

    .venv/bin/python -m bench.dispatcher_tick                        # future 1k then 100k; due 100,1k,5k
    .venv/bin/python -m bench.dispatcher_tick --future 1000,10000 --due 100,1000   # quick

The dispatcher runs in this process (the real ``Dispatcher`` with the real Celery producer on
the private Redis), so a tick is timed without a worker competing for the CPU. For each total of
future posts (scheduled over the next 30 days) and each due count, the due posts are inserted,
then one ``Dispatcher.tick`` expands them into deliveries and claims and sends them all (a tick loops over pages
of ``MCMP_DISPATCH_BATCH_SIZE``). The periodic maintenance pass is timed separately. The query
plans are MongoDB's own ``explain`` of the two pick-up queries (expansion and claim) with
``executionStats``: keys and documents examined should be about the due count, not the total.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import add_common_args, git_rev, insert_docs, load_avg, post_docs, seed_client, stack

DAY = 86400.0


def plan_chain(plan: dict[str, Any]) -> str:
    """``SORT ← FETCH ← IXSCAN(index)`` from a winningPlan."""
    parts = []
    node: dict[str, Any] | None = plan
    while node:
        stage = node.get("stage", "?")
        if node.get("indexName"):
            stage += f"({node['indexName']})"
        parts.append(stage)
        inputs = node.get("inputStages") or []
        node = node.get("inputStage") or (inputs[0] if inputs else None) or node.get("queryPlan")
    return " ← ".join(parts)


def explain(cursor: Any) -> str:
    try:
        result = cursor.explain()
    except Exception as exc:  # a server without explain: say so
        return f"explain not supported by this server ({type(exc).__name__}: {exc})"
    planner = result.get("queryPlanner", {})
    winning = planner.get("winningPlan", {})
    stats = result.get("executionStats", {})
    return (
        f"{plan_chain(winning)}; keysExamined={stats.get('totalKeysExamined', '?')} "
        f"docsExamined={stats.get('totalDocsExamined', '?')} nReturned={stats.get('nReturned', '?')}"
    )


def maintenance_costs(dispatcher: Any) -> str:
    """Time each step of the maintenance pass (the dispatcher's own thread, every reap interval).

    The full non-date scheduleTime sweep runs only every ``unschedulable_sweep_seconds``: timed apart.
    """
    from mcmp.worker.publishing import delivery_states

    steps = {
        "reap": delivery_states.reap_expired_leases,
        "unschedulable (indexed)": lambda: dispatcher.fail_unschedulable_posts(full=False),
        "full type sweep": lambda: dispatcher.fail_unschedulable_posts(full=True),
        "resume_auth": dispatcher.resume_reconnected_accounts,
        "settle": dispatcher.settle_stale_posts,
    }
    parts = []
    total = 0.0
    for name, step in steps.items():
        t0 = time.perf_counter()
        step()
        took = time.perf_counter() - t0
        total += took
        parts.append(f"{name} {took * 1000:.0f} ms")
    return f"{total:.3f} s ({', '.join(parts)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--future", default="1000,100000", help="totals of future posts (cumulative)")
    parser.add_argument("--due", default="100,1000,5000", help="due posts per measured tick")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest tick")
    add_common_args(parser)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
        stack(Path(tmp), args.latency_ms, mongodb_uri=args.mongodb_uri) as s,
    ):
        for key, value in s.env.items():  # the in-process dispatcher reads the same settings
            if key.startswith("MCMP_"):
                os.environ[key] = value
        from mcmp.config.settings import get_settings
        from mcmp.worker.publishing.post_status import EXPANDED_MARKER
        from mcmp.worker.scheduling.dispatcher import EPOCH, Dispatcher, unschedulable_query

        get_settings.cache_clear()
        settings = get_settings()
        dispatcher = Dispatcher(settings)
        db = s.db
        client = seed_client(db, s.sim.base_url)
        print(f"# bench/dispatcher_tick.py @ {git_rev()} — {s.describe()}")
        print(
            f"# in-process Dispatcher, batch size {settings.dispatch_batch_size}, real Celery producer "
            f"(private Redis); future posts spread over 30 days from now+1 h"
        )
        print(
            f"{'future':>7} {'due':>6} {'tick s':>8} {'ms/due':>7} {'expanded':>9} {'sent':>6} {'idle tick ms':>13}  load",
            flush=True,
        )
        plans: list[str] = []
        total = 0
        futures = [int(n) for n in args.future.split(",") if n]
        dues = [int(n) for n in args.due.split(",") if n]
        profile_text = ""
        for future in futures:
            start = datetime.now(UTC) + timedelta(hours=1)
            insert_docs(db.posts, post_docs(client, start, future - total, 30 * DAY, label="Future"))
            total = future
            for due in dues:
                load = load_avg()
                docs = post_docs(client, datetime.now(UTC) - timedelta(seconds=1), due, 0.5, label="Due")
                ids = insert_docs(db.posts, docs)
                now = datetime.now(UTC)
                horizon = now + timedelta(seconds=settings.lookahead_seconds)
                if due == 1000 or len(plans) == 0:
                    plans.append(f"future={future} due={due}")
                    plans.append(
                        "  expansion posts.find: "
                        + explain(
                            db.posts.find(
                                {
                                    "status": "scheduled",
                                    EXPANDED_MARKER: None,
                                    "scheduleTime": {"$lte": horizon},
                                }
                            )
                            .sort("scheduleTime", 1)
                            .limit(settings.dispatch_batch_size)
                        )
                    )
                profiler = (
                    cProfile.Profile()
                    if args.profile and due == max(dues) and future == futures[-1]
                    else None
                )
                t0 = time.perf_counter()
                if profiler:
                    profiler.enable()
                stats = dispatcher.tick(now)
                tick = time.perf_counter() - t0
                if profiler:
                    profiler.disable()
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
                    profile_text = (
                        f"# cProfile of the tick with {future} future, {due} due (tottime):\n"
                        + "\n".join(line for line in out.getvalue().splitlines() if line.strip())
                    )
                if due == 1000 or len(plans) == 2:
                    plans.append(
                        "  claim deliveries.find (after the tick): "
                        + explain(
                            db.deliveries.find({"state": "pending", "dueAt": {"$lte": horizon}}, {"_id": 1})
                            .sort("dueAt", 1)
                            .limit(settings.dispatch_batch_size)
                        )
                    )
                idle0 = time.perf_counter()
                dispatcher.tick()
                idle = (time.perf_counter() - idle0) * 1000
                print(
                    f"{future:>7} {due:>6} {tick:>8.3f} {tick * 1000 / due:>7.2f} {stats.expanded_posts:>9} "
                    f"{stats.sent:>6} {idle:>13.1f}  {load}",
                    flush=True,
                )
                # done with them: as if published, so the next step starts from the same state
                db.deliveries.delete_many({"postId": {"$in": [str(i) for i in ids]}})
                db.posts.update_many({"_id": {"$in": ids}}, {"$set": {"status": "published"}})
            print(
                f"# maintenance pass with {future} future posts: {maintenance_costs(dispatcher)}", flush=True
            )
            cutoff = datetime.now(UTC) - timedelta(seconds=settings.settle_after_seconds)
            plans.append(f"future={future} maintenance queries")
            plans.append(
                "  unschedulable (indexed) posts.find: "
                + explain(db.posts.find(unschedulable_query(full=False)).limit(settings.dispatch_batch_size))
            )
            plans.append(
                "  full type sweep posts.find (every unschedulable_sweep_seconds): "
                + explain(db.posts.find(unschedulable_query(full=True)).limit(settings.dispatch_batch_size))
            )
            plans.append(
                "  settle posts.find: "
                + explain(
                    db.posts.find(
                        {"status": "scheduled", EXPANDED_MARKER: {"$gte": EPOCH, "$lt": cutoff}}, {"_id": 1}
                    )
                    .sort(EXPANDED_MARKER, 1)
                    .limit(settings.dispatch_batch_size)
                )
            )
        print("# query plans (explain, executionStats):")
        print("\n".join(plans))
        if profile_text:
            print(profile_text)


if __name__ == "__main__":
    main()
