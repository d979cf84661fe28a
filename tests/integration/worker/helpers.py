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
    """One delivery born ``queued`` under a claim token, its post marked expanded, as the
    dispatcher's expansion makes them."""
    due = due or post["scheduleTime"]
    ensured = delivery_states.ensure(
        [NewDelivery(str(post["_id"]), str(post["clientId"]), platform, due)], claim_lease_seconds=60
    )
    mark_expanded([post])
    return ensured.claimed[0]


def mark_expanded(expanded: list[dict[str, Any]]) -> None:
    """Posts whose deliveries exist, marked as the dispatcher marks them (only such settle)."""
    marked = now()
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
