"""A conditional update whose condition travels inside the update, so the filter is ``_id`` alone.

SecantusDB serves a filter of ``_id`` alone by a direct key lookup, but for ``{_id, state,
attemptId}`` it first walks its index catalogue several times (one walk per planner rule) before
falling back to the ``_id`` lookup: measured by ``bench/server_ops.py``, an outcome write cost
1.9 ms of server CPU with the compare-and-swap fields in the filter and 1.3 ms with them inside an
update pipeline (1.1 ms with no condition at all). The write stays one atomic compare-and-swap per
document on any MongoDB (pipeline updates exist since 4.2): the fields change only when every
condition holds, and ``modified_count`` says whether they did (a transition always changes at
least one field, so "not modified" means "condition did not hold").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Filter values this rewrites; anything else (ranges, $in, $or …) keeps the classic form.
_SCALARS = (str, int, float, bool, type(None))


def _condition(field: str, wanted: Any) -> dict[str, Any] | None:
    if isinstance(wanted, Mapping):
        if dict(wanted) == {"$exists": True}:
            return {"$ne": [{"$type": f"${field}"}, "missing"]}
        return None
    if isinstance(wanted, _SCALARS) or type(wanted).__name__ in ("ObjectId", "datetime"):
        if wanted is None:  # classic equality with null also matches a missing field
            return {"$in": [{"$type": f"${field}"}, ["missing", "null"]]}
        return {"$eq": [f"${field}", {"$literal": wanted}]}
    return None


def guarded(filter: Mapping[str, Any], update: Mapping[str, Any]) -> tuple[dict[str, Any], Any] | None:
    """``(filter on _id, pipeline)`` doing what ``update`` does where ``filter`` matches, or None
    when the shapes are not ones this rewrites (then send them as they are)."""
    if "_id" not in filter or len(filter) < 2 or set(update) - {"$set", "$inc", "$unset", "$push"}:
        return None
    conditions = []
    for field, wanted in filter.items():
        if field == "_id":
            continue
        if field.startswith("$") or "." in field:
            return None
        condition = _condition(field, wanted)
        if condition is None:
            return None
        conditions.append(condition)
    holds = {"$and": conditions}
    stage: dict[str, Any] = {}
    for field, value in update.get("$set", {}).items():
        stage[field] = {"$cond": [holds, {"$literal": value}, f"${field}"]}
    for field, step in update.get("$inc", {}).items():
        stage[field] = {"$cond": [holds, {"$add": [{"$ifNull": [f"${field}", 0]}, step]}, f"${field}"]}
    for field in update.get("$unset", {}):
        stage[field] = {"$cond": [holds, "$$REMOVE", f"${field}"]}
    for field, value in update.get("$push", {}).items():
        if isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
            return None  # $each / $slice … keep the classic form
        grown = {"$concatArrays": [{"$ifNull": [f"${field}", []]}, [{"$literal": value}]]}
        stage[field] = {"$cond": [holds, grown, f"${field}"]}
    if len(stage) != sum(len(update.get(op, {})) for op in ("$set", "$inc", "$unset", "$push")):
        return None  # one field named by two operators
    return {"_id": filter["_id"]}, [{"$set": stage}]


__all__ = ["guarded"]
