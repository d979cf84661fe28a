"""Opaque cursors on ``_id`` (newest first): stable under inserts, one indexed range per page."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from bson import ObjectId
from fastapi import Query

from mcmp.api.problems import ApiProblem, FieldError

CursorParam = Annotated[str | None, Query(max_length=64, description="`nextCursor` of the previous page")]
LimitParam = Annotated[int, Query(ge=1, le=200)]


def encode(last_id: ObjectId) -> str:
    return base64.urlsafe_b64encode(b"v1:" + last_id.binary).decode().rstrip("=")


def decode(cursor: str) -> ObjectId:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if not raw.startswith(b"v1:") or len(raw) != 15:
        raise ApiProblem(
            422,
            "validation-error",
            "invalid request: query.cursor",
            [FieldError(field="query.cursor", message="not a cursor returned by this API")],
        )
    return ObjectId(raw[3:])


def page(
    collection: Any,
    query: dict[str, Any],
    cursor: str | None,
    limit: int,
    projection: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``query`` (which must already carry the tenant filter) and the next cursor."""
    if cursor:
        query = {**query, "_id": {"$lt": decode(cursor)}}
    docs = list(collection.find(query, projection).sort("_id", -1).limit(limit + 1))
    more = len(docs) > limit
    docs = docs[:limit]
    return docs, encode(docs[-1]["_id"]) if more and docs else None
