"""The webhook chaos run with the facebook and instagram connectors, on default leases."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import requests

from mcmp.connectors.markers import marker_for
from mcmp.devstack import PrivateRedis
from tests.chaos.harness import FAULTS, ChaosReport, audit, insert_posts, run_chaos
from tests.integration.worker import test_assets
from tests.integration.worker.test_assets import JPEG

POSTS = 250  # Graph pacing (5 calls/s per Page) makes the run last as long as its posts need
media = test_assets.media
# Graph throttles (613) carry a Business-Use-Case regain time of at least one minute, and the
# shared limiter rightly pauses the whole account for it: 5% of them would keep the account
# paused for the entire run. Keep the 500s and commit-then-timeouts, and two real throttles.
GRAPH_FAULTS = [
    FAULTS[0],
    FAULTS[1],
    {"kind": "rate_limit", "rate": 0.05, "count": 2, "retry_after": 1},
]


@pytest.mark.chaos
@pytest.mark.platforms("facebook", "instagram")
@pytest.mark.timeout(900)
def test_chaos_facebook_instagram_exactly_once(
    env, db, platform_lab, make_client, make_account, media, start_worker, start_dispatcher, tmp_path: Path
):
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    try:
        # Default leases and reap interval: a killed worker or a lost message costs liveness, not a lease.
        chaos_env = dict(
            {k: v for k, v in platform_lab.env.items() if k != "MCMP_REAP_INTERVAL_SECONDS"},
            MCMP_REDIS_URL=private.url,
            MCMP_FACEBOOK__TIMEOUT_SECONDS="2",
            MCMP_INSTAGRAM__TIMEOUT_SECONDS="2",
            MCMP_INSTAGRAM__CONTAINER_POLL_SECONDS="0.2",
            MCMP_INSTAGRAM__CONTAINER_POLL_TIMEOUT_SECONDS="10",
        )
        client = make_client(slug="graph-chaos")
        for platform in ("facebook", "instagram"):
            make_account(client, platform, **platform_lab.account_fields(platform, client))
            sim = platform_lab.sims[platform]
            requests.post(
                f"{sim.base_url}/_sim/budget",
                json={"app_call_limit": 1_000_000, "owner_call_limit": 1_000_000},
                timeout=5,
            )
            sim.faults(GRAPH_FAULTS, seed=11)
        requests.post(
            f"{platform_lab.sims['instagram'].base_url}/_sim/quota", json={"quota_total": 10_000}, timeout=5
        )
        photo = media.add("/chaos.jpg", "image/jpeg", len(JPEG), JPEG)
        post_ids = insert_posts(
            db, client, lambda i: ["facebook"] if i % 2 else ["instagram"], POSTS, spread_seconds=10
        )
        db.posts.update_many({"_id": {"$in": post_ids}}, {"$set": {"assetUrls": [photo]}})

        def new_worker():
            return start_worker(chaos_env, concurrency=4)

        workers = [new_worker(), new_worker()]
        start_dispatcher(chaos_env, name="dispatcher-a")
        start_dispatcher(chaos_env, name="dispatcher-b")
        kills, restarts, seconds = run_chaos(db, post_ids, new_worker, workers, private, timeout=420)

        by_marker = {marker_for(str(d["_id"])): str(d["_id"]) for d in db.deliveries.find({}, {"_id": 1})}
        stored = {p: platform_lab.sims[p].state()["posts"] for p in ("facebook", "instagram")}
        fired = Counter()
        for p in ("facebook", "instagram"):
            fired.update(
                f["kind"]
                for f in requests.get(f"{platform_lab.sims[p].base_url}/_sim/faults", timeout=10).json()[
                    "fired"
                ]
            )
        result = audit(
            db, post_ids, stored, lambda item: by_marker.get(item.get("marker")), lambda item: str(item["id"])
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
        private.stop()
    assert report.duplicates == 0 and report.lost == 0 and report.published == POSTS, report.line()
    assert report.mismatched_ids == 0 and report.bad_history == 0, report.line()
    assert all(platform_lab.sims[p].state()["duplicate_markers"] == 0 for p in ("facebook", "instagram"))
    assert kills >= 3 and restarts == 1
    assert fired["http_500"] > 0 and fired["commit_then_timeout"] > 0 and fired["rate_limit"] > 0, fired
