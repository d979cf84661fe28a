"""``mcmp dev`` refreshes tokens against its simulators: every URL the worker calls is on
loopback (token endpoints included), and a refresh asked through the admin API succeeds."""

from __future__ import annotations

from typing import Any

import requests
from dotenv import dotenv_values
from pymongo import MongoClient

from mcmp.devstack import wait_until
from tests.e2e.devstack.test_dev import DevRun, _newcomer_env
from tests.e2e.devstack.test_dev_urls import leaving_loopback

REFRESHED = ("linkedin", "google-business", "facebook", "instagram")


def test_mcmp_dev_refreshes_tokens_against_its_simulators_and_calls_nothing_else(tmp_path) -> None:
    run = DevRun(tmp_path, "dev")
    try:
        shown = run.wait_started()
        config = {k: v for k, v in dotenv_values(tmp_path / ".mcmp" / "mcmp.env").items() if v is not None}
        assert leaving_loopback({**_newcomer_env(), **config}) == {}
        assert (
            config["MCMP_LINKEDIN__TOKEN_URL"] == config["MCMP_LINKEDIN__BASE_URL"] + "/oauth/v2/accessToken"
        )
        assert (
            config["MCMP_GOOGLE_BUSINESS__TOKEN_URL"] == config["MCMP_GOOGLE_BUSINESS__BASE_URL"] + "/token"
        )

        db = MongoClient(shown["mongodb"], tz_aware=True).get_default_database()
        accounts = {
            a["platform"]: a for a in db.integrationaccounts.find({"platform": {"$in": list(REFRESHED)}})
        }
        assert set(accounts) == set(REFRESHED)
        for account in accounts.values():
            asked = requests.post(
                f"{shown['api']}/v1/accounts/{account['_id']}/refresh",
                headers={"X-API-Key": shown["key"]},
                timeout=10,
            )
            assert asked.status_code == 202, asked.text

        def refreshed() -> dict[str, Any] | None:
            docs = {
                a["platform"]: a for a in db.integrationaccounts.find({"platform": {"$in": list(REFRESHED)}})
            }
            done = all((d.get("metadata") or {}).get("tokenRefreshedAt") for d in docs.values())
            return docs if done else None

        docs = wait_until(refreshed, 120, 0.5, "demo tokens were not refreshed: " + run.text()[-3000:])
        for platform, doc in docs.items():
            assert doc["status"] == "connected" and not doc["metadata"].get("authError"), (platform, doc)
            assert doc["accessToken"] != accounts[platform]["accessToken"]
            sim = config[f"MCMP_{platform.upper().replace('-', '_')}__BASE_URL"]
            assert requests.get(f"{sim}/_sim/state", timeout=10).json()["refresh_calls"] >= 1, platform
        worker_log = (tmp_path / ".mcmp" / "logs" / "worker.log").read_text(errors="replace")
        assert "network error" not in worker_log and "Invalid application ID" not in worker_log
        assert run.stop() == 0
    finally:
        run.kill()
