"""One piece of content for one or more platforms (frontend contract, collection ``posts``: docs/frontend-contract.md).

The worker never ``save()``s a Post loaded from the frontend: it writes with conditional atomic
updates (mcmp.worker.publishing.post_status) so a concurrent frontend edit is never overwritten.
"""

from __future__ import annotations

from mongoengine import (
    DateTimeField,
    DictField,
    DynamicField,
    EmbeddedDocument,
    EmbeddedDocumentListField,
    ListField,
    StringField,
)

from mcmp.models.base import TimestampedDocument
from mcmp.models.enums import PostStatus


class StatusChange(EmbeddedDocument):  # type: ignore[misc]  # mongoengine ships no types: its bases are Any
    meta = {"strict": False}
    at = DateTimeField()
    from_status = StringField(db_field="fromStatus")
    to_status = StringField(db_field="toStatus")
    by_user_id = StringField(db_field="byUserId")
    note = StringField()


# Created by earlier versions and dropped by ``ensure_schema``: every post status change paid
# for it (SecantusDB: a status update took 1.76 ms with it, 1.51 ms without), and what read it
# (the null-scheduleTime check) rides the marker index below.
OBSOLETE_INDEXES = ("status_1_scheduleTime_1",)


class Post(TimestampedDocument):
    meta = {
        "collection": "posts",
        "strict": False,
        "indexes": [
            "client_id",
            "campaign_id",
            # expansion (marker missing, due), the settle sweep (marker old) and the check for
            # scheduled posts without a time (marker missing, time null): O(due), not O(backlog)
            ("status", "expanded_at", "schedule_time"),
            # due string scheduleTimes (mcmp.models.schedule): only unexpanded posts with a
            # string time carry the field, so date posts never pay for this index
            {"fields": ["schedule_at"], "sparse": True},
            # readiness (mcmp/worker/readiness/scan.py): what changed since its cursor, O(changed)
            "updated_at",
        ],
    }

    client_id = StringField(db_field="clientId", required=True)
    campaign_id = StringField(db_field="campaignId")
    title = StringField(required=True)
    body = StringField(required=True)
    platforms = ListField(StringField(), default=list)
    asset_urls = ListField(StringField(), db_field="assetUrls", default=list)
    status = StringField(choices=[s.value for s in PostStatus], default=PostStatus.DRAFT.value)
    # DynamicField: a frontend bug may store a string here; the dispatcher must see it to fail the post.
    schedule_time = DynamicField(db_field="scheduleTime")
    platform_post_ids = DictField(db_field="platformPostIds", default=dict)
    published_at = DictField(db_field="publishedAt", default=dict)
    created_by_id = StringField(db_field="createdById")
    approved_by_id = StringField(db_field="approvedById")
    status_history = EmbeddedDocumentListField(StatusChange, db_field="statusHistory", default=list)
    last_error = StringField(db_field="lastError")
    # Worker bookkeeping (not in the seed; Mongoose ignores it): when deliveries were created.
    expanded_at = DateTimeField(db_field="mcmpExpandedAt")
    # A string scheduleTime's instant and the string it was parsed from (mcmp.models.schedule).
    schedule_at = DateTimeField(db_field="mcmpScheduleAt")
    schedule_from = StringField(db_field="mcmpScheduleFrom")
