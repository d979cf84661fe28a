"""Recovery lateness on default settings: workers killed while batches are mid-call, Redis restarted.

Posts come due in bursts (so the dispatcher hands them out as ``mcmp.publish_batch`` messages)
to a platform that answers after 1.5 s, so each ``kill -9`` lands while a batch's calls are in
flight; Redis is restarted between the kills (its queued messages are lost). Nothing shortens
a lease: a dead worker's deliveries are handed on through liveness, lost messages are re-sent.
The webhook simulator's own store says what reached the platform.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId

from mcmp.devstack import PrivateRedis, SimClient, start_simulator, still_scheduled
from tests.chaos.harness import ChaosReport, audit

BURSTS = 4
PER_BURST = 30
BURST_EVERY = 6.0
LATENCY_MS = 1500
# The recovery promise: no post more than this late after a kill or a lost message.
RECOVERY_LATENESS_SECONDS = 15.0


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_kill_while_batches_are_mid_call_loses_and_duplicates_nothing(
    env, db, make_client, make_account, start_worker, start_dispatcher, run_dir: Path, tmp_path: Path
):
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    sim_proc = None
    try:
        chaos_env = {k: v for k, v in env.items() if k != "MCMP_REAP_INTERVAL_SECONDS"}
        chaos_env["MCMP_REDIS_URL"] = private.url
        chaos_env["MCMP_WEBSITE__TIMEOUT_SECONDS"] = "10"
        sim_proc, sim_url = start_simulator("website", chaos_env, run_dir / "logs", latency_ms=LATENCY_MS)
        sim = SimClient(sim_url)
        client = make_client(slug="recovery")
        make_account(
            client,
            "website",
            accessToken="dev-webhook-secret",
            metadata={"webhookUrl": f"{sim_url}/hooks/recovery", "mode": "webhook"},
        )

        started = []

        def new_worker():
            started.append(start_worker(chaos_env, concurrency=4, pool="threads"))
            return started[-1]

        workers = [new_worker(), new_worker()]
        start_dispatcher(chaos_env, name="dispatcher-a")
        start_dispatcher(chaos_env, name="dispatcher-b")
        start = datetime.now(UTC) + timedelta(seconds=4)
        post_ids = _insert_bursts(db, client, start)
        began = time.monotonic()
        kills = restarts = 0
        # Each kill lands 0.7 s into a burst: its batch has been taken and is waiting on the platform.
        # The kills are far enough apart that each measures one recovery, not two in a row.
        plan = [(4 + 0.7, "kill"), (4 + BURST_EVERY * 1 + 2.0, "redis"), (4 + BURST_EVERY * 3 + 0.7, "kill")]
        for at, action in plan:
            time.sleep(max(0.0, at - (time.monotonic() - began)))
            if action == "kill":
                workers.pop(0).kill9()
                kills += 1
                workers.append(new_worker())
            else:
                private.restart()
                restarts += 1
        pending = list(post_ids)
        deadline = time.monotonic() + 240
        while pending and time.monotonic() < deadline:
            time.sleep(1.0)
            pending = still_scheduled(db.posts, pending)
        assert not pending, f"{len(pending)} posts still scheduled"
        state = sim.state()
        result = audit(
            db, post_ids, {"website": state["posts"]}, lambda p: p["idempotencyKey"], lambda p: p["id"]
        )
        report = ChaosReport(
            posts=len(post_ids),
            worker_kills=kills,
            redis_restarts=restarts,
            seconds=time.monotonic() - began,
            **result,
        )
        print(report.line())
        batches = sum(w.log_text().count("mcmp.publish_batch") for w in started)
    finally:
        if sim_proc is not None:
            sim_proc.stop()
        private.stop()
    assert report.duplicates == 0 and state["duplicates"] == 0, report.line()
    assert report.lost == 0 and report.published == len(post_ids), report.line()
    assert report.mismatched_ids == 0 and report.bad_history == 0, report.line()
    assert batches > 0, "the bursts were not published as batches"
    assert report.late_max <= RECOVERY_LATENESS_SECONDS, report.line()


def _insert_bursts(db, client, start: datetime) -> list[ObjectId]:
    """``BURSTS`` bursts of ``PER_BURST`` Mongoose-shaped posts, each burst due at one instant."""
    now = datetime.now(UTC)
    docs = [
        {
            "_id": ObjectId(),
            "clientId": str(client["_id"]),
            "title": f"Burst {burst}",
            "body": f"Recovery post {burst}-{i} {uuid.uuid4().hex[:6]}",
            "platforms": ["website"],
            "assetUrls": [],
            "status": "scheduled",
            "scheduleTime": start + timedelta(seconds=BURST_EVERY * burst),
            "platformPostIds": {"_id": ObjectId()},
            "publishedAt": {"_id": ObjectId()},
            "statusHistory": [
                {"_id": ObjectId(), "at": now, "fromStatus": "approved", "toStatus": "scheduled"}
            ],
            "createdAt": now,
            "updatedAt": now,
            "__v": 0,
        }
        for burst in range(BURSTS)
        for i in range(PER_BURST)
    ]
    db.posts.insert_many(docs)
    return [d["_id"] for d in docs]
