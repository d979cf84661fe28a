"""Campaign analytics totals and the analytics backfill (start + progress).

Totals use each (post, platform)'s **latest** snapshot, read by one aggregation
(:func:`mcmp.worker.services.queries.campaign_totals_pipeline`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from mcmp.api import backfill
from mcmp.api.deps import BackfillIdDep, CampaignIdDep, TenantScopeDep, id_or_404, known_platform
from mcmp.api.problems import not_found, responses
from mcmp.api.schemas import BackfillIn, BackfillOut, CampaignAnalyticsOut, MetricTotals, utc
from mcmp.worker import services

router = APIRouter(prefix="/v1", tags=["analytics"], responses=responses(401, 404, 422))

METRICS = tuple(MetricTotals.model_fields)


@router.get(
    "/campaigns/{campaign_id}/analytics",
    response_model=CampaignAnalyticsOut,
    summary="Campaign totals from the latest snapshot of each post and platform",
)
def campaign_analytics(campaign_id: CampaignIdDep, scope: TenantScopeDep) -> CampaignAnalyticsOut:
    client_id = services.campaign_client(campaign_id, scope.query())
    if client_id is None:
        raise not_found("campaign")
    per_platform = services.campaign_totals(client_id, campaign_id, METRICS)
    totals = dict.fromkeys(METRICS, 0)
    by_platform: dict[str, dict[str, int]] = {}
    posts: set[str] = set()
    for row in per_platform:
        bucket = by_platform.setdefault(str(row["_id"]), dict.fromkeys(METRICS, 0))
        posts.update(row.get("postIds") or [])
        for m in METRICS:
            value = _int(row.get(m))
            totals[m] += value
            bucket[m] += value
    return CampaignAnalyticsOut(
        campaignId=campaign_id,
        clientId=client_id,
        posts=len(posts),
        totals=MetricTotals(**totals),
        byPlatform={p: MetricTotals(**v) for p, v in sorted(by_platform.items())},
    )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _job(job: Any) -> BackfillOut:
    return BackfillOut(
        id=str(job.get("id") or job.get("_id")),
        clientId=str(job.get("clientId")),
        platform=job.get("platform"),
        since=utc(job.get("since")),
        status=str(job.get("status")),
        done=_int(job.get("done")),
        total=job.get("total") if isinstance(job.get("total"), int) else None,
        detail={
            k: v for k, v in (job.get("detail") or {}).items() if isinstance(v, str | int | float | bool)
        },
    )


@router.post(
    "/analytics/backfills",
    response_model=BackfillOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(503),
    summary="Start an analytics backfill for a client (optionally one platform)",
)
def start_backfill(body: BackfillIn, scope: TenantScopeDep) -> BackfillOut:
    client_id = id_or_404(body.clientId, "client")
    scope.query(client_id)  # 404 outside the key's tenants
    platform = known_platform(body.platform, "body.platform")
    return _job(backfill.start(client_id, body.since, platform))


@router.get(
    "/analytics/backfills/{backfill_id}", response_model=BackfillOut, summary="Progress of a backfill"
)
def get_backfill(backfill_id: BackfillIdDep, scope: TenantScopeDep) -> BackfillOut:
    job = backfill.get(backfill_id, scope.query())
    if job is None:
        raise not_found("backfill")
    return _job(job)
