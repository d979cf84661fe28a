"""Flower as the operator's UI, driven over HTTP as an operator would, against real processes.

A post goes to the website and to LinkedIn; its text is too long for LinkedIn, so that delivery
fails (website publishes). In a real ``mcmp flower`` (basic auth on):

* the task list filtered by FAILURE holds exactly the failed delivery's ``mcmp.publish_delivery``,
  with post id and platform in its kwargs and the reason in its exception;
* re-sending that task for the failed delivery ends FAILURE again with its ``lastError``;
* ``mcmp.retry_post`` applied through Flower's API is refused while the post would fail again
  (FAILURE naming the field; nothing re-opened), and once the text is fixed re-publishes only
  LinkedIn (the website simulator still holds one post), noted "retried from Flower";
* headless Chromium renders the Failed list with the task name in it (DOM and a screenshot);
* periodic maintenance (beat) leaves no task in the list.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import requests

from mcmp.devstack import wait_until

LONG_BODY = "Launch day! " * 300  # 3,600 characters: LinkedIn allows 3,000


def _post_status(db, post_id):
    return db.posts.find_one({"_id": post_id})["status"]


@pytest.mark.platforms("website", "linkedin")
def test_failed_delivery_is_found_and_retried_from_flower(
    env,
    db,
    tmp_path,
    platform_lab,
    make_client,
    make_account,
    make_post,
    start_flower,
    start_worker,
    start_dispatcher,
    procs,
    chromium,
):
    lab_env = {**platform_lab.env, "MCMP_ANALYTICS_PLAN_INTERVAL_SECONDS": "1"}
    flower = start_flower(lab_env)
    assert requests.get(f"{flower.url}/api/tasks", timeout=5).status_code == 401  # never open
    worker = start_worker(lab_env, concurrency=2)
    start_dispatcher(lab_env)
    beat = procs(
        "beat", [sys.executable, "-m", "mcmp.cli", "beat"], {**lab_env, "MCMP_STATE_DIR": str(tmp_path)}
    )
    wait_until(lambda: flower.get("/api/workers", status=1), 60, 0.5, "Flower never saw the worker")

    client = make_client()
    for platform in ("website", "linkedin"):
        make_account(client, platform, **platform_lab.account_fields(platform, client))
    post = make_post(
        client, ["website", "linkedin"], when=datetime.now(UTC) + timedelta(seconds=1), body=LONG_BODY
    )
    pid = str(post["_id"])
    wait_until(lambda: _post_status(db, post["_id"]) == "failed", 60, 0.3, "post did not fail on linkedin")

    # The Failed filter lists exactly the failed delivery, labelled with post and platform.
    failed = wait_until(lambda: flower.tasks(state="FAILURE"), 30, 0.5, "no FAILURE task in Flower")
    assert len(failed) == 1, failed
    ((task_id, task),) = failed.items()
    assert task["name"] == "mcmp.publish_delivery"
    assert f"'post_id': '{pid}'" in task["kwargs"] and "'platform': 'linkedin'" in task["kwargs"]
    assert "DeliveryFailed" in task["exception"] and "LinkedIn allows 3000 characters" in task["exception"]
    delivery = db.deliveries.find_one({"postId": pid, "platform": "linkedin"})
    assert task["args"] == f"['{delivery['_id']}']"
    # The post's two deliveries went out as one batch, which succeeded (its failed member is the
    # task above); nothing else failed.
    website = db.deliveries.find_one({"postId": pid, "platform": "website"})
    succeeded = flower.tasks(state="SUCCESS", taskname="mcmp.publish_batch")
    assert any(str(website["_id"]) in t["args"] for t in succeeded.values()), succeeded

    # Re-sending the task of a failed delivery (from Flower) fails again with its lastError.
    resent = flower.apply("mcmp.publish_delivery", str(delivery["_id"]), post_id=pid, platform="linkedin")
    again = wait_until(
        lambda: (flower.task(resent) or {}).get("state") == "FAILURE" and flower.task(resent), 30, 0.5
    )
    assert "LinkedIn allows 3000 characters" in again["exception"]
    assert db.deliveries.find_one({"_id": delivery["_id"]})["attempt"] == delivery["attempt"]

    # Screenshot of the Failed list in headless Chromium (basic auth in the URL).
    page = f"http://{flower.auth[0]}:{flower.auth[1]}@127.0.0.1:{flower.url.rsplit(':', 1)[1]}/tasks?state=FAILURE"
    budget = ["--virtual-time-budget=8000", "--window-size=1600,900", "--force-device-scale-factor=2"]
    dom = chromium(*budget, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = re.findall(r"<tr[^>]*>.*?</tr>", dom.stdout, re.S)
    assert any(task_id in row and "mcmp.publish_delivery" in row for row in rows), dom.stdout[-3000:]
    shot = tmp_path / "flower-failed.png"
    taken = chromium(*budget, f"--screenshot={shot}", page)
    assert taken.returncode == 0 and shot.stat().st_size > 20_000, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ocr = subprocess.run([_tesseract(), str(shot), "stdout"], capture_output=True, text=True, timeout=120)
    assert "publish_delivery" in ocr.stdout.replace(" ", ""), ocr.stdout[:2000]

    # Retry from Flower while the text is still too long: refused, nothing re-opened.
    refused = flower.apply("mcmp.retry_post", pid)
    outcome = wait_until(
        lambda: (flower.task(refused) or {}).get("state") in ("FAILURE", "SUCCESS") and flower.task(refused),
        30,
        0.5,
    )
    assert outcome["state"] == "FAILURE" and "body" in outcome["exception"], outcome
    assert db.deliveries.find_one({"_id": delivery["_id"]})["state"] == "failed"
    assert _post_status(db, post["_id"]) == "failed"

    # The frontend fixes the text; the operator applies mcmp.retry_post again through Flower.
    db.posts.update_one({"_id": post["_id"]}, {"$set": {"body": "Launch day!"}})
    applied = flower.apply("mcmp.retry_post", pid, platform="linkedin")
    wait_until(lambda: _post_status(db, post["_id"]) == "published", 60, 0.3, "post was not republished")
    done = wait_until(
        lambda: (flower.task(applied) or {}).get("state") == "SUCCESS" and flower.task(applied), 30, 0.5
    )
    assert "'platforms': ['linkedin']" in done["result"]
    assert platform_lab.sims["website"].state()["count"] == 1  # the website was not posted again
    linkedin_posts = [
        r
        for r in platform_lab.sims["linkedin"].requests_log()
        if r["method"] == "POST" and r["path"] == "/rest/posts"
    ]
    assert len(linkedin_posts) == 1
    history = db.posts.find_one({"_id": post["_id"]})["statusHistory"]
    assert [h.get("note") for h in history if h.get("toStatus") == "scheduled"][-1] == "retried from Flower"

    # Beat ran its periodic tasks all along (reap every second here): none of them is listed.
    assert "mcmp.maintenance.reap" in beat.log_text() or "Scheduler: Sending" in beat.log_text()
    names = {t["name"] for t in flower.tasks().values()}
    assert names <= {"mcmp.publish_delivery", "mcmp.publish_batch", "mcmp.retry_post"}, names
    assert worker.alive()


def _tesseract() -> str:
    found = shutil.which("tesseract")
    if found is None:
        pytest.fail(
            "tesseract is required to read the screenshot (scripts/test installs tesseract-ocr)",
            pytrace=False,
        )
    return found
