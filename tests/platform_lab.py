"""Every platform simulator as a real subprocess, with accounts each one accepts.

``ACCOUNT_SPECS`` says, per platform, what an IntegrationAccount needs so that the simulator
accepts it (test token prefixes are documented in each simulator's module docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcmp.devstack import Proc, SimClient, simulator_env, start_simulator, stop_all

ACCOUNT_SPECS: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    "website": lambda url, client: {
        "accessToken": "dev-webhook-secret",
        "metadata": {"mode": "webhook", "webhookUrl": f"{url}/hooks/{client['slug']}"},
    },
    "linkedin": lambda url, client: {
        "accessToken": "li-test-access",
        "refreshToken": "li-test-refresh-1",
        "externalAccountId": "urn:li:organization:2414183",
        "metadata": {},
    },
    "facebook": lambda url, client: {
        "accessToken": "EAAB-test-page",
        "externalAccountId": "1000001",
        "metadata": {},
    },
    "instagram": lambda url, client: {
        "accessToken": "EAAB-test-ig",
        "externalAccountId": "17841400000001",
        "metadata": {},
    },
    "google-business": lambda url, client: {
        "accessToken": "gbp-test-access",
        "refreshToken": "gbp-test-refresh-1",
        "externalAccountId": "accounts/100/locations/200",
        "metadata": {},
    },
}


@dataclass
class PlatformLab:
    env: dict[str, str]
    sims: dict[str, SimClient] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def account_fields(self, platform: str, client: dict[str, Any]) -> dict[str, Any]:
        return ACCOUNT_SPECS[platform](self.sims[platform].base_url, client)

    def stop(self) -> None:
        stop_all(self.procs)


def start_lab(env: dict[str, str], platforms: list[str], log_dir: Path) -> Iterator[PlatformLab]:
    lab = PlatformLab(dict(env))
    try:
        for platform in platforms:
            proc, url = start_simulator(platform, env, log_dir)
            lab.procs.append(proc)
            lab.sims[platform] = SimClient(url)
            if platform != "website":  # every URL the worker calls, token endpoints included
                lab.env.update(simulator_env(platform, url))
        yield lab
    finally:
        lab.stop()
