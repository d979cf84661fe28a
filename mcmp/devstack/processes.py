"""Child processes whose output goes to a log file, free loopback ports, and polling."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class Proc:
    """A child process in its own session, its output in a log file that can be read back."""

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
        stop_all([self], timeout)


def stop_all(procs: list[Proc], timeout: float = 10.0) -> None:
    """SIGTERM every process at once, then SIGKILL whichever has not exited by ``timeout``.

    At once, not one after another: a worker whose broker is already gone waits out its
    shutdown, and a fixture holding several would otherwise wait for each in turn.
    """
    running = [p for p in procs if p.popen.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill9()
    for proc in procs:
        if proc._log:
            proc._log.close()


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path, cwd: Path | None = None) -> Proc:
    """Start ``args`` in a new session (so ``kill9`` reaches its children), logging to ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - closed by Proc.stop
    popen = subprocess.Popen(
        args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
    )
    return Proc(name, popen, log_path, handle)
