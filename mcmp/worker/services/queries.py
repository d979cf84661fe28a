"""The reads behind the admin API and ``mcmp status``: the API reads documents only through here.

Every read takes the caller's ``scope`` (a tenant filter on ``clientId``; ``{}`` for all
tenants) or a query that already carries it, and returns documents typed as MongoDB holds them
(:mod:`mcmp.models`), projected to what the API shows: tokens are never read into the API
process, only whether an account has one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bson import ObjectId

from mcmp.connectors.registry import available_platforms
from mcmp.models import DeliveryState
from mcmp.models.base import as_utc, utcnow
from mcmp.models.campaign import CampaignField, campaigns
from mcmp.models.delivery import DeliveryDoc, DeliveryField, deliveries
from mcmp.models.integration_account import AccountDoc, AccountField, integration_accounts
from mcmp.models.post import PostDoc, PostField, ReadinessDoc, posts
from mcmp.worker.accounts import store as account_store
from mcmp.worker.ops_status import Gauges, Report
from mcmp.worker.services.errors import NotFound, canonical

if TYPE_CHECKING:  # imported where used: the API process loads analytics only for a backfill
    from mcmp.worker.analytics.backfill import BackfillJobDoc
    from mcmp.worker.readiness.report import AccountAtRisk, PostReadiness

S = DeliveryState

# What the API shows of a post and of an account (never a token).
POST_VIEW = {
    f: 1
    for f in (
        PostField.CLIENT_ID,
        PostField.CAMPAIGN_ID,
        PostField.TITLE,
        PostField.STATUS,
        PostField.PLATFORMS,
        PostField.SCHEDULE_TIME,
        PostField.LAST_ERROR,
        PostField.PLATFORM_POST_IDS,
        PostField.STATUS_HISTORY,
    )
}
ACCOUNT_VIEW = {
    f: 1
    for f in (
        AccountField.CLIENT_ID,
        AccountField.PLATFORM,
        AccountField.ACCOUNT_NAME,
        AccountField.EXTERNAL_ACCOUNT_ID,
        AccountField.STATUS,
        AccountField.EXPIRES_AT,
        AccountField.AUTH_ERROR,
    )
}


def known_platforms() -> list[str]:
    """Platforms with an installed connector (built-in or third-party), for checking free strings."""
    return available_platforms()


def _before(query: Mapping[str, Any], before: ObjectId | None) -> dict[str, Any]:
    return {**query, "_id": {"$lt": before}} if before is not None else dict(query)


def post_page(query: Mapping[str, Any], before: ObjectId | None, limit: int) -> list[PostDoc]:
    """Posts matching ``query`` (tenant filter included), newest first, ids below ``before``."""
    return list(posts().find(_before(query, before), POST_VIEW).sort(PostField.ID, -1).limit(limit))


def post_view(post_id: str, scope: Mapping[str, Any]) -> PostDoc | None:
    """One post as the API shows it, None when absent or outside ``scope``."""
    return posts().find_one({PostField.ID: ObjectId(canonical(post_id, "post")), **scope}, POST_VIEW)


def account_page(query: Mapping[str, Any], before: ObjectId | None, limit: int) -> list[AccountDoc]:
    """Accounts matching ``query`` (tenant filter included), newest first, without tokens."""
    found = integration_accounts().find(_before(query, before), ACCOUNT_VIEW)
    return list(found.sort(AccountField.ID, -1).limit(limit))


def account_view(account_id: str, scope: Mapping[str, Any]) -> AccountDoc | None:
    """One account without its tokens, None when absent or outside ``scope``."""
    oid = ObjectId(canonical(account_id, "account"))
    return integration_accounts().find_one({AccountField.ID: oid, **scope}, ACCOUNT_VIEW)


def accounts_view(account_ids: Sequence[str], query: Mapping[str, Any]) -> list[AccountDoc]:
    """These accounts inside ``query``, newest first, without tokens."""
    ids = [ObjectId(i) for i in account_ids if ObjectId.is_valid(i)]
    found = integration_accounts().find({AccountField.ID: {"$in": ids}, **query}, ACCOUNT_VIEW)
    return list(found.sort(AccountField.ID, -1))


def token_flags(ids: Sequence[ObjectId]) -> dict[ObjectId, tuple[bool, bool]]:
    """Which accounts have an access and a refresh token, without reading the tokens."""
    return account_store.token_flags(ids)


def campaign_client(campaign_id: str, scope: Mapping[str, Any]) -> str | None:
    """The client id of a campaign inside ``scope``, None when absent or outside it."""
    found = campaigns().find_one(
        {CampaignField.ID: ObjectId(canonical(campaign_id, "campaign")), **scope},
        {CampaignField.CLIENT_ID: 1},
    )
    return None if found is None else str(found.get(CampaignField.CLIENT_ID))


def campaign_totals_pipeline(
    client_id: str, campaign_id: str, metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Per platform: sums of the latest snapshot of each (post, platform) of the campaign.

    Records are snapshots over time (+1 h, +6 h, …), so summing all of them would count a post
    several times. ONE aggregation over ``posts`` (the campaign's posts carry ``campaignId``;
    records do not): ``$lookup`` of each post's records by its id string, newest first,
    ``$first`` per (post, platform), then per-platform sums — works on SecantusDB and ``mongod``
    alike and costs O(records of the campaign's posts), served by the ``postId`` index of
    ``analyticsrecords``.
    """
    first = {m: {"$first": {"$ifNull": [f"$r.metrics.{m}", 0]}} for m in metrics}
    return [
        {"$match": {PostField.CLIENT_ID: client_id, PostField.CAMPAIGN_ID: campaign_id}},
        {"$project": {"pid": {"$toString": "$_id"}}},
        {"$lookup": {"from": "analyticsrecords", "localField": "pid", "foreignField": "postId", "as": "r"}},
        {"$unwind": "$r"},
        {"$match": {"r.clientId": client_id}},
        {"$sort": {"r.fetchedAt": -1}},
        {"$group": {"_id": {"post": "$pid", "platform": "$r.platform"}, **first}},
        {
            "$group": {
                "_id": "$_id.platform",
                "postIds": {"$addToSet": "$_id.post"},
                **{m: {"$sum": f"${m}"} for m in metrics},
            }
        },
    ]


def campaign_totals(client_id: str, campaign_id: str, metrics: Sequence[str]) -> list[Mapping[str, Any]]:
    """Rows of :func:`campaign_totals_pipeline`: ``_id`` (platform), ``postIds`` and one sum per metric."""
    return list(posts().aggregate(campaign_totals_pipeline(client_id, campaign_id, metrics)))


def deliveries_of(post_ids: Sequence[str], scope: Mapping[str, Any]) -> dict[str, list[DeliveryDoc]]:
    """The deliveries of these posts inside ``scope``, by post id (every id present, maybe empty)."""
    found: dict[str, list[DeliveryDoc]] = {post_id: [] for post_id in post_ids}
    for d in deliveries().find({DeliveryField.POST_ID: {"$in": list(post_ids)}, **scope}):
        found.setdefault(d[DeliveryField.POST_ID], []).append(d)
    return found


@dataclass(frozen=True)
class QueueCounts:
    """Where the active deliveries are; every count names an active state (the (state, dueAt) index)."""

    due_backlog: int
    queued: int
    in_flight: int
    retry_waiting: int
    waiting_auth: int
    oldest_due_age_seconds: float | None


def queue_counts(scope: Mapping[str, Any], now: datetime | None = None) -> QueueCounts:
    """Counts per queue position, for one tenant or all (``scope`` = ``{}``), never the history."""
    now = now or utcnow()
    coll = deliveries()

    def count(**query: Any) -> int:
        return int(coll.count_documents({**scope, **query}))

    oldest = list(
        coll.find({**scope, "state": S.PENDING.value, "dueAt": {"$lte": now}}, {"dueAt": 1})
        .sort("dueAt", 1)
        .limit(1)
    )
    oldest_due = as_utc(oldest[0]["dueAt"]) if oldest else None
    return QueueCounts(
        due_backlog=count(state=S.PENDING.value, dueAt={"$lte": now}),
        queued=count(state=S.QUEUED.value),
        in_flight=count(state=S.IN_FLIGHT.value),
        retry_waiting=count(state=S.PENDING.value, dueAt={"$gt": now}, attempt={"$gt": 0})
        + count(state=S.PENDING.value, dueAt={"$gt": now}, attempt=0, errorClass={"$ne": None}),
        waiting_auth=count(state=S.WAITING_AUTH.value),
        oldest_due_age_seconds=None if oldest_due is None else max(0.0, (now - oldest_due).total_seconds()),
    )


def backfill_job(job_id: str, scope: Mapping[str, Any]) -> BackfillJobDoc | None:
    """The backfill job if it exists inside ``scope`` (a tenant filter on ``clientId``)."""
    from mcmp.worker.analytics import backfill

    if not ObjectId.is_valid(job_id):
        return None
    return backfill.jobs().find_one({"_id": ObjectId(job_id), **scope})


def fleet_gauges(now: datetime | None = None) -> Gauges:
    """Fleet-wide figures for ``/metrics``: uncertain deliveries, accounts, throttles, live processes."""
    from mcmp.worker import ops_status

    return ops_status.gauges(now)


def operator_report(now: datetime | None = None) -> Report:
    """Everything ``mcmp status`` prints, with what needs attention."""
    from mcmp.worker import ops_status

    return ops_status.report(now)


def post_readiness(post_id: str, scope: Mapping[str, Any]) -> PostReadiness:
    """The post's readiness verdict (stored, or computed now when the stored one is older)."""
    from mcmp.worker.readiness import report

    found = report.post_readiness(canonical(post_id, "post"), scope)
    if found is None:
        raise NotFound(f"post {post_id} not found")
    return found


def validate_draft(draft: Mapping[str, Any]) -> ReadinessDoc:
    """A draft's payload checked as if scheduled as it stands (no write, no platform call)."""
    from mcmp.worker.readiness import report

    return report.validate_draft(draft)


def accounts_at_risk(scope: Mapping[str, Any], limit: int = 200) -> list[AccountAtRisk]:
    """Accounts whose token will fail one of their scheduled posts: reason, first post and when."""
    from mcmp.worker.readiness import report

    return report.at_risk(scope, limit)


def posts_at_risk() -> dict[tuple[str, str], int]:
    """Scheduled posts that would fail because of their account, by (platform, reason), all tenants."""
    from mcmp.worker.readiness import report

    return dict(report.posts_at_risk())
