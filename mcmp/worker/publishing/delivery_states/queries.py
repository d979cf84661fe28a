"""Read-only views of a post's deliveries."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mcmp.models.delivery import DeliveryDoc, DeliveryField, deliveries
from mcmp.models.id_batches import find_in

log = logging.getLogger(__name__)


def for_post(post_id: str) -> list[DeliveryDoc]:
    return list(deliveries().find({DeliveryField.POST_ID: post_id}))


def for_posts(post_ids: Sequence[str]) -> dict[str, list[DeliveryDoc]]:
    """The deliveries of many posts in one query, by post id."""
    found: dict[str, list[DeliveryDoc]] = {post_id: [] for post_id in post_ids}
    for d in find_in(deliveries(), DeliveryField.POST_ID, list(post_ids)):
        found.setdefault(d["postId"], []).append(d)
    return found
