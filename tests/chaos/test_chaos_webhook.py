"""Chaos run: ≥500 posts through the signed webhook while everything breaks, on default leases."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mcmp.devstack import PrivateRedis, SimClient, start_simulator
from tests.chaos.harness import FAULTS, ChaosReport, audit, insert_posts, run_chaos

POSTS = 500


@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_chaos_webhook_exactly_once(
    env, db, make_client, make_account, start_worker, start_dispatcher, run_dir: Path, tmp_path: Path
):
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    stoppers = []
    try:
        # Default leases and reap interval: a killed worker or a lost message costs liveness, not a lease.
        chaos_env = {k: v for k, v in env.items() if k != "MCMP_REAP_INTERVAL_SECONDS"}
        chaos_env["MCMP_REDIS_URL"] = private.url
        sim_proc, sim_url = start_simulator("website", chaos_env, run_dir / "logs")
        stoppers.append(sim_proc.stop)
        sim = SimClient(sim_url)
        client = make_client(slug="chaos")
        make_account(
            client,
            "website",
            accessToken="dev-webhook-secret",
            metadata={"webhookUrl": f"{sim_url}/hooks/chaos", "mode": "webhook"},
        )
        sim.faults(FAULTS, seed=42)
        post_ids = insert_posts(db, client, lambda i: ["website"], POSTS, spread_seconds=10)

        def new_worker():
            return start_worker(chaos_env, concurrency=3)

        workers = [new_worker(), new_worker()]
        start_dispatcher(chaos_env, name="dispatcher-a")
        start_dispatcher(chaos_env, name="dispatcher-b")
        kills, restarts, seconds = run_chaos(db, post_ids, new_worker, workers, private)

        state = sim.state()
        fired = Counter(f["kind"] for f in SimClientFaults(sim).fired())
        result = audit(
            db, post_ids, {"website": state["posts"]}, lambda p: p["idempotencyKey"], lambda p: p["id"]
        )
        report = ChaosReport(
            posts=POSTS,
            worker_kills=kills,
            redis_restarts=restarts,
            seconds=seconds,
            faults_fired=dict(fired),
            **result,
        )
        print(report.line())
    finally:
        for stop in stoppers:
            stop()
        private.stop()
    assert state["duplicates"] == 0 and report.duplicates == 0, report.line()
    assert report.lost == 0 and report.published == POSTS, report.line()
    assert report.mismatched_ids == 0 and report.bad_history == 0, report.line()
    assert state["count"] == POSTS
    assert kills >= 3 and restarts == 1
    assert fired["http_500"] > 0 and fired["commit_then_timeout"] > 0 and fired["rate_limit"] > 0, fired


class SimClientFaults:
    def __init__(self, sim: SimClient) -> None:
        self.sim = sim

    def fired(self) -> list[dict]:
        import requests

        return requests.get(f"{self.sim.base_url}/_sim/faults", timeout=10).json()["fired"]
