"""Through real processes: worker + dispatcher + webhook simulator, the API beside them.

* Retrying a published post (through the API, or by re-sending its Celery task as an operator
  would from Flower) publishes nothing new: the simulator still holds exactly one post.
* ``/metrics`` after a small run: the worker's prefork children count in
  ``PROMETHEUS_MULTIPROC_DIR``; both ``mcmp worker --metrics-port`` and a real ``mcmp api``
  process reading the same directory report exactly the deliveries made.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta

import pytest
import requests

from mcmp.devstack import free_port, wait_until
from tests.integration.api.conftest import headers

MCMP = [sys.executable, "-m", "mcmp.cli"]


def _published(db, post_ids):
    return db.posts.count_documents({"_id": {"$in": post_ids}, "status": "published"}) == len(post_ids)


def test_retrying_a_published_post_publishes_nothing_new(
    api,
    env,
    db,
    make_key,
    make_client,
    make_webhook_account,
    make_post,
    webhook_sim,
    start_worker,
    start_dispatcher,
):
    client = make_client()
    make_webhook_account(client)
    worker = start_worker(env, concurrency=1)
    start_dispatcher(env)
    post = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=1))
    wait_until(lambda: _published(db, [post["_id"]]), 30, 0.2, "post was not published")
    assert webhook_sim.state()["count"] == 1
    key = make_key(str(client["_id"]))

    for body in (None, {"platform": "website"}):
        r = api.post(f"/v1/posts/{post['_id']}/retry", json=body, headers=headers(key))
        assert r.status_code == 409 and r.json()["type"] == "urn:mcmp:problem:nothing-to-retry"

    from mcmp.worker.app import app as celery_app

    delivery = db.deliveries.find_one({"postId": str(post["_id"])})
    celery_app.send_task("mcmp.publish_delivery", args=[str(delivery["_id"])])
    wait_until(lambda: "already published" in worker.log_text(), 20, 0.2, "re-sent task was not processed")

    state = webhook_sim.state()
    assert state["count"] == 1 and state["duplicates"] == 0
    after = db.deliveries.find_one({"_id": delivery["_id"]})
    assert after["state"] == "published" and after["attempt"] == delivery["attempt"]
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "published"


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_the_deliveries_made(
    env,
    db,
    tmp_path,
    procs,
    make_key,
    make_client,
    make_webhook_account,
    make_post,
    webhook_sim,
    start_dispatcher,
):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    worker_port, api_port = free_port(), free_port()
    worker = procs(
        "worker", [*MCMP, "worker", "-c", "2", "--metrics-port", str(worker_port), "-n", "metrics@%h"], env
    )
    wait_until(
        lambda: "worker ready" in worker.log_text() or not worker.alive(), 60, 0.2, "worker did not start"
    )
    assert worker.alive(), worker.log_text()[-3000:]
    api_proc = procs("api", [*MCMP, "api", "--port", str(api_port)], env)
    base = f"http://127.0.0.1:{api_port}"

    def api_up() -> bool:
        assert api_proc.alive(), api_proc.log_text()[-3000:]
        try:
            return requests.get(f"{base}/v1/health/live", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(api_up, 60, 0.2, "mcmp api did not start")
    start_dispatcher(env)
    client = make_client()
    make_webhook_account(client)
    when = datetime.now(UTC) + timedelta(seconds=1)
    posts = [make_post(client, ["website"], when=when)["_id"] for _ in range(4)]
    wait_until(lambda: _published(db, posts), 40, 0.2, "posts were not published")
    assert webhook_sim.state()["count"] == 4

    from_worker = requests.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=5).text
    from_api = requests.get(f"{base}/metrics", timeout=5).text
    for text in (from_worker, from_api):
        assert _sample(text, "mcmp_deliveries_total", platform="website", outcome="published") == 4
        assert _sample(text, "mcmp_publish_lateness_seconds_count", platform="website") == 4
        # every platform HTTP request is timed with its status: 4 webhook POSTs answered 201
        labels = {"platform": "website", "method": "POST", "status": "201"}
        assert _sample(text, "mcmp_platform_request_seconds_count", **labels) == 4
    assert re.search(r'^mcmp_delivery_backlog\{position="due"\} 0\.0$', from_api, re.M)

    # the real API process: readiness sees the worker, a key sees its posts
    ready = requests.get(f"{base}/v1/health/ready", params={"workerTimeout": 1}, timeout=10).json()
    assert ready["status"] == "ready" and ready["workers"] >= 1
    key = make_key(str(client["_id"]))
    listed = requests.get(f"{base}/v1/posts", headers=headers(key), timeout=5).json()["items"]
    assert sorted(p["id"] for p in listed) == sorted(str(p) for p in posts)
    assert all(p["deliveries"][0]["state"] == "published" for p in listed)


@pytest.mark.parametrize("worker_first", [False, True], ids=["worker-stopped", "message-prefetched"])
def test_cancelling_a_post_whose_message_waits_in_the_queue_publishes_nothing(
    worker_first,
    api,
    env,
    db,
    make_key,
    make_client,
    make_webhook_account,
    make_post,
    webhook_sim,
    start_worker,
    start_dispatcher,
):
    """The cancel lands while the delivery, born taken, waits for a worker: in the broker (no
    worker running), or held by a worker until its due time (the look-ahead)."""
    client = make_client()
    make_webhook_account(client)
    worker = start_worker(env, concurrency=1) if worker_first else None
    post = make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=4))
    start_dispatcher(env)
    found = {"postId": str(post["_id"]), "state": "in_flight"}
    wait_until(lambda: db.deliveries.find_one(found), 20, 0.1, "the dispatcher did not send it")

    r = api.post(f"/v1/posts/{post['_id']}/cancel", headers=headers(make_key(str(client["_id"]))))

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    worker = worker or start_worker(env, concurrency=1)  # the waiting message runs now
    ran = re.compile(r"Task mcmp\.publish_\w+\[[^\]]+\] succeeded")
    wait_until(lambda: ran.search(worker.log_text()), 30, 0.2, "the waiting message did not run")
    assert webhook_sim.state()["count"] == 0, "a cancelled post reached the platform"
    assert db.deliveries.find_one({"postId": str(post["_id"])})["state"] == "cancelled"
    assert db.posts.find_one({"_id": post["_id"]})["status"] == "approved"
