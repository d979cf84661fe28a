"""One metrics snapshot of one post on one platform (seed §6, collection ``analyticsrecords``)."""

from __future__ import annotations

from mongoengine import DateTimeField, EmbeddedDocument, EmbeddedDocumentField, IntField, StringField

from models.base import TimestampedDocument


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
        "indexes": ["client_id", "post_id"],
    }

    client_id = StringField(db_field="clientId", required=True)
    post_id = StringField(db_field="postId", required=True)
    platform = StringField(required=True)
    metrics = EmbeddedDocumentField(Metrics, default=Metrics)
    fetched_at = DateTimeField(db_field="fetchedAt", required=True)
