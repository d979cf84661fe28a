"""Reads of many documents by id that stay cheap on SecantusDB (tests' and benchmarks' audits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pymongo.collection import Collection

IN_CHUNK = 50

_Doc = TypeVar("_Doc", bound=Mapping[str, Any])  # whatever document type the collection holds


def find_in(
    collection: Collection[_Doc],
    field_name: str,
    values: list[Any],
    query: Mapping[str, Any] | None = None,
    projection: Mapping[str, Any] | None = None,
) -> list[_Doc]:
    """Documents whose ``field_name`` is one of ``values``, asked ``IN_CHUNK`` values at a time.

    SecantusDB checks each candidate document against every value of an ``$in`` in turn, so
    one query over n ids costs n² comparisons (2,500 ids: 6 s of server CPU, holding up the
    workers under test); chunks keep a test's or a benchmark's own reads linear.
    """
    found: list[_Doc] = []
    for i in range(0, len(values), IN_CHUNK):
        chunk = {field_name: {"$in": values[i : i + IN_CHUNK]}}
        found.extend(collection.find({**(query or {}), **chunk}, projection))
    return found


def still_scheduled(collection: Collection[Any], ids: list[Any]) -> list[Any]:
    """Which of these posts are still ``scheduled`` (in chunks: linear on SecantusDB)."""
    return [d["_id"] for d in find_in(collection, "_id", ids, {"status": "scheduled"}, {"_id": 1})]
