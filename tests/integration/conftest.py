"""The integration tier: our code called directly, against a real SecantusDB served from a thread
of this test process and the machine's Redis — no worker, dispatcher or simulator process.

Everything else (fresh database per test, settings, Mongoose-style factories) is the suite's
usual fixtures from ``tests/conftest.py``; only the MongoDB server differs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcmp.devstack.mongo import embedded_uri


@pytest.fixture(scope="session")
def mongo_base_uri(run_dir: Path) -> Iterator[str]:
    """MCMP_TEST_MONGODB_URI (a real mongod) or SecantusDB started in this process."""
    external = os.environ.get("MCMP_TEST_MONGODB_URI")
    if external:
        yield external
        return
    from secantus.server import SecantusDBServer

    server = SecantusDBServer(
        host="127.0.0.1", port=0, storage_path=str(run_dir / "unit-mongo"), replica_set_name=None
    )
    server.start()
    yield embedded_uri(int(server.port))
    server.stop()
