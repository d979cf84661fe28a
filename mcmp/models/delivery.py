"""The worker's own record of one (post, platform) publication — collection ``deliveries``.

Unique on (postId, platform): the database, not the code, guarantees one delivery per pair.
Indexed on (state, dueAt) so the dispatcher's pick-up costs O(due), never O(all posts); the
reaper and the queue statistics also ride its ``state`` prefix, because the states they read
(queued, in flight, pending, waiting for auth) only ever hold work in progress, never history.
Every index is paid for on each of a delivery's state changes, so there is no other
(``OBSOLETE_INDEXES`` drops the ones earlier versions created). Only mcmp.worker.publishing.delivery_states
writes ``state``.

Analytics schedule (mcmp/worker/analytics/snapshots.py): ``analyticsDueAt`` is when the next metrics snapshot
slot of a published delivery falls due (sparse index: only deliveries still being snapshotted
carry it), ``analyticsSlot`` the last slot recorded, ``analyticsStoppedReason`` why snapshots
stopped for good (post deleted on the platform). A delivery whose account must be reconnected
first has ``analyticsDueAt`` = ``ANALYTICS_PAUSED`` (never due, found through the same index)
and ``analyticsPaused`` = that account's "clientId|platform".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, TypedDict

from bson import ObjectId
from mongoengine import BooleanField, DateTimeField, IntField, StringField
from pymongo.collection import Collection

from mcmp.models.base import TimestampedDocument
from mcmp.models.enums import DeliveryState, ErrorClass

# Created by earlier versions; each cost every state change an index rewrite (measured on
# SecantusDB: a conditional update took 3.2 ms with 7 indexes, 2.1 ms with 3). Dropped by
# ``ensure_schema``.
OBSOLETE_INDEXES = ("state_1_leaseUntil_1", "clientId_1_state_1", "analyticsPaused_1")

# ``analyticsDueAt`` of paused snapshots: later than any due time, so the planner never picks
# them, and an equality on the one analytics index finds them all for resumption.
ANALYTICS_PAUSED = datetime(9999, 12, 31, tzinfo=UTC)


class DeliveryField:
    """Field names of a stored delivery (``deliveries``)."""

    ID: Final = "_id"
    POST_ID: Final = "postId"
    CLIENT_ID: Final = "clientId"
    PLATFORM: Final = "platform"
    STATE: Final = "state"  # written only by mcmp.worker.publishing.delivery_states
    DUE_AT: Final = "dueAt"
    SCHEDULED_FOR: Final = "scheduledFor"
    ATTEMPT: Final = "attempt"
    ATTEMPT_ID: Final = "attemptId"
    CLAIM_TOKEN: Final = "claimToken"
    LEASE_UNTIL: Final = "leaseUntil"
    OWNER: Final = "owner"
    NEEDS_RECONCILE: Final = "needsReconcile"
    PLATFORM_POST_ID: Final = "platformPostId"
    PLATFORM_URL: Final = "platformUrl"
    PUBLISHED_AT: Final = "publishedAt"
    CALL_STARTED_AT: Final = "callStartedAt"
    LAST_ERROR: Final = "lastError"
    ERROR_CLASS: Final = "errorClass"
    WAITING_SINCE: Final = "waitingSince"
    FIRST_TAKEN_AT: Final = "firstTakenAt"  # first taken for an attempt (lateness's clock starts)
    RETRIED_AT: Final = "retriedAt"  # an operator's retry: lateness counts from here
    RESENT_AT: Final = "resentAt"  # a stranded message sent again
    LOOKUPS: Final = "lookups"  # platform look-ups of an uncertain attempt
    # the analytics schedule (written only by mcmp.worker.analytics)
    ANALYTICS_DUE_AT: Final = "analyticsDueAt"
    ANALYTICS_SLOT: Final = "analyticsSlot"
    ANALYTICS_STOPPED_REASON: Final = "analyticsStoppedReason"
    ANALYTICS_PAUSED: Final = "analyticsPaused"
    UPDATED_AT: Final = "updatedAt"
    CREATED_AT: Final = "createdAt"


# The delivery fields only mcmp.worker.analytics writes (tests/unit/test_write_ownership.py).
ANALYTICS_FIELDS = frozenset(
    {
        DeliveryField.ANALYTICS_DUE_AT,
        DeliveryField.ANALYTICS_SLOT,
        DeliveryField.ANALYTICS_STOPPED_REASON,
        DeliveryField.ANALYTICS_PAUSED,
    }
)


class DeliveryDoc(TypedDict, total=False):
    """A delivery as MongoDB holds it."""

    _id: ObjectId
    postId: str
    clientId: str
    platform: str
    state: str
    dueAt: datetime
    scheduledFor: datetime | None
    attempt: int
    attemptId: str | None
    claimToken: str | None
    leaseUntil: datetime | None
    owner: str | None
    needsReconcile: bool
    platformPostId: str | None
    platformUrl: str | None
    publishedAt: datetime | None
    callStartedAt: datetime | None
    lastError: str | None
    errorClass: str | None
    waitingSince: datetime | None
    firstTakenAt: datetime | None
    retriedAt: datetime | None
    resentAt: datetime | None
    lookups: int
    analyticsDueAt: datetime | None
    analyticsSlot: str | None
    analyticsStoppedReason: str | None
    analyticsPaused: str | None
    createdAt: datetime
    updatedAt: datetime


def deliveries() -> Collection[DeliveryDoc]:
    """The ``deliveries`` collection, typed (read anywhere; states written only by delivery_states)."""
    collection: Collection[DeliveryDoc] = Delivery._get_collection()
    return collection


class Delivery(TimestampedDocument):
    meta = {
        "collection": "deliveries",
        "strict": False,
        "indexes": [
            {"fields": ["post_id", "platform"], "unique": True},
            ("state", "due_at"),
            {"fields": ["analytics_due_at"], "sparse": True},
        ],
    }

    post_id = StringField(db_field="postId", required=True)
    client_id = StringField(db_field="clientId", required=True)
    platform = StringField(required=True)
    state = StringField(choices=[s.value for s in DeliveryState], default=DeliveryState.PENDING.value)
    due_at = DateTimeField(db_field="dueAt", required=True)
    scheduled_for = DateTimeField(db_field="scheduledFor")
    attempt = IntField(default=0)  # platform calls made (rate-limit deferrals do not count)
    attempt_id = StringField(db_field="attemptId")
    claim_token = StringField(db_field="claimToken")
    lease_until = DateTimeField(db_field="leaseUntil")
    needs_reconcile = BooleanField(db_field="needsReconcile", default=False)
    platform_post_id = StringField(db_field="platformPostId")
    platform_url = StringField(db_field="platformUrl")
    published_at = DateTimeField(db_field="publishedAt")
    call_started_at = DateTimeField(db_field="callStartedAt")
    last_error = StringField(db_field="lastError")
    error_class = StringField(db_field="errorClass", choices=[c.value for c in ErrorClass])
    waiting_since = DateTimeField(db_field="waitingSince")
    analytics_due_at = DateTimeField(db_field="analyticsDueAt")
    analytics_slot = StringField(db_field="analyticsSlot")
    analytics_stopped_reason = StringField(db_field="analyticsStoppedReason")
    analytics_paused = StringField(db_field="analyticsPaused")
