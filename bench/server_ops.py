"""What one write of each hot-path shape costs the database server, alone, as the backlog grows.

    .venv/bin/python -m bench.server_ops                      # backlogs 1k, 10k, 25k deliveries
    .venv/bin/python -m bench.server_ops --backlogs 1000 --batch 25

``bench.db_ops`` reads the server's ``top``: wall time per command, which on SecantusDB (one
Python process, one GIL) includes every other command's CPU while it waited its turn, so under
load its ms/op grows with the number of commands in flight, not with what each costs. This
script sends each write shape of the publish path **alone** (one client, nothing else running)
against a database holding ``--backlogs`` deliveries and their posts, and reads the server
process's CPU from ``/proc`` around each: server CPU per document written, and ``top``'s time
per command beside it. A cost that grows with the backlog is a scan; one that stays flat is
the per-document price.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import secantus
from bson import ObjectId
from pymongo import InsertOne, MongoClient, UpdateOne

from bench.common import cpu_seconds, git_rev, load_avg, machine
from bench.profiling import Profile, PySpy
from mcmp.devstack.documents import scheduled_post
from mcmp.devstack.mongo import start_secantus
from mcmp.models.db import BY_ID, connect, ensure_schema, with_database
from mcmp.worker.publishing.delivery_states.leases import reap_filters
from mcmp.worker.publishing.guarded_update import guarded
from mcmp.worker.scheduling.fair_share import KEEP_PAGES, MIN_SPAN, WINDOW_SPANS

PLATFORMS = ("website", "facebook", "linkedin", "google-business")


def seed(db: Any, deliveries: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Posts expanded and their deliveries queued, as the dispatcher leaves them (2.5 per post)."""
    now = datetime.now(UTC)
    posts, dels = [], []
    i = 0
    while len(dels) < deliveries:
        platforms = list(PLATFORMS[: 1 + i % 4])
        _id = ObjectId()
        post = scheduled_post(
            str(ObjectId()),
            platforms,
            now + timedelta(seconds=i / 100),
            title=f"p {i}",
            body=f"b {i} {_id}",
            now=now,
            _id=_id,
        )
        post["mcmpExpandedAt"] = now
        posts.append(post)
        for p in platforms:
            dels.append(
                {
                    "_id": ObjectId(),
                    "postId": str(_id),
                    "clientId": post["clientId"],
                    "platform": p,
                    "state": "queued",
                    "dueAt": post["scheduleTime"],
                    "scheduledFor": post["scheduleTime"],
                    "attempt": 0,
                    "claimToken": "t0",
                    "leaseUntil": now + timedelta(minutes=5),
                    "createdAt": now,
                    "updatedAt": now,
                }
            )
        i += 1
    for k in range(0, len(posts), 5000):
        db.posts.insert_many(posts[k : k + 5000], ordered=False)
    for k in range(0, len(dels), 5000):
        db.deliveries.insert_many(dels[k : k + 5000], ordered=False)
    return posts, dels


PROFILE: Path | None = None  # --profile: py-spy the server during each shape, files here


def top_functions(path: Path, n: int = 25) -> list[str]:
    """The server's functions by inclusive share of samples (each counted once per sample)."""
    prof = Profile.load([path])
    counts: Counter[str] = Counter()
    for frames, k in prof.samples:
        for frame in set(frames):
            counts[frame.replace(str(Path(secantus.__file__).parent) + "/", "")] += k
    total = prof.total or 1
    return [f"#   {c / total:6.1%}  {f}" for f, c in counts.most_common(n)]


def measure(
    mongo_pid: int, admin: Any, label: str, docs: int, write: Callable[[], None], rows: list[str]
) -> None:
    spy = PySpy([mongo_pid], PROFILE / label.split(" (")[0].replace(" ", "-"), rate=500) if PROFILE else None
    if spy:
        time.sleep(0.5)
    totals_before = admin.command("top")["totals"]
    cpu = cpu_seconds([mongo_pid])
    wall = time.perf_counter()
    write()
    wall = time.perf_counter() - wall
    cpu = cpu_seconds([mongo_pid]) - cpu
    totals = admin.command("top")["totals"]
    top_ms = sum(
        v["writeLock"]["time"] - totals_before.get(ns, {}).get("writeLock", {}).get("time", 0)
        for ns, v in totals.items()
        if isinstance(v, dict) and "writeLock" in v
    )
    if spy:
        spy.stop()
        rows += top_functions(spy.paths[0])
    rows.append(
        f"{label:<58} {docs:>6} {1000 * cpu / docs:>10.3f} {1000 * wall / docs:>10.3f} {top_ms / 1000 / docs:>10.3f}"
    )


def run(uri: str, mongo_pid: int, backlog: int, batch: int, rounds: int) -> list[str]:
    db_uri = with_database(uri, f"ops_{uuid.uuid4().hex[:6]}")
    ensure_schema(connect(db_uri))
    client: MongoClient[dict[str, Any]] = MongoClient(db_uri, tz_aware=True)
    db = client.get_default_database()
    admin = client.admin
    t0 = time.perf_counter()
    posts, dels = seed(db, backlog)
    rows = [
        f"# backlog: {len(posts)} posts, {len(dels)} deliveries (seeded in {time.perf_counter() - t0:.1f} s)"
    ]
    n = batch * rounds
    picked = dels[:n]
    ns = f"{db.name}.deliveries"
    now = datetime.now(UTC)

    def take() -> None:  # start_batch: update_many $in ids + state + claimToken, hinted _id_
        for k in range(0, n, batch):
            ids = [d["_id"] for d in picked[k : k + batch]]
            db.deliveries.update_many(
                {"_id": {"$in": ids}, "state": "queued", "claimToken": "t0"},
                {
                    "$set": {"state": "in_flight", "attemptId": "a1", "owner": "w", "updatedAt": now},
                    "$inc": {"attempt": 1},
                },
                hint=BY_ID,
            )

    def outcome_write(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """An outcome as ``delivery_states.complete_op`` makes it (filter names the attempt)."""
        return (
            {"_id": d["_id"], "state": "in_flight", "attemptId": "a1"},
            {
                "$set": {
                    "state": "published",
                    "leaseUntil": None,
                    "owner": None,
                    "updatedAt": now,
                    "platformPostId": "x",
                    "platformUrl": "https://example.test/p/x",
                    "publishedAt": now,
                    "callStartedAt": now,
                    "needsReconcile": False,
                    "lastError": None,
                    "errorClass": None,
                    "analyticsDueAt": now + timedelta(hours=1),
                }
            },
        )

    def reopen() -> None:  # back to in_flight under attempt a1 between the shapes (not measured)
        db.deliveries.update_many(
            {"_id": {"$in": [d["_id"] for d in picked]}},
            {"$set": {"state": "in_flight", "attemptId": "a1"}},
        )

    def outcome() -> None:  # the CAS fields in the filter: client bulkWrite, hinted _id_
        for k in range(0, n, batch):
            ops = [UpdateOne(*outcome_write(d), namespace=ns, hint=BY_ID) for d in picked[k : k + batch]]
            client.bulk_write(ops, ordered=False, verbose_results=True)

    def outcome_by_id_only() -> None:  # reference: the same writes without the CAS fields in the filter
        for k in range(0, n, batch):
            ops = [
                UpdateOne({"_id": d["_id"]}, outcome_write(d)[1], namespace=ns, hint=BY_ID)
                for d in picked[k : k + batch]
            ]
            client.bulk_write(ops, ordered=False, verbose_results=True)

    def outcome_pipeline_cas() -> None:  # as sent (apply_many): the CAS inside an update pipeline
        for k in range(0, n, batch):
            ops = []
            for d in picked[k : k + batch]:
                shaped = guarded(*outcome_write(d))
                assert shaped is not None
                ops.append(UpdateOne(*shaped, namespace=ns, hint=BY_ID))
            client.bulk_write(ops, ordered=False, verbose_results=True)

    post_ids = list(dict.fromkeys(d["postId"] for d in picked))

    def post_status() -> None:  # sync_many as sent: per-_id CAS (in a pipeline) with $push and $unset
        for k in range(0, len(post_ids), batch):
            ops = []
            for p in post_ids[k : k + batch]:
                shaped = guarded(
                    {"_id": ObjectId(p), "status": "scheduled", "mcmpExpandedAt": {"$exists": True}},
                    {
                        "$set": {"status": "published", "updatedAt": now, "platformPostIds.website": "x"},
                        "$push": {"statusHistory": {"_id": ObjectId(), "at": now, "toStatus": "published"}},
                        "$unset": {"mcmpExpandedAt": "", "lastError": ""},
                    },
                )
                assert shaped is not None
                ops.append(UpdateOne(*shaped, hint=BY_ID))
            db.posts.bulk_write(ops, ordered=False)

    extra = dels[n : n + n]

    def insert() -> None:  # the dispatcher's insert of new deliveries (unique postId+platform)
        for k in range(0, len(extra), batch):
            db.deliveries.bulk_write(
                [
                    InsertOne({**d, "_id": ObjectId(), "postId": str(ObjectId())})
                    for d in extra[k : k + batch]
                ],
                ordered=False,
            )

    measure(mongo_pid, admin, f"deliveries take (update_many $in, {batch} ids)", n, take, rows)
    measure(mongo_pid, admin, f"deliveries outcome, CAS in the filter ({batch} per call)", n, outcome, rows)
    reopen()
    measure(
        mongo_pid,
        admin,
        "deliveries outcome, filter on _id alone (no CAS: reference)",
        n,
        outcome_by_id_only,
        rows,
    )
    reopen()
    measure(
        mongo_pid,
        admin,
        "deliveries outcome as sent (CAS in an update pipeline)",
        n,
        outcome_pipeline_cas,
        rows,
    )
    measure(
        mongo_pid, admin, f"posts status (bulk_write, {batch} per call)", len(post_ids), post_status, rows
    )
    measure(mongo_pid, admin, f"deliveries insert (bulk_write, {batch} per call)", len(extra), insert, rows)
    reaped = [d["_id"] for d in dels[-n:]]  # not among the shapes above (nor the due page: the earliest)
    dead_owner, expired = "gone-host:1:dead", now - timedelta(seconds=1)

    def abandon() -> None:  # in flight, owner dead and lease run out (not measured)
        db.deliveries.update_many(
            {"_id": {"$in": reaped}},
            {"$set": {"state": "in_flight", "owner": dead_owner, "leaseUntil": expired, "attemptId": "a1"}},
        )

    back = {
        "$set": {"state": "pending", "dueAt": now, "leaseUntil": None, "owner": None, "needsReconcile": True}
    }

    def reap_one_or() -> None:  # the reaper before: one update, the reasons in a top-level $or
        db.deliveries.update_many(
            {
                "_id": {"$in": reaped},
                "state": "in_flight",
                "$or": [{"owner": {"$in": [dead_owner]}}, {"leaseUntil": {"$lt": now}}],
            },
            back,
            hint=BY_ID,
        )

    def reap_per_reason() -> None:  # as sent: one filter per reason, _id first
        for query in reap_filters(reaped, [dead_owner], now, []):
            db.deliveries.update_many(query, back, hint=BY_ID)

    abandon()
    measure(
        mongo_pid, admin, f"reaper, one $or ({len(reaped)} abandoned; before)", len(reaped), reap_one_or, rows
    )
    abandon()
    measure(
        mongo_pid,
        admin,
        f"reaper, a filter per reason ({len(reaped)} abandoned)",
        len(reaped),
        reap_per_reason,
        rows,
    )
    rows += due_reads(db, mongo_pid, admin, rounds)
    client.drop_database(db.name)
    return rows


def due_reads(db: Any, mongo_pid: int, admin: Any, reads: int) -> list[str]:
    """The dispatcher's read of a due page (``fair_share._read_due``) over the whole backlog, and
    windowed past where the last read stopped as under a backlog: CPU ms per read."""
    rows: list[str] = []
    page = 100 * KEEP_PAGES  # a claim pass's limit × the pages one read keeps
    sort = [("dueAt", 1), ("_id", 1)]
    fields = {"_id": 1, "clientId": 1, "platform": 1, "dueAt": 1}
    first = list(db.deliveries.find({"state": "queued"}, fields).sort(sort).limit(page))
    if len(first) < page:
        return rows
    horizon = datetime.now(UTC) + timedelta(days=1)  # everything seeded is due
    edge = first[-1]["dueAt"]
    upper = edge + WINDOW_SPANS * max(MIN_SPAN, edge - first[0]["dueAt"])

    def read(bound: datetime) -> Callable[[], None]:
        def run_reads() -> None:
            for _ in range(reads):
                list(
                    db.deliveries.find({"state": "queued", "dueAt": {"$lte": bound}}, fields)
                    .sort(sort)
                    .limit(page)
                )

        return run_reads

    measure(
        mongo_pid, admin, f"due page read to the horizon (page {page}; per read)", reads, read(horizon), rows
    )
    measure(mongo_pid, admin, f"due page read, windowed (page {page}; per read)", reads, read(upper), rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backlogs", default="1000,10000,25000", help="deliveries in the database (posts: /2.5)"
    )
    parser.add_argument(
        "--batch", type=int, default=25, help="documents per command (the dispatcher's batch)"
    )
    parser.add_argument("--rounds", type=int, default=20, help="commands of each shape")
    parser.add_argument("--profile", help="py-spy the server during each shape; raw profiles in this folder")
    args = parser.parse_args(argv)
    global PROFILE
    PROFILE = Path(args.profile) if args.profile else None
    with tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp:
        proc, uri = start_secantus(Path(tmp) / "mongo")
        try:
            print(
                f"# bench/server_ops.py @ {git_rev()} — embedded SecantusDB, one client, nothing else running | {machine()} | {load_avg()} (1/5 min) at start"
            )
            print(
                f"{'write shape':<58} {'docs':>6} {'cpu ms/doc':>10} {'wall ms/doc':>10} {'top ms/doc':>10}"
            )
            for backlog in (int(b) for b in args.backlogs.split(",") if b):
                for row in run(uri, proc.popen.pid, backlog, args.batch, args.rounds):
                    print(row, flush=True)
            print(f"# {load_avg()} at end")
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
