"""Campaign bounds: an ended campaign fails the delivery with the reason, a campaign not yet
started holds the post until its start, and ``campaignOverride`` lets an admin publish anyway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from mcmp.worker.publishing import campaign_bounds


def _campaign(
    db: Any, client: dict[str, Any], name: str, start: datetime | None, end: datetime | None
) -> str:
    doc = {"_id": ObjectId(), "clientId": str(client["_id"]), "name": name, "tags": [], "__v": 0}
    if start:
        doc["startDate"] = start
    if end:
        doc["endDate"] = end
    db.campaigns.insert_one(doc)
    return str(doc["_id"])


def test_check_explains_each_case(db, make_client) -> None:
    client, other = make_client(), make_client()
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    ended = _campaign(db, client, "Spring Sale", None, now - timedelta(days=1))
    later = _campaign(db, client, "Summer Launch", now + timedelta(days=10), None)
    soon = _campaign(db, client, "Flash", now + timedelta(minutes=20), now + timedelta(days=1))
    running = _campaign(db, client, "Always", now - timedelta(days=1), now + timedelta(days=1))
    foreign = _campaign(db, other, "Theirs", None, now - timedelta(days=1))
    post = {"_id": ObjectId(), "clientId": str(client["_id"])}

    verdict = campaign_bounds.check({**post, "campaignId": ended}, now)
    assert verdict is not None and verdict.hold_until is None
    assert verdict.reason == (
        "campaign 'Spring Sale' ended 2026-05-31 12:00 UTC; not publishing "
        "(an admin can set campaignOverride to publish anyway)"
    )
    verdict = campaign_bounds.check({**post, "campaignId": later}, now)
    assert verdict is not None and verdict.reason.startswith(
        "campaign 'Summer Launch' starts 2026-06-11 12:00"
    )
    assert verdict.hold_until == now + campaign_bounds.RECHECK  # re-checked hourly meanwhile
    verdict = campaign_bounds.check({**post, "campaignId": soon}, now)
    assert verdict is not None and verdict.hold_until == now + timedelta(minutes=20)
    assert campaign_bounds.check({**post, "campaignId": running}, now) is None
    assert campaign_bounds.check({**post, "campaignId": foreign}, now) is None  # tenancy
    assert campaign_bounds.check({**post, "campaignId": str(ObjectId())}, now) is None
    assert campaign_bounds.check({**post, "campaignId": "not-an-id"}, now) is None
    assert campaign_bounds.check(post, now) is None
    assert campaign_bounds.check({**post, "campaignId": ended, "campaignOverride": True}, now) is None


def test_override_is_scoped_to_the_client(db, make_client, make_post) -> None:
    client, other = make_client(), make_client()
    post = make_post(client, ["website"])
    assert not campaign_bounds.override(str(post["_id"]), str(other["_id"]))
    assert campaign_bounds.override(str(post["_id"]), str(client["_id"]))
    assert db.posts.find_one({"_id": post["_id"]})["campaignOverride"] is True
