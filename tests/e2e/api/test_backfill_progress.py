"""``mcmp analytics backfill`` progress as a person watching it sees it, on a real Graph simulator.

Facebook rows arrive 25 at a time (one Graph batch), with waits for the rate budget between
batches. The printed rate and ETA must describe the whole run (not the last jump), and the job's
saved progress must be written on a timer: a run killed with SIGKILL while it waits for budget
shows, through the API, the rows it recorded.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from bson import ObjectId

from mcmp.devstack import wait_until
from tests import ROOT
from tests.integration.api.conftest import headers

pytestmark = pytest.mark.platforms("facebook")


def _seed(db: Any, lab: Any, client: dict[str, Any], count: int) -> None:
    now = datetime.now(UTC)
    posts, sim_posts = [], []
    for i in range(count):
        age = timedelta(hours=2, minutes=i)
        pid = f"1000001_{6_000_000 + i}"
        posts.append(
            {
                "_id": ObjectId(),
                "clientId": str(client["_id"]),
                "title": f"Post {i}",
                "body": "…",
                "platforms": ["facebook"],
                "assetUrls": [],
                "status": "published",
                "scheduleTime": now - age,
                "platformPostIds": {"facebook": pid},
                "publishedAt": {"facebook": now - age},
                "statusHistory": [],
                "createdAt": now - age,
                "updatedAt": now - age,
                "__v": 0,
            }
        )
        sim_posts.append({"id": pid, "owner": "1000001", "age_seconds": age.total_seconds()})
    db.posts.insert_many(posts)
    url = lab.sims["facebook"].base_url
    requests.post(f"{url}/_sim/seed", json={"posts": sim_posts}, timeout=30).raise_for_status()


def _backfill(env: dict[str, str], slug: str, **pacing: str) -> subprocess.Popen[str]:
    run_env = {**env, "MCMP_LOG_LEVEL": "WARNING"}
    for name, value in pacing.items():
        run_env[f"MCMP_FACEBOOK__ANALYTICS_{name.upper()}"] = value
    return subprocess.Popen(
        [sys.executable, "-m", "mcmp.cli", "analytics", "backfill", "--client", slug, "--concurrency", "2"],
        env=run_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_rate_and_eta_describe_the_whole_run(env, db, platform_lab, make_client, make_account):
    client = make_client(slug="progress-co")
    make_account(client, "facebook", **platform_lab.account_fields("facebook", client))
    _seed(db, platform_lab, client, 150)
    # 25 rows at once (the burst), then one 25-row batch every 2.5 s: about 10 rows/s overall
    proc = _backfill(
        platform_lab.env,
        "progress-co",
        app_calls_per_second="100",
        account_calls_per_second="10",
        burst="25",
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc.wait(timeout=120)
    reader.join(timeout=10)
    text = "\n".join(line for _, line in lines)
    assert proc.returncode == 0, text
    planned = next(t for t, line in lines if line.startswith("plan:"))
    finished = next(t for t, line in lines if " done, 150/150 rows" in line)
    progress = [
        (t, *map(float, m.groups()))
        for t, line in lines
        if (
            m := re.match(
                r"progress: (\d+)/150 rows in \d+ s, ([\d.]+) rows/s, eta (\d+):(\d\d):(\d\d)$", line
            )
        )
    ]
    assert len(progress) >= 4, text
    for seen_at, done, rate, h, m, s in progress:
        elapsed = seen_at - planned
        if elapsed < 4:  # the first burst: any estimate is early
            continue
        measured = done / elapsed  # what a person with a stopwatch measures
        assert 0.6 * measured <= rate <= 1.6 * measured, (done, elapsed, rate, text)
        eta = h * 3600 + m * 60 + s
        if done < 150:
            left = finished - seen_at
            assert 0.4 * left - 3 <= eta <= 2.0 * left + 3, (done, eta, left, text)


def test_saved_progress_survives_a_kill_while_waiting_for_budget(
    api, env, db, platform_lab, make_key, make_client, make_account
):
    client = make_client(slug="killed-co")
    make_account(client, "facebook", **platform_lab.account_fields("facebook", client))
    _seed(db, platform_lab, client, 100)
    # the first Graph batch at once, then the next needs close to a minute of budget: the run waits
    proc = _backfill(
        platform_lab.env,
        "killed-co",
        app_calls_per_second="100",
        account_calls_per_second="0.5",
        burst="50",
    )
    try:
        wait_until(
            lambda: db.analyticsrecords.count_documents({}) >= 25 or proc.poll() is not None,
            60,
            0.2,
            "no rows recorded",
        )
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(3)  # rows stopped coming: the run is waiting for budget
        recorded = db.analyticsrecords.count_documents({})
        assert 25 <= recorded < 100 and proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    job = db.analyticsbackfills.find_one({"clientId": str(client["_id"])})
    r = api.get(f"/v1/analytics/backfills/{job['_id']}", headers=headers(make_key(str(client["_id"]))))
    assert r.status_code == 200, r.text
    shown = r.json()
    assert (shown["done"], shown["total"], shown["status"]) == (recorded, 100, "running"), shown
    assert shown["detail"]["recorded"] == recorded and shown["detail"]["rowsPerSecond"] > 0
