"""A website account whose webhook secret is too short fails its delivery before any call."""

from __future__ import annotations

from datetime import timedelta

from mcmp.worker.publishing.batch import publish_batch
from tests.unit.helpers import born, now


def test_a_short_webhook_secret_fails_the_delivery_with_a_reason_and_publishes_nothing(
    db, make_client, make_account, make_post, webhook_sim
):
    short = "tenant-pw-123"  # 13 bytes
    client = make_client()
    make_account(
        client,
        "website",
        accessToken=short,
        metadata={"webhookUrl": f"{webhook_sim.base_url}/hooks/{client['slug']}", "mode": "webhook"},
    )
    post = make_post(client, ["website"], when=now() - timedelta(seconds=1))
    ids, claim = born([post])

    assert publish_batch(ids, claim) == {"failed": 1}
    delivery = db.deliveries.find_one({"postId": str(post["_id"])})
    assert delivery["state"] == "failed"
    assert "account.accessToken" in delivery["lastError"] and "at least 16 bytes" in delivery["lastError"]
    assert short not in delivery["lastError"]
    stored = db.posts.find_one({"_id": post["_id"]})
    assert stored["status"] == "failed" and "16 bytes" in stored["lastError"]
    assert webhook_sim.requests_log() == []  # no publish (and no lookup) was attempted
