"""The chaos run with video posts: Facebook (Page videos and Reels) and LinkedIn (Videos API).

Videos of 1 to 3 MB come from a loopback media host; the simulators inject HTTP 500s and
commit-then-timeouts (on chunk transfers, part uploads, finishes and posts alike), two
dispatchers run, a worker is ``kill -9``ed three times mid-upload and Redis restarts once. The
audit compares MongoDB with what each simulator published: no post twice, none lost, and no
video finished twice (an interrupted upload restarts without leaving a second post).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import requests

from mcmp.connectors.markers import marker_for
from mcmp.devstack import PrivateRedis
from mcmp.devstack.media import MediaHost
from mcmp.simulators.graph_common import marker_in
from tests.chaos.harness import FAULTS, ChaosReport, audit, insert_posts, run_chaos

POSTS = 60
MB = 1024 * 1024
# LinkedIn's 429 waits for midnight UTC and a Graph throttle for its usage window: keep the
# 500s and the commit-then-timeouts, the faults that test exactly-once.
VIDEO_FAULTS = [FAULTS[0], FAULTS[1]]


@pytest.mark.chaos
@pytest.mark.platforms("facebook", "linkedin")
@pytest.mark.timeout(900)
def test_chaos_video_posts_exactly_once(
    env, db, platform_lab, make_client, make_account, start_worker, start_dispatcher, tmp_path: Path
):
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    host = MediaHost()
    try:
        chaos_env = dict(
            platform_lab.env,
            MCMP_REDIS_URL=private.url,
            MCMP_INFLIGHT_LEASE_SECONDS="20",
            MCMP_QUEUED_LEASE_SECONDS="15",
            MCMP_MAX_ATTEMPTS="30",
            MCMP_FACEBOOK__TIMEOUT_SECONDS="3",
            MCMP_FACEBOOK__VIDEO_BASE_URL=platform_lab.env["MCMP_FACEBOOK__BASE_URL"],
            MCMP_FACEBOOK__VIDEO_POLL_SECONDS="0.3",
            MCMP_LINKEDIN__TIMEOUT_SECONDS="3",
            MCMP_LINKEDIN__VIDEO_POLL_SECONDS="0.3",
        )
        client = make_client(slug="video-chaos")
        for platform in ("facebook", "linkedin"):
            make_account(client, platform, **platform_lab.account_fields(platform, client))
            platform_lab.sims[platform].faults(VIDEO_FAULTS, seed=13)
        requests.post(
            f"{platform_lab.sims['facebook'].base_url}/_sim/budget",
            json={"app_call_limit": 1_000_000, "owner_call_limit": 1_000_000},
            timeout=5,
        )
        post_ids = insert_posts(
            db, client, lambda i: ["facebook"] if i % 2 else ["linkedin"], POSTS, spread_seconds=10
        )
        for i, post_id in enumerate(post_ids):
            vertical = i % 4 == 1  # every other Facebook video is a Reel
            video = host.video(
                f"v{i}.mp4",
                size=MB + (i % 3) * MB + i,
                duration=20 if vertical else 40,
                width=1080 if vertical else 1280,
                height=1920 if vertical else 720,
            )
            db.posts.update_one({"_id": post_id}, {"$set": {"assetUrls": [video]}})

        def new_worker():
            return start_worker(chaos_env, concurrency=4)

        workers = [new_worker(), new_worker()]
        start_dispatcher(chaos_env, name="dispatcher-a")
        start_dispatcher(chaos_env, name="dispatcher-b")
        kills, restarts, seconds = run_chaos(db, post_ids, new_worker, workers, private, timeout=600)

        by_marker = {marker_for(str(d["_id"])): str(d["_id"]) for d in db.deliveries.find({}, {"_id": 1})}
        fb, li = platform_lab.sims["facebook"].state(), platform_lab.sims["linkedin"].state()
        stored = {"facebook": fb["posts"], "linkedin": li["posts"]}

        def key_of(item):
            return by_marker.get(item.get("marker") or marker_in(str(item.get("commentary") or "")))

        result = audit(db, post_ids, stored, key_of, lambda item: str(item["id"]))
        fired = Counter()
        for p in ("facebook", "linkedin"):
            fired.update(
                f["kind"]
                for f in requests.get(f"{platform_lab.sims[p].base_url}/_sim/faults", timeout=10).json()[
                    "fired"
                ]
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
        finished = Counter(
            v.get("marker") for v in fb["videos"] if v.get("finished_time") and v.get("marker")
        )
        kinds = Counter(v["kind"] for v in fb["videos"] if v.get("post_id"))
        print(
            f"facebook videos finished {sum(finished.values())} ({dict(kinds)}), uploads started {len(fb['videos'])}; "
            f"linkedin videos {len(li['videos'])}"
        )
    finally:
        host.stop()
        private.stop()
    assert report.duplicates == 0 and report.lost == 0 and report.published == POSTS, report.line()
    assert report.mismatched_ids == 0 and report.bad_history == 0, report.line()
    assert all(n == 1 for n in finished.values()), finished  # no video finished twice
    assert kinds["reel"] > 0 and kinds["video"] > 0
    assert kills >= 3 and restarts == 1
    assert fired["http_500"] > 0 and fired["commit_then_timeout"] > 0, fired
