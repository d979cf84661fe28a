"""One reserved publishing minute of a client on a platform — collection ``postingslots``.

The posting-window queue (mcmp.worker.scheduling.posting_windows) reserves a slot *before* it schedules a post.
The unique index on (clientId, platform, minute) is what makes two workers queueing posts of
one client at the same moment pick different minutes: the loser's insert fails and it moves on.
``minute`` is the UTC instant of the slot truncated to the minute.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from bson import ObjectId
from mongoengine import DateTimeField, StringField

from mcmp.models.base import TimestampedDocument


class PostingSlotDoc(TypedDict, total=False):
    """A reserved slot as ``postingslots`` holds it (the worker's own collection)."""

    _id: ObjectId
    clientId: str
    platform: str
    minute: datetime  # UTC, truncated to the minute
    postId: str
    createdAt: datetime
    updatedAt: datetime


class PostingSlot(TimestampedDocument):
    meta = {
        "collection": "postingslots",
        "strict": False,
        "indexes": [
            {"fields": ["client_id", "platform", "minute"], "unique": True},
            "post_id",
        ],
    }

    client_id = StringField(db_field="clientId", required=True)
    platform = StringField(required=True)
    minute = DateTimeField(required=True)
    post_id = StringField(db_field="postId", required=True)
