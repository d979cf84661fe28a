"""An admin-API key (collection ``apikeys``): stored as a SHA-256 hash, scoped to tenants.

Keys are 32 random bytes, so an unsalted fast hash is enough (nothing to brute-force) and lets a
request find its key with one indexed lookup. The plaintext is printed once by
``mcmp apikey create`` and never stored. ``clientIds`` lists the tenants the key may see;
``allTenants`` grants every tenant (operators). A revoked key keeps its document for audit.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from bson import ObjectId
from mongoengine import BooleanField, DateTimeField, ListField, StringField
from pymongo.collection import Collection

from mcmp.models.base import TimestampedDocument


class ApiKeyDoc(TypedDict, total=False):
    """An admin-API key as MongoDB holds it (the key itself never: only its hash)."""

    _id: ObjectId
    name: str
    prefix: str
    keyHash: str
    clientIds: list[str]
    allTenants: bool
    userId: str | None
    revokedAt: datetime | None
    createdAt: datetime
    updatedAt: datetime


def api_keys() -> Collection[ApiKeyDoc]:
    """The ``apikeys`` collection, typed."""
    collection: Collection[ApiKeyDoc] = ApiKey._get_collection()
    return collection


class ApiKey(TimestampedDocument):
    meta = {
        "collection": "apikeys",
        "strict": False,
        "indexes": [{"fields": ["key_hash"], "unique": True}, "name"],
    }

    name = StringField(required=True)
    prefix = StringField(required=True)  # first characters of the key: identifies it in listings/logs
    key_hash = StringField(db_field="keyHash", required=True)
    client_ids = ListField(StringField(), db_field="clientIds", default=list)
    all_tenants = BooleanField(db_field="allTenants", default=False)
    user_id = StringField(db_field="userId")  # recorded as byUserId in statusHistory
    revoked_at = DateTimeField(db_field="revokedAt")

    def __repr__(self) -> str:
        return f"<ApiKey {self.name} {self.prefix}… revoked={self.revoked_at is not None}>"
