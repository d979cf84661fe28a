"""One piece of content for one or more platforms (frontend contract, collection ``posts``: docs/frontend-contract.md).

The worker never ``save()``s a Post loaded from the frontend: it writes with conditional atomic
updates (mcmp.worker.publishing.post_status) so a concurrent frontend edit is never overwritten.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, NotRequired, TypedDict

from bson import ObjectId
from mongoengine import (
    DateTimeField,
    DictField,
    DynamicField,
    EmbeddedDocument,
    EmbeddedDocumentListField,
    ListField,
    StringField,
)
from pymongo.collection import Collection

from mcmp.models.base import TimestampedDocument
from mcmp.models.enums import PostStatus


class PostField:
    """Field names of a stored post (``posts``), as Mongoose and the worker spell them."""

    ID: Final = "_id"
    CLIENT_ID: Final = "clientId"
    CAMPAIGN_ID: Final = "campaignId"
    TITLE: Final = "title"
    BODY: Final = "body"
    PLATFORMS: Final = "platforms"
    ASSET_URLS: Final = "assetUrls"
    STATUS: Final = "status"
    SCHEDULE_TIME: Final = "scheduleTime"
    PLATFORM_POST_IDS: Final = "platformPostIds"
    PUBLISHED_AT: Final = "publishedAt"
    STATUS_HISTORY: Final = "statusHistory"
    LAST_ERROR: Final = "lastError"
    UPDATED_AT: Final = "updatedAt"
    CREATED_AT: Final = "createdAt"
    # the worker's own (Mongoose ignores them)
    EXPANDED_AT: Final = "mcmpExpandedAt"  # set once the post's deliveries exist
    SCHEDULE_AT: Final = "mcmpScheduleAt"  # a string scheduleTime's instant (mcmp.models.schedule)
    SCHEDULE_FROM: Final = "mcmpScheduleFrom"
    CAMPAIGN_OVERRIDE: Final = "campaignOverride"
    READINESS: Final = "mcmpReadiness"  # the readiness verdict (mcmp.worker.readiness)


class StatusChangeDoc(TypedDict, total=False):
    """One ``statusHistory`` entry as stored."""

    _id: ObjectId
    at: datetime
    fromStatus: str | None
    toStatus: str
    byUserId: str | None
    note: str


class ProblemDoc(TypedDict, total=False):
    """One reason a post would fail on a platform: the post's field, a stable code, a message."""

    field: str
    code: str
    message: str
    reason: str


class PlatformReadinessDoc(TypedDict):
    ok: bool
    problems: list[ProblemDoc]


class ReadinessDoc(TypedDict):
    """``mcmpReadiness``: the verdict on a future post (docs/frontend-contract.md#readiness-mcmpreadiness-what-a-post-will-meet-at-its-time).

    ``postUpdatedAt`` is the post version judged: a newer post is checked again.
    """

    checkedAt: datetime | None
    ok: bool
    scheduleTime: datetime | None
    postUpdatedAt: NotRequired[datetime | None]
    platforms: dict[str, PlatformReadinessDoc]


class PostDoc(TypedDict, total=False):
    """A post as MongoDB holds it (the frontend writes more fields; these are the ones read here).

    Values are typed as the frontend is meant to store them; a stored value may still be of
    another type (``scheduleTime`` may be a string), which readers check where it matters.
    """

    _id: ObjectId
    clientId: str
    campaignId: str | None
    title: str
    body: str
    platforms: list[str]
    assetUrls: list[str]
    status: str
    scheduleTime: Any  # a BSON date, or an ISO 8601 string (mcmp.models.schedule)
    platformPostIds: dict[str, str]  # platform → the platform's id of the post
    publishedAt: dict[str, datetime]  # platform → when it went out
    statusHistory: list[StatusChangeDoc]
    lastError: str | None
    createdAt: datetime
    updatedAt: datetime
    mcmpExpandedAt: datetime | None
    mcmpScheduleAt: datetime | None
    mcmpScheduleFrom: str | None
    campaignOverride: bool
    mcmpReadiness: ReadinessDoc


def posts() -> Collection[PostDoc]:
    """The ``posts`` collection, typed: every read of a raw post goes through here."""
    collection: Collection[PostDoc] = Post._get_collection()
    return collection


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
