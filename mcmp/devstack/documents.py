"""A scheduled post as the frontend's Mongoose model writes it, for the dev demo, tests and benches.

One shape everywhere we seed posts ourselves, so the dev stack, the benchmarks and the end-to-end
tests all exercise the documents the worker really meets (timestamps, ``__v``, empty maps).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def scheduled_post(
    client_id: str,
    platforms: Sequence[str],
    schedule_time: datetime | str,
    *,
    title: str = "",
    body: str = "",
    asset_urls: Sequence[str] = (),
    now: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A ``posts`` document in ``scheduled`` state; ``fields`` add to or override the defaults."""
    at = now or datetime.now(UTC)
    return {
        "clientId": client_id,
        "title": title,
        "body": body,
        "platforms": list(platforms),
        "assetUrls": list(asset_urls),
        "status": "scheduled",
        "scheduleTime": schedule_time,
        "platformPostIds": {},
        "publishedAt": {},
        "statusHistory": [],
        "createdAt": at,
        "updatedAt": at,
        "__v": 0,
        **fields,
    }
