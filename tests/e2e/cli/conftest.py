"""Operator tools as real processes: ``mcmp flower`` with basic auth, headless Chromium."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mcmp.devstack import Proc, free_port, wait_until


@dataclass
class Flower:
    proc: Proc
    url: str
    auth: tuple[str, str]

    def get(self, path: str, **params: Any) -> Any:
        r = requests.get(f"{self.url}{path}", params=params, auth=self.auth, timeout=10)
        r.raise_for_status()
        return r.json()

    def apply(self, task: str, *args: Any, **kwargs: Any) -> str:
        """Apply a task through Flower's HTTP API, as an operator would (returns the task id)."""
        r = requests.post(
            f"{self.url}/api/task/async-apply/{task}",
            json={"args": list(args), "kwargs": kwargs},
            auth=self.auth,
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["task-id"])

    def task(self, task_id: str) -> dict[str, Any] | None:
        return self.get("/api/tasks").get(task_id)

    def tasks(self, **filters: Any) -> dict[str, dict[str, Any]]:
        return dict(self.get("/api/tasks", **filters))


@pytest.fixture
def start_flower(procs: Callable[..., Proc]) -> Callable[[dict[str, str]], Flower]:
    def start(env: dict[str, str]) -> Flower:
        auth = ("ops", secrets.token_urlsafe(12))
        port = free_port()
        proc = procs(
            "flower",
            [sys.executable, "-m", "mcmp.cli", "flower", "--port", str(port)],
            {**env, "MCMP_FLOWER_BASIC_AUTH": f"{auth[0]}:{auth[1]}"},
        )
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.alive(), proc.log_text()[-3000:]
            try:
                return requests.get(f"{url}/api/workers", auth=auth, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 60, 0.3, "mcmp flower did not start")
        return Flower(proc, url, auth)

    return start


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def chromium(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run Debian's headless Chromium with a fresh profile (installed by scripts/test)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is required (scripts/test installs Debian's package)", pytrace=False)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        profile = tmp_path / f"chromium-profile-{secrets.token_hex(4)}"
        return subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run
