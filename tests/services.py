"""Real services for the tests: an embedded MongoDB wire server, Redis, worker processes.

Nothing here is a mock: SecantusDB speaks the MongoDB wire protocol (or a real ``mongod`` via
``MCMP_TEST_MONGODB_URI``), Redis is the machine's server, and workers/dispatchers are real
``mcmp`` subprocesses. A missing service makes the test fail with a clear message, never skip.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


IN_CHUNK = 50


def find_in(
    collection: Any,
    field_name: str,
    values: list[Any],
    query: dict[str, Any] | None = None,
    projection: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Documents whose ``field_name`` is one of ``values``, asked ``IN_CHUNK`` values at a time.

    SecantusDB checks each candidate document against every value of an ``$in`` in turn, so
    one query over n ids costs n² comparisons (2,500 ids: 6 s of server CPU, holding up the
    workers under test); chunks keep a test's or a benchmark's own reads linear.
    """
    found: list[dict[str, Any]] = []
    for i in range(0, len(values), IN_CHUNK):
        chunk = {field_name: {"$in": values[i : i + IN_CHUNK]}}
        found.extend(collection.find({**(query or {}), **chunk}, projection))
    return found


def still_scheduled(collection: Any, ids: list[Any]) -> list[Any]:
    """Which of these posts are still ``scheduled`` (in chunks: linear on SecantusDB)."""
    return [d["_id"] for d in find_in(collection, "_id", ids, {"status": "scheduled"}, {"_id": 1})]


@dataclass
class Proc:
    """A child process whose output goes to a log file we can read back in assertions."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole process group (Celery's parent and its prefork children)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill9()
        if self._log:
            self._log.close()


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - closed by Proc.stop
    popen = subprocess.Popen(
        args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )
    return Proc(name, popen, log_path, handle)


def start_secantus(data_dir: Path, port: int | None = None, **server_options: Any) -> tuple[Proc, str]:
    """The embedded SecantusDB; ``server_options`` go to ``embedded_server_command`` (benchmarks)."""
    port = port or free_port()
    from models.db import embedded_server_command, embedded_uri

    proc = spawn(
        "secantus",
        embedded_server_command(port, data_dir, **server_options),
        dict(os.environ),
        data_dir.parent / "logs",
    )
    uri = embedded_uri(port)
    from pymongo import MongoClient

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


def start_simulator(
    platform: str, env: dict[str, str], log_dir: Path, latency_ms: float = 0
) -> tuple[Proc, str]:
    proc = spawn(
        f"sim-{platform}",
        [sys.executable, "-m", "simulators", platform, "--latency-ms", str(latency_ms)],
        env,
        log_dir,
    )

    def url() -> str | None:
        for line in proc.log_text().splitlines():
            if line.startswith("{") and '"url"' in line:
                return json.loads(line)["url"]
        if not proc.alive():
            raise RuntimeError(f"simulator {platform} exited: {proc.log_text()[-2000:]}")
        return None

    base = wait_until(url, 30, 0.1, f"simulator {platform} did not start")
    return proc, base


class SimClient:
    """Talks to a simulator's control endpoints over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def faults(
        self, rules: list[dict[str, Any]], latency_ms: float | None = None, seed: int | None = 1
    ) -> None:
        body: dict[str, Any] = {"rules": rules, "seed": seed}
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        requests.post(f"{self.base_url}/_sim/faults", json=body, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.base_url}/_sim/faults", timeout=5).raise_for_status()

    def state(self) -> dict[str, Any]:
        return requests.get(f"{self.base_url}/_sim/state", timeout=10).json()

    def requests_log(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.base_url}/_sim/requests", timeout=10).json()

    def reset(self) -> None:
        requests.post(f"{self.base_url}/_sim/reset", timeout=5).raise_for_status()
