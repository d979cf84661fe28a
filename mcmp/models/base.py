"""Shared pieces of every document: Mongoose-compatible timestamps and loose loading.

The frontend (NestJS + Mongoose) writes the same collections. Its documents carry ``__v`` and an
``_id`` inside nested objects, so every document here is ``strict: False`` (unknown fields load
without error) and keeps ``createdAt``/``updatedAt`` like Mongoose's ``timestamps: true``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from mongoengine import DateTimeField, Document


def utcnow() -> datetime:
    """Aware UTC now; the single clock source of the models (never the process time zone)."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
@overload
def as_utc(value: datetime | None) -> datetime | None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """BSON dates come back naive but are UTC instants; make them aware so comparisons are exact."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TimestampedDocument(Document):  # type: ignore[misc]  # mongoengine ships no types: its bases are Any
    """A document with Mongoose-style ``createdAt``/``updatedAt`` maintained on every save."""

    # Indexes are created once per process start by ``mcmp.models.db.ensure_schema``, with the
    # options the frontend's Mongoose uses; mongoengine's own (on first use of a collection,
    # ``background: false``) would collide with the frontend's indexes.
    meta: dict[str, Any] = {"abstract": True, "strict": False, "auto_create_index": False}

    created_at = DateTimeField(db_field="createdAt")
    updated_at = DateTimeField(db_field="updatedAt")

    def save(self, *args: Any, **kwargs: Any) -> TimestampedDocument:
        now = utcnow()
        if self.created_at is None:
            self.created_at = now
        self.updated_at = now
        super().save(*args, **kwargs)
        return self
