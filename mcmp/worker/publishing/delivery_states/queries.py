"""Read-only views of a post's deliveries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mcmp.worker.publishing.delivery_states.store import (
    deliveries,
)

log = logging.getLogger(__name__)


def for_post(post_id: str) -> list[dict[str, Any]]:
    return list(deliveries().find({"postId": post_id}))


def for_posts(post_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The deliveries of many posts in one query, by post id."""
    found: dict[str, list[dict[str, Any]]] = {post_id: [] for post_id in post_ids}
    for d in deliveries().find({"postId": {"$in": list(post_ids)}}):
        found.setdefault(d["postId"], []).append(d)
    return found
