"""Groups posts of one client (frontend contract, collection ``campaigns``: docs/frontend-contract.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Final, TypedDict

from bson import ObjectId
from mongoengine import DateTimeField, ListField, StringField
from pymongo.collection import Collection

from mcmp.models.base import TimestampedDocument


class CampaignField:
    """Field names of a stored campaign (``campaigns``)."""

    ID: Final = "_id"
    CLIENT_ID: Final = "clientId"
    NAME: Final = "name"
    START_DATE: Final = "startDate"
    END_DATE: Final = "endDate"
    UPDATED_AT: Final = "updatedAt"


class CampaignDoc(TypedDict, total=False):
    """A campaign as MongoDB holds it."""

    _id: ObjectId
    clientId: str
    name: str
    description: str | None
    startDate: datetime | None
    endDate: datetime | None
    tags: list[str]
    createdAt: datetime
    updatedAt: datetime


def campaigns() -> Collection[CampaignDoc]:
    """The ``campaigns`` collection, typed."""
    collection: Collection[CampaignDoc] = Campaign._get_collection()
    return collection


class Campaign(TimestampedDocument):
    meta = {
        "collection": "campaigns",
        "strict": False,
        "indexes": ["client_id", "updated_at"],  # updated_at: readiness's changed-campaigns scan
    }

    client_id = StringField(db_field="clientId", required=True)
    name = StringField(required=True)
    description = StringField()
    start_date = DateTimeField(db_field="startDate")
    end_date = DateTimeField(db_field="endDate")
    tags = ListField(StringField(), default=list)
