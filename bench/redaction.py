"""What masking secrets costs a log line, by the number of secrets registered.

    python -m bench.redaction                    # 10 / 100 / 4,096 (the cap) / 20,000 registered
    python -m bench.redaction --line-kib 64      # longer lines

Each row formats the same records through the process's own JSON handler
(``mcmp.worker.logs.configure``): an ordinary line, a line carrying one registered token, and an
exception with a chained cause carrying one. The index is bounded (``MAX_SECRETS``) and looked
up by the runs of the line, so the cost per line should not grow with the number of tenants.
"""

from __future__ import annotations

import argparse
import io
import logging
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import load_avg  # noqa: E402
from mcmp.worker import logs, redaction  # noqa: E402


def per_line_us(log: logging.Logger, emit: str, token: str, line: str, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        if emit == "plain":
            log.info("delivery %s: %s", "d1", line)
        elif emit == "token":
            log.info("delivery %s: %s %s", "d1", line, token)
        else:
            try:
                try:
                    raise ValueError(f"answer for {token}")
                except ValueError as exc:
                    raise RuntimeError(line[:200]) from exc
            except RuntimeError:
                log.exception("attempt ended without an outcome")
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--line-kib", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    logs.configure("INFO", json_output=True)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs._Handler))
    sink = io.StringIO()
    handler.setStream(sink)
    log = logging.getLogger("mcmp.bench")
    words = "published post 65f0c0ffee to linkedin in 0.42 s; "
    line = (words * (args.line_kib * 1024 // len(words) + 1))[: args.line_kib * 1024]
    print(f"{load_avg()}; line {args.line_kib} KiB; {args.rounds} records per cell")
    print(
        f"{'registered':>10} {'kept':>6} {'plain µs':>9} {'token µs':>9} {'chained exc µs':>15} {'leaks':>6}"
    )
    registered = 0
    token = ""
    for target in (10, 100, redaction.MAX_SECRETS, 20_000):
        while registered < target:
            token = "EAAG" + secrets.token_urlsafe(24)
            redaction.register_secret(token)
            registered += 1
        cells = [per_line_us(log, emit, token, line, args.rounds) for emit in ("plain", "token", "exc")]
        leaks = sink.getvalue().count(token)
        sink.seek(0)
        sink.truncate()
        kept = len(redaction._index)
        print(f"{registered:>10} {kept:>6} {cells[0]:>9.1f} {cells[1]:>9.1f} {cells[2]:>15.1f} {leaks:>6}")


if __name__ == "__main__":
    main()
