"""Opaque cursors on ``_id`` (newest first): stable under inserts, one indexed range per page."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from bson import ObjectId
from fastapi import Query

from mcmp.api.problems import ApiProblem, FieldError

CursorParam = Annotated[str | None, Query(max_length=64, description="`nextCursor` of the previous page")]
LimitParam = Annotated[int, Query(ge=1, le=200)]
T = TypeVar("T", bound=Mapping[str, Any])


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
    fetch: Callable[[ObjectId | None, int], list[T]], cursor: str | None, limit: int
) -> tuple[list[T], str | None]:
    """One page from ``fetch(before, limit)`` (newest first, ids below ``before``) and the next cursor."""
    docs = fetch(decode(cursor) if cursor else None, limit + 1)
    more = len(docs) > limit
    docs = docs[:limit]
    return docs, encode(docs[-1]["_id"]) if more and docs else None
