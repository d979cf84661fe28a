"""``mcmp analytics backfill`` over 10,000 published posts on four platform simulators.

The simulators run with tight budgets (Graph: 3,000 calls per Page/IG user per 10 s window;
Google: 120 calls a minute; LinkedIn: 150 member calls a day) and the CLI with analytics
budgets just inside them. The real command is SIGKILLed midway and run again: it must resume
(not redo), end with exactly one record per (post, platform) and 0 requests refused for being
over a rate limit. Throughput is printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from bson import ObjectId

from mcmp.devstack import wait_until
from tests import ROOT

pytestmark = pytest.mark.platforms("facebook", "instagram", "linkedin", "google-business")

COUNTS = {"facebook": 4000, "instagram": 3000, "linkedin": 2000, "google-business": 1000}
OWNERS = {
    "facebook": "1000001",
    "instagram": "17841400000001",
    "linkedin": "urn:li:organization:2414183",
    "google-business": "accounts/100/locations/200",
}
PACING = {  # MCMP_<P>__ANALYTICS_*: inside the simulator budgets set below
    "FACEBOOK": ("1000", "250", "50"),  # 50 + 250 × 10 s = 2,550 ≤ 3,000 per window
    "INSTAGRAM": ("1000", "250", "50"),
    "LINKEDIN": ("5", "5", "10"),  # 100 calls in all ≤ 150 a day
    "GOOGLE_BUSINESS": ("1.8", "1.8", "10"),  # 10 + 1.8 × 60 s = 118 ≤ 120 a minute
}


def _platform_post_id(platform: str, i: int) -> str:
    return {
        "facebook": f"1000001_{5_000_000 + i}",
        "instagram": str(18_000_000_000 + i),
        "linkedin": f"urn:li:share:{7_100_000_000 + i}",
        "google-business": f"accounts/100/locations/200/localPosts/bf{i}",
    }[platform]


def _seed(db: Any, lab: Any, client: dict[str, Any]) -> int:
    now = datetime.now(UTC)
    posts, sims = [], {p: [] for p in COUNTS}
    n = 0
    for platform, count in COUNTS.items():
        for i in range(count):
            age = timedelta(hours=2) + timedelta(minutes=37 * (n % 1500))  # 2 h … ~40 days old
            pid = _platform_post_id(platform, i)
            posts.append(
                {
                    "_id": ObjectId(),
                    "clientId": str(client["_id"]),
                    "title": f"Post {n}",
                    "body": "…",
                    "platforms": [platform],
                    "assetUrls": [],
                    "status": "published",
                    "scheduleTime": now - age,
                    "platformPostIds": {"_id": ObjectId(), platform: pid},
                    "publishedAt": {"_id": ObjectId(), platform: now - age},
                    "statusHistory": [],
                    "createdAt": now - age,
                    "updatedAt": now - age,
                    "__v": 0,
                }
            )
            sims[platform].append({"id": pid, "owner": OWNERS[platform], "age_seconds": age.total_seconds()})
            n += 1
    started = time.monotonic()
    db.posts.insert_many(posts, ordered=False)
    print(f"\nseeded {len(posts)} published posts in {time.monotonic() - started:.1f} s")
    for platform, items in sims.items():
        url = lab.sims[platform].base_url
        for i in range(0, len(items), 2000):
            requests.post(
                f"{url}/_sim/seed", json={"posts": items[i : i + 2000]}, timeout=30
            ).raise_for_status()
    budgets = {
        "facebook": {"app_call_limit": 100_000, "owner_call_limit": 3000, "window_seconds": 10},
        "instagram": {"app_call_limit": 100_000, "owner_call_limit": 3000, "window_seconds": 10},
        "linkedin": {"app_daily_limit": 10_000, "member_daily_limit": 150},
        "google-business": {"quota_per_minute": 120},
    }
    for platform, budget in budgets.items():
        requests.post(f"{lab.sims[platform].base_url}/_sim/budget", json=budget, timeout=5).raise_for_status()
    return len(posts)


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mcmp.cli", "analytics", "backfill", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_backfill_of_10000_posts_interrupted_and_resumed(env, db, platform_lab, make_client, make_account):
    lab = platform_lab
    client = make_client(slug="backfill-co")
    for platform in COUNTS:
        make_account(client, platform, **lab.account_fields(platform, client))
    total = _seed(db, lab, client)
    cli_env = dict(lab.env)
    cli_env["MCMP_LOG_LEVEL"] = "WARNING"
    for name, (app_rate, acct_rate, burst) in PACING.items():
        cli_env[f"MCMP_{name}__ANALYTICS_APP_CALLS_PER_SECOND"] = app_rate
        cli_env[f"MCMP_{name}__ANALYTICS_ACCOUNT_CALLS_PER_SECOND"] = acct_rate
        cli_env[f"MCMP_{name}__ANALYTICS_BURST"] = burst

    dry = _cli(cli_env, "--client", "backfill-co", "--dry-run")
    out, _ = dry.communicate(timeout=120)
    assert dry.returncode == 0, out
    assert f"{total} rows eligible, 0 already recorded, {total} to fetch" in out, out
    assert db.analyticsrecords.count_documents({}) == 0
    assert all(lab.sims[p].requests_log() == [] for p in COUNTS)  # a dry run makes no request

    started = time.monotonic()
    first = _cli(cli_env, "--client", "backfill-co", "--concurrency", "8")
    wait_until(lambda: db.analyticsrecords.count_documents({}) >= 3000 or first.poll() is not None, 150, 0.5)
    assert first.poll() is None, first.communicate()[0]
    first.kill()  # SIGKILL: no chance to clean up
    first_out = first.communicate(timeout=30)[0]
    killed_at = db.analyticsrecords.count_documents({})
    job = db.analyticsbackfills.find_one({})
    assert job["status"] == "running" and killed_at < total

    second = _cli(cli_env, "--client", "backfill-co", "--concurrency", "8")
    out, _ = second.communicate(timeout=240)
    elapsed = time.monotonic() - started
    print(first_out[-600:])
    print(out)
    assert second.returncode == 0, out
    assert f"resuming backfill {job['_id']}" in out
    summary = re.search(r"done, (\d+)/(\d+) rows \((\d+) recorded now, (\d+) done before", out)
    assert summary, out
    done, eligible, now_recorded, before = map(int, summary.groups())
    assert (done, eligible) == (total, total)
    assert before >= killed_at and now_recorded == total - before  # continued, did not redo
    assert "throughput:" in out and "progress:" in out

    # Exactly one record per (post, platform), with real metrics, and nothing over any limit.
    assert db.analyticsrecords.count_documents({}) == total
    dupes = list(
        db.analyticsrecords.aggregate(
            [
                {"$group": {"_id": {"p": "$postId", "pl": "$platform", "s": "$slot"}, "n": {"$sum": 1}}},
                {"$match": {"n": {"$gt": 1}}},
            ]
        )
    )
    assert dupes == []
    by_platform = {
        row["_id"]: row["n"]
        for row in db.analyticsrecords.aggregate([{"$group": {"_id": "$platform", "n": {"$sum": 1}}}])
    }
    assert by_platform == COUNTS
    assert db.analyticsrecords.count_documents({"metrics.impressions": {"$gt": 0}}) == total
    refused = {p: lab.sims[p].state()["over_limit_refused"] for p in COUNTS}
    assert refused == dict.fromkeys(COUNTS, 0), refused
    assert db.analyticsbackfills.find_one({"_id": job["_id"]})["status"] == "done"
    print(
        f"backfill bench: {total} posts on 4 platforms in {elapsed:.1f} s end to end "
        f"({total / elapsed:.0f} rows/s incl. the kill and resume), {killed_at} recorded before SIGKILL, "
        f"refused over limit: {sum(refused.values())}"
    )

    # A third run finds nothing left to do.
    again = _cli(cli_env, "--client", "backfill-co")
    out, _ = again.communicate(timeout=120)
    assert (
        again.returncode == 0 and f"done, {total}/{total} rows (0 recorded now, {total} done before" in out
    ), out
