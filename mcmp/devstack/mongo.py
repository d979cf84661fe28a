"""The embedded SecantusDB (a MongoDB wire-protocol server in Python) that ``mcmp dev``, the
tests and the benchmarks start: how it is launched, its URIs, and waiting until it answers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from mcmp.devstack.processes import Proc, free_port, spawn, wait_until

# SecantusDB keeps the outcome of every retryable write in one registry that it scans on every
# write and, past 10,000 entries, sorts: after a few thousand writes each write costs milliseconds
# more (profiled under load: 26 % of the server's CPU), and a long run slows to a crawl. Retryable
# writes exist to ride out a replica-set failover, which a local embedded server never has, and
# our exactly-once guarantees come from compare-and-swap updates, not from them. So the URIs of
# the embedded server turn them off; a real mongod keeps the driver default (on) unless the
# operator's MCMP_MONGODB_URI says otherwise.
EMBEDDED_URI_OPTIONS = "retryWrites=false"

EMBEDDED_SWITCH_INTERVAL = 0.001


def embedded_server_command(
    port: int,
    data_dir: Path,
    *,
    standalone: bool = True,
    switch_interval: float = EMBEDDED_SWITCH_INTERVAL,
) -> list[str]:
    """How ``mcmp dev`` and the tests start the embedded SecantusDB.

    ``--standalone``: as a replica-set member SecantusDB writes an oplog entry for every
    document written (and prunes it every 1,000), which only change streams and transactions
    read; we use neither, and a single embedded server has no failover to ride out. A
    production ``mongod`` should still be a replica set (docker-compose.yml is).

    A 1 ms GIL switch interval (CPython's default is 5 ms): SecantusDB serves each connection
    on a thread of one Python process, and a request that gives the GIL up for a socket or
    storage call can otherwise wait a whole interval behind a CPU-bound neighbour to get it
    back. Both measured side by side by ``python -m bench.embedded_server`` (docs/performance.md).
    """
    return [
        sys.executable,
        "-c",
        f"import sys; sys.setswitchinterval({float(switch_interval)!r}); "
        "from secantus.cli import main; sys.exit(main())",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(data_dir),
        "--log-level",
        "WARNING",
        *(["--standalone"] if standalone else []),
    ]


def embedded_uri(port: int, database: str = "") -> str:
    """The URI of an embedded SecantusDB on this machine (see ``EMBEDDED_URI_OPTIONS``)."""
    return f"mongodb://127.0.0.1:{port}/{database}?{EMBEDDED_URI_OPTIONS}"


def start_secantus(
    data_dir: Path, port: int | None = None, log_dir: Path | None = None, **server_options: Any
) -> tuple[Proc, str]:
    """Start SecantusDB on ``data_dir`` and wait until it answers; (process, URI without a database).

    ``server_options`` go to ``embedded_server_command`` (the benchmarks compare launch settings).
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        "secantus",
        embedded_server_command(port, data_dir, **server_options),
        dict(os.environ),
        log_dir or data_dir.parent / "logs",
    )
    uri = embedded_uri(port)

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"SecantusDB exited: {proc.log_text()[-2000:]}")
        try:
            MongoClient(uri, serverSelectionTimeoutMS=300).admin.command("ping")
            return True
        except Exception:
            return False

    wait_until(up, 60, 0.2, "SecantusDB did not start")
    return proc, uri
