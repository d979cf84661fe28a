"""Run every benchmark in turn (each in its own process, with its own servers) and print the tables.

    .venv/bin/python -m bench.run_all                 # full sizes (the docs/performance.md figures), ~25 min here
    .venv/bin/python -m bench.run_all --quick         # small sizes, a few minutes: a CI smoke step
    .venv/bin/python -m bench.run_all --only lateness,bulk --mongodb-uri mongodb://host:27017/

Benchmarks print figures; they are not timed asserts. ``--quick`` only checks that each one runs
end to end and reports 0 duplicates / 0 lost; its figures are too small to quote. The exit status
is non-zero if a benchmark failed to run.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from bench.common import ROOT, load_avg

FULL: dict[str, list[str]] = {
    "lateness": [],
    "throughput": [],
    "baseline_eta": [],
    "dispatcher_tick": ["--profile"],
    "bulk": [],
    "db_ops": [],
    "embedded_server": [],
}
QUICK: dict[str, list[str]] = {
    "lateness": ["--rates", "50,100", "--seconds", "3"],
    "throughput": ["--posts", "80", "--configs", "prefork:2,threads:2", "--profile", "threads:2"],
    "baseline_eta": ["--rates", "50", "--seconds", "3", "--future", "1000,5000"],
    "dispatcher_tick": ["--future", "1000,10000", "--due", "100,1000"],
    "bulk": ["--posts", "500", "--window", "5"],
    "db_ops": ["--rate", "30", "--seconds", "3"],
    "embedded_server": ["--rate", "20", "--seconds", "2"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(FULL))
    parser.add_argument("--mongodb-uri", default=None)
    parser.add_argument("--latency-ms", default=None)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    names = [n for n in args.only.split(",") if n] or list(plan)
    common: list[str] = []
    if args.mongodb_uri:
        common += ["--mongodb-uri", args.mongodb_uri]
    if args.latency_ms:
        common += ["--latency-ms", args.latency_ms]
    failed = []
    started = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        print(f"\n=== bench.{name} {' '.join(plan[name] + common)}  ({load_avg()})", flush=True)
        child = subprocess.Popen([sys.executable, "-m", f"bench.{name}", *plan[name], *common], cwd=ROOT)
        # stopping run_all stops the running benchmark, which then stops its own servers
        signal.signal(signal.SIGTERM, lambda *_, c=child: (c.terminate(), c.wait(60), sys.exit(143)))
        code = child.wait()
        print(f"=== bench.{name}: exit {code}, {time.monotonic() - t0:.0f} s", flush=True)
        if code:
            failed.append(name)
    print(f"\n=== all: {time.monotonic() - started:.0f} s; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
