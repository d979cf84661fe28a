"""Platform simulators in processes of their own (``python -m mcmp.simulators``) and their control API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import requests

from mcmp.config.settings import PlatformSettings, Settings
from mcmp.devstack.processes import Proc, spawn, wait_until
from mcmp.simulators import simulator_class

# App credentials the simulators accept (they check that some are sent, not which).
SIM_APP_ID = "mcmp-dev-app"
SIM_APP_SECRET = "mcmp-dev-app-secret"


def simulator_env(platform: str, url: str) -> dict[str, str]:
    """``MCMP_<PLATFORM>__*`` settings aiming every URL the worker calls for ``platform`` at its
    simulator at ``url`` (base, video upload, token endpoint), with app credentials it accepts.

    Derived from the platform's settings model, so a URL setting added later is covered too: in
    dev and in tests no call (and no refresh token) leaves for the real platform.
    """
    attr = platform.replace("-", "_")
    field = Settings.model_fields.get(attr)
    model = field.annotation if field is not None else None
    if not (isinstance(model, type) and issubclass(model, PlatformSettings)):
        return {}  # a third-party platform: configured by its own plugin
    token_path = str(getattr(simulator_class(platform), "token_path", ""))
    prefix = f"MCMP_{attr.upper()}__"
    env = {f"{prefix}APP_ID": SIM_APP_ID, f"{prefix}APP_SECRET": SIM_APP_SECRET}
    for name in model.model_fields:
        if name.endswith("_url"):
            env[f"{prefix}{name.upper()}"] = url + token_path if name == "token_url" else url
    return env


def start_simulator(
    platform: str, env: dict[str, str], log_dir: Path, latency_ms: float = 0
) -> tuple[Proc, str]:
    proc = spawn(
        f"sim-{platform}",
        [sys.executable, "-m", "mcmp.simulators", platform, "--latency-ms", str(latency_ms)],
        env,
        log_dir,
    )

    def url() -> str | None:
        for line in proc.log_text().splitlines():
            if line.startswith("{") and '"url"' in line:
                return str(json.loads(line)["url"])
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
        state: dict[str, Any] = requests.get(f"{self.base_url}/_sim/state", timeout=10).json()
        return state

    def requests_log(self) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = requests.get(f"{self.base_url}/_sim/requests", timeout=10).json()
        return log

    def reset(self) -> None:
        requests.post(f"{self.base_url}/_sim/reset", timeout=5).raise_for_status()
