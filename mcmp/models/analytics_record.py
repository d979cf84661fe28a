"""One metrics snapshot of one post on one platform (frontend contract, collection ``analyticsrecords``: docs/frontend-contract.md).

The worker adds ``slot`` (the schedule slot the snapshot belongs to, e.g. ``"6h"``): the partial
unique index on (postId, platform, slot) is what makes a retried or duplicated snapshot task
unable to write a second record for the same slot. Records without ``slot`` (written by the
frontend or older code) are outside that index. Metrics the platform does not report are left
absent (Mongoose reads them as the seed's default 0); nothing is invented.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from bson import ObjectId
from mongoengine import DateTimeField, EmbeddedDocument, EmbeddedDocumentField, IntField, StringField
from pymongo.collection import Collection

from mcmp.models.base import TimestampedDocument


class Metrics(EmbeddedDocument):
    meta = {"strict": False}
    impressions = IntField(default=0)
    reach = IntField(default=0)
    clicks = IntField(default=0)
    likes = IntField(default=0)
    comments = IntField(default=0)
    shares = IntField(default=0)
    saves = IntField(default=0)


class AnalyticsRecord(TimestampedDocument):
    meta = {
        "collection": "analyticsrecords",
        "strict": False,
        "indexes": [
            "client_id",
            "post_id",
            {
                "fields": ["post_id", "platform", "slot"],
                "unique": True,
                "name": "postId_platform_slot_unique",
                "partialFilterExpression": {"slot": {"$exists": True}},
            },
            ("client_id", "slot"),
        ],
    }

    client_id = StringField(db_field="clientId", required=True)
    post_id = StringField(db_field="postId", required=True)
    platform = StringField(required=True)
    metrics = EmbeddedDocumentField(Metrics, default=Metrics)
    fetched_at = DateTimeField(db_field="fetchedAt", required=True)
    slot = StringField()  # schedule slot label ("1h", "6h", …); absent on records not written by us


# A metrics snapshot as ``analyticsrecords`` holds it; ``__v`` is Mongoose's version key (the
# functional form: in a class body the name would be mangled). ``metrics`` carries only the
# metrics the platform reported, under the seed's seven names.
AnalyticsRecordDoc = TypedDict(
    "AnalyticsRecordDoc",
    {
        "_id": ObjectId,
        "clientId": str,
        "postId": str,
        "platform": str,
        "slot": str,
        "metrics": dict[str, int],
        "fetchedAt": datetime,
        "createdAt": datetime,
        "updatedAt": datetime,
        "__v": int,
    },
    total=False,
)


def analytics_records() -> Collection[AnalyticsRecordDoc]:
    """The ``analyticsrecords`` collection, typed (written only by mcmp.worker.analytics)."""
    collection: Collection[AnalyticsRecordDoc] = AnalyticsRecord._get_collection()
    return collection
