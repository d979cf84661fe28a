"""How the embedded SecantusDB is started, side by side: lateness at one offered rate per variant.

    .venv/bin/python -m bench.embedded_server                  # 100/s, 20 s per variant, ~4 min
    .venv/bin/python -m bench.embedded_server --rate 120 --seconds 30

Each variant gets fresh servers (SecantusDB, Redis, simulator, 2 workers, 1 dispatcher), an
unmeasured warm-up, then one window of posts at ``--rate``. The variants differ only in how
SecantusDB is started (replica-set member or standalone; CPython's GIL switch interval) and in
threads per worker: what ``mcmp.devstack.embedded_server_command`` and ``WORKER_THREADS`` chose.
SecantusDB only: there is nothing to vary on an external ``mongod``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    OFFERED_HEADER,
    WORKER_THREADS,
    add_common_args,
    describe_embedded,
    git_rev,
    machine,
    offer,
    seed_client,
    stack,
    warm_up,
)

# (embedded server options, threads per worker): earlier defaults first, then one change at a time.
VARIANTS: list[tuple[dict[str, Any], int]] = [
    ({"standalone": False, "switch_interval": 0.005}, 8),
    ({"standalone": True, "switch_interval": 0.005}, 8),
    ({"standalone": True, "switch_interval": 0.005}, WORKER_THREADS),
    ({"standalone": True, "switch_interval": 0.001}, WORKER_THREADS),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.mongodb_uri:
        parser.error("compares ways of starting the embedded SecantusDB; --mongodb-uri does not apply")

    print(
        f"# bench/embedded_server.py @ {git_rev()}: {args.rate:g}/s offered for {args.seconds:g} s per "
        f"variant, {args.workers} workers, platform latency {args.latency_ms:g} ms | {machine()}"
    )
    print(f"{'SecantusDB started as':<36} {'threads':>7} {OFFERED_HEADER}")
    for options, threads in VARIANTS:
        with (
            tempfile.TemporaryDirectory(prefix="mcmp-bench-") as tmp,
            stack(Path(tmp), args.latency_ms, embedded=options) as s,
        ):
            client = seed_client(s.db, s.sim.base_url)
            s.start_publishing(args.workers, threads, tag="embedded")
            warm_up(s, client, args.rate, 3.0)
            result, _ = offer(s, client, args.rate, args.seconds)
            print(f"{describe_embedded(**options):<36} {threads:>7} {result.row()}", flush=True)


if __name__ == "__main__":
    main()
