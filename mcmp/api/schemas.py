"""Response and request models of the admin API, separate from the documents.

Field names are the seed's camelCase (what the frontend already reads). An account's tokens
have no field here at all, so no route can leak them by accident; only whether one is stored.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from mcmp.models.base import as_utc, utcnow


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


ISO_WITH_OFFSET = "must be an ISO 8601 date-time string with an offset, e.g. 2025-01-31T09:00:00Z"


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})")


def _iso_text(value: Any) -> Any:
    """Only a date-time string reaches the parser: pydantic reads ``123`` (or ``"123"``) as a Unix time."""
    if not isinstance(value, str) or not _ISO_DATE_TIME.fullmatch(value.strip()):
        raise ValueError(ISO_WITH_OFFSET)
    return value


def _not_future(value: datetime) -> datetime:
    if value > utcnow():
        raise ValueError("must not be in the future")
    return value


# An instant the caller wrote: an ISO 8601 string with an offset ("Z" or "+02:00"), nothing else.
IsoInstant = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
PastInstant = Annotated[IsoInstant, AfterValidator(_not_future)]


# --- health ---------------------------------------------------------------------------------
class Liveness(Model):
    status: Literal["ok"] = "ok"


class Readiness(Model):
    status: Literal["ready"]
    mongodb: Literal["ok"]
    redis: Literal["ok"]
    workers: int = Field(description="Celery workers that answered a ping (informational)")


# --- posts ----------------------------------------------------------------------------------
class DeliveryOut(Model):
    platform: str
    state: str
    attempt: int
    lastError: str | None = None
    errorClass: str | None = None
    platformPostId: str | None = None
    dueAt: datetime | None = None
    publishedAt: datetime | None = None


class StatusChangeOut(Model):
    at: datetime | None = None
    fromStatus: str | None = None
    toStatus: str | None = None
    byUserId: str | None = None
    note: str | None = None


class PostOut(Model):
    id: str
    clientId: str
    campaignId: str | None = None
    title: str | None = None
    status: str | None = None
    platforms: list[str]
    scheduleTime: datetime | None = None
    lastError: str | None = None
    platformPostIds: dict[str, str]
    statusHistory: list[StatusChangeOut]
    deliveries: list[DeliveryOut]


class PostPage(Model):
    items: list[PostOut]
    nextCursor: str | None = Field(None, description="Pass as `cursor` for the next page; null at the end")


class PlatformIn(Model):
    platform: str | None = Field(None, description="Only this platform of the post (default: all)")


class RescheduleIn(Model):
    scheduleTime: IsoInstant = Field(description="New time, with an offset, in the future")


class OperationOut(Model):
    postId: str
    status: str
    platforms: list[str]
    note: str


# --- accounts -------------------------------------------------------------------------------
class AccountRiskOut(Model):
    reason: str = Field(
        description="no_refresh_token | refresh_failed | grant_revoked | not_connected | no_token"
    )
    message: str
    firstPostId: str
    firstPostAt: datetime
    posts: int = Field(description="Scheduled posts of this account that would fail")


class AccountOut(Model):
    id: str
    clientId: str
    platform: str
    accountName: str | None = None
    externalAccountId: str | None = None
    status: str | None = None
    expiresAt: datetime | None = None
    hasAccessToken: bool
    hasRefreshToken: bool
    authError: str | None = None
    atRisk: AccountRiskOut | None = None  # only with ?atRisk=true: the first post it would fail


class AccountPage(Model):
    items: list[AccountOut]
    nextCursor: str | None = None


class TokenIn(Model):
    accessToken: str = Field(min_length=1, max_length=8192)
    refreshToken: str | None = Field(None, min_length=1, max_length=8192)
    expiresAt: IsoInstant | None = Field(None, description="ISO 8601 with an offset; absent = never expires")


class TaskOut(Model):
    taskId: str
    task: str
    args: list[str]


# --- analytics ------------------------------------------------------------------------------
class MetricTotals(Model):
    impressions: int = 0
    reach: int = 0
    clicks: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    saves: int = 0


class CampaignAnalyticsOut(Model):
    campaignId: str
    clientId: str
    posts: int = Field(description="Posts of the campaign with at least one snapshot")
    totals: MetricTotals
    byPlatform: dict[str, MetricTotals]


class BackfillIn(Model):
    clientId: str = Field(min_length=1, max_length=64)
    since: PastInstant = Field(description="ISO 8601 with an offset, not in the future")
    platform: str | None = Field(None, min_length=1, max_length=64)


class BackfillOut(Model):
    id: str
    clientId: str
    platform: str | None = None
    since: datetime | None = None
    status: str
    done: int = 0
    total: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


# --- stats ----------------------------------------------------------------------------------
class QueueStats(Model):
    dueBacklog: int = Field(description="pending deliveries whose dueAt has passed")
    queued: int = Field(description="claimed, publish task on the broker")
    inFlight: int
    retryWaiting: int = Field(description="pending deliveries waiting for a retry/deferral time")
    waitingAuth: int
    oldestDueAgeSeconds: float | None = Field(description="age of the oldest due pending delivery")


def utc(value: Any) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


# --- readiness --------------------------------------------------------------------------------
class ReadinessProblemOut(Model):
    field: str
    code: str = Field(description="Stable problem code (docs/frontend-contract.md lists each)")
    message: str
    reason: str | None = Field(None, description="Why an account problem cannot fix itself (at-risk reason)")


class PlatformReadinessOut(Model):
    ok: bool
    problems: list[ReadinessProblemOut]


class ReadinessOut(Model):
    checkedAt: datetime | None = Field(
        None, description="When the stored verdict was written; null when computed for this answer"
    )
    ok: bool
    scheduleTime: datetime | None = Field(
        None, description="The instant checked against (a queued post's next slot)"
    )
    platforms: dict[str, PlatformReadinessOut]


class PostReadinessOut(ReadinessOut):
    postId: str
    status: str | None = None
    watched: bool = Field(
        description="Approved or scheduled for later: re-checked whenever it or its account changes"
    )
    source: Literal["stored", "computed"] = Field(
        description="stored: the post's mcmpReadiness judged its latest version; computed: checked now, not stored"
    )


class DraftIn(BaseModel):
    """A post as the frontend would store it; unknown fields are accepted (and ignored if unused)."""

    model_config = ConfigDict(extra="allow")
    clientId: str = Field(min_length=1, max_length=64)
    title: str | None = Field(None, max_length=100_000)
    body: str | None = Field(None, max_length=500_000)
    platforms: list[str] = Field(default_factory=list, max_length=20)
    assetUrls: list[str] = Field(default_factory=list, max_length=50)
    scheduleTime: AwareDatetime | None = Field(None, description="Default: checked as if due now")
    campaignId: str | None = Field(None, max_length=64)
