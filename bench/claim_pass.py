"""What one claim pass costs the database server while a backlog waits behind the tenants' caps.

    .venv/bin/python -m bench.claim_pass                       # 15,000 due, 10 tenants, 5 free slots each
    .venv/bin/python -m bench.claim_pass --due 2000 --in-flight 0
    PYTHONPATH=../old-checkout python bench/claim_pass.py      # the same measure of another checkout's code

Under a burst the dispatcher passes four times a second over thousands of due deliveries of
tenants that are nearly at ``MCMP_TENANT_MAX_IN_FLIGHT``. A pass reads the due range rarely (it is
costly: SecantusDB materialises the whole range) and keeps candidates for later passes
(``fair_share.choose_due``); this measures those later passes: ``--due`` pending deliveries over
``--tenants`` tenants, ``--in-flight`` of them already in flight (which leaves each tenant its
room), ``fair_share.choose_due`` called ``--passes`` times with the kept read held fresh, and the
server process's CPU per pass read from ``/proc`` (the pass's one count of in-flight deliveries
included). Nothing is claimed, so every pass finds the same backlog.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId

from bench.common import cpu_seconds, git_rev, load_avg, machine
from mcmp.devstack.mongo import start_secantus
from mcmp.models.db import connect, ensure_schema, with_database
from mcmp.worker.scheduling import fair_share

CAP = 50  # MCMP_TENANT_MAX_IN_FLIGHT's default


def backlog(due: int, in_flight: int, tenants: int, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "_id": ObjectId(),
            "postId": str(ObjectId()),
            "clientId": f"tenant-{i % tenants}",
            "platform": "website",
            "state": state,
            "dueAt": now - timedelta(seconds=60) + timedelta(milliseconds=i),
        }
        for state, count in (("pending", due), ("in_flight", in_flight))
        for i in range(count)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--due", type=int, default=15_000, help="pending deliveries due now")
    parser.add_argument("--in-flight", type=int, default=450, help="deliveries in flight (of the tenants)")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp:
        proc, uri = start_secantus(Path(tmp) / "mongo")
        try:
            pid = proc.popen.pid
            db = connect(with_database(uri, "claim_pass"))
            ensure_schema(db)
            now = datetime.now(UTC)
            db.deliveries.insert_many(backlog(args.due, args.in_flight, args.tenants, now))
            print(
                f"# bench/claim_pass.py @ {git_rev()} ({fair_share.__file__}) — embedded SecantusDB, "
                f"{args.due} due over {args.tenants} tenants, {args.in_flight} in flight, cap {CAP} | "
                f"{machine()} | {load_avg()} (1/5 min) at start"
            )
            fair_share.RESCAN_FACTOR = 1e9  # every later pass takes its turns from the kept read
            horizon = now + timedelta(seconds=2)
            before = cpu_seconds([pid])
            first = fair_share.choose_due(horizon, 200, CAP)
            read = cpu_seconds([pid]) - before
            before, chosen = cpu_seconds([pid]), 0
            for _ in range(args.passes):
                chosen += len(fair_share.choose_due(horizon, 200, CAP))
            per_pass = (cpu_seconds([pid]) - before) / args.passes
            print(
                f"first pass (reads the due range): {1000 * read:.0f} ms server CPU, {len(first)} chosen\n"
                f"later passes: {1000 * per_pass:.1f} ms server CPU each, {chosen / args.passes:.0f} chosen each "
                f"| {load_avg()} at end"
            )
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
