"""Reads of many documents by id that stay cheap on SecantusDB (tests' and benchmarks' audits)."""

from __future__ import annotations

from typing import Any

from pymongo.collection import Collection

from mcmp.models.id_batches import find_in


def still_scheduled(collection: Collection[Any], ids: list[Any]) -> list[Any]:
    """Which of these posts are still ``scheduled`` (in chunks: linear on SecantusDB)."""
    return [d["_id"] for d in find_in(collection, "_id", ids, {"status": "scheduled"}, {"_id": 1})]


__all__ = ["find_in", "still_scheduled"]
