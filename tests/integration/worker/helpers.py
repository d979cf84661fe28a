"""Deliveries written and taken the way the dispatcher and a worker do, for direct tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mcmp.config import get_settings
from mcmp.worker.accounts.cache import AccountCache
from mcmp.worker.publishing import delivery_states
from mcmp.worker.publishing.delivery_states import NewDelivery, Taken
from mcmp.worker.publishing.post_status import EXPANDED_MARKER, posts
from mcmp.worker.publishing.preflight import Preflight


def now() -> datetime:
    return datetime.now(UTC)


def new_delivery(post: dict[str, Any], platform: str, due: datetime | None = None) -> dict[str, Any]:
    """One delivery claimed ``queued`` under a claim token, its post marked expanded, as the
    dispatcher claims a pending one (beyond its tenant's share at birth, or retried)."""
    due = due or post["scheduleTime"]
    delivery_states.ensure([NewDelivery(str(post["_id"]), str(post["clientId"]), platform, due)])
    mark_expanded([post])
    found = delivery_states.deliveries().find_one({"postId": str(post["_id"]), "platform": platform})
    assert found is not None
    return delivery_states.claim_ids([found["_id"]], 60)[0]


def born(posts: list[dict[str, Any]], platform: str = "website") -> tuple[list[str], dict[str, Any]]:
    """Deliveries born taken, their posts marked expanded, and the batch message's ids and claim,
    as the dispatcher's expansion makes and sends them."""
    taken = delivery_states.ensure(
        [NewDelivery(str(p["_id"]), str(p["clientId"]), platform, p["scheduleTime"]) for p in posts],
        take_lease_seconds=60,
    ).taken
    mark_expanded(posts)
    items = [delivery_states.batch_item(d) for d in taken]
    return [str(d["_id"]) for d in taken], {"attempt": taken[0]["attemptId"], "items": items}


def mark_expanded(expanded: list[dict[str, Any]]) -> None:
    """Posts whose deliveries exist, marked as the dispatcher marks them (only such settle)."""
    marked = now()
    marked = marked.replace(microsecond=marked.microsecond // 1000 * 1000)  # as BSON stores it
    posts().update_many({"_id": {"$in": [p["_id"] for p in expanded]}}, {"$set": {EXPANDED_MARKER: marked}})
    for post in expanded:
        post[EXPANDED_MARKER] = marked


def take(post: dict[str, Any], platform: str = "website", due: datetime | None = None) -> Taken:
    """The delivery of (post, platform) taken for its first attempt through the claim hint."""
    claimed = new_delivery(post, platform, due)
    hint = delivery_states.claim_hint(claimed)
    assert hint is not None
    taken = delivery_states.start_claimed(str(claimed["_id"]), hint, 60)
    assert taken is not None
    return taken


def preflight(taken: Taken, post: dict[str, Any] | None, **fields: Any) -> Preflight:
    return Preflight(
        taken=taken,
        settings=get_settings(),
        now=fields.pop("at", now()),
        post=post,  # type: ignore[arg-type]
        accounts=AccountCache(0),
        **fields,
    )


def hours_ago(hours: float) -> datetime:
    return now() - timedelta(hours=hours)
