"""Posts with their per-platform deliveries, and the operator actions on them.

Actions call :mod:`mcmp.worker.services` (the only path to delivery transitions). Retry and
reschedule first run the worker's own checks on the post for every platform they would re-open
(422 ``post-invalid`` naming the post's field and the reason; nothing re-opened). Retrying a post
with nothing failed or cancelled answers **409** ``urn:mcmp:problem:nothing-to-retry`` rather
than 200: the caller asked for a re-publication that will not happen, and says which state
each platform is in — a published delivery is never published again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from mcmp.api.deps import ApiKeyDep, CampaignIdQuery, ClientIdQuery, PostIdDep, TenantScopeDep
from mcmp.api.pagination import CursorParam, LimitParam, page
from mcmp.api.problems import not_found, responses
from mcmp.api.schemas import (
    DeliveryOut,
    OperationOut,
    PlatformIn,
    PostOut,
    PostPage,
    RescheduleIn,
    StatusChangeOut,
    utc,
)
from mcmp.models.delivery import DeliveryDoc
from mcmp.models.enums import PostStatus
from mcmp.models.post import PostDoc
from mcmp.models.schedule import schedule_instant
from mcmp.worker import services

router = APIRouter(prefix="/v1/posts", tags=["posts"], responses=responses(401, 404, 422))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _delivery(d: DeliveryDoc) -> DeliveryOut:
    return DeliveryOut(
        platform=str(d.get("platform")),
        state=str(d.get("state")),
        attempt=int(d.get("attempt") or 0),
        lastError=_str(d.get("lastError")),
        errorClass=_str(d.get("errorClass")),
        platformPostId=_str(d.get("platformPostId")),
        dueAt=utc(d.get("dueAt")),
        publishedAt=utc(d.get("publishedAt")),
    )


def _post(doc: PostDoc, deliveries: list[DeliveryDoc]) -> PostOut:
    ids = doc.get("platformPostIds") or {}
    history = [h for h in doc.get("statusHistory") or [] if isinstance(h, dict)]
    return PostOut(
        id=str(doc["_id"]),
        clientId=str(doc.get("clientId")),
        campaignId=_str(doc.get("campaignId")),
        title=_str(doc.get("title")),
        status=_str(doc.get("status")),
        platforms=[str(p) for p in doc.get("platforms") or []],
        scheduleTime=schedule_instant(doc),
        lastError=_str(doc.get("lastError")),
        platformPostIds={k: str(v) for k, v in ids.items() if k != "_id" and v is not None}
        if isinstance(ids, dict)
        else {},
        statusHistory=[
            StatusChangeOut(
                at=utc(h.get("at")),
                fromStatus=_str(h.get("fromStatus")),
                toStatus=_str(h.get("toStatus")),
                byUserId=_str(h.get("byUserId")),
                note=_str(h.get("note")),
            )
            for h in history
        ],
        deliveries=[_delivery(d) for d in sorted(deliveries, key=lambda d: str(d.get("platform")))],
    )


@router.get("", response_model=PostPage, summary="List posts (newest first) with their deliveries")
def list_posts(
    scope: TenantScopeDep,
    client_id: ClientIdQuery,
    campaign_id: CampaignIdQuery,
    status: Annotated[PostStatus | None, Query()] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 50,
) -> PostPage:
    query = scope.query(client_id)
    if status is not None:
        query["status"] = status.value
    if campaign_id is not None:
        query["campaignId"] = campaign_id
    docs, next_cursor = page(lambda before, n: services.post_page(query, before, n), cursor, limit)
    deliveries = services.deliveries_of([str(d["_id"]) for d in docs], scope.query())
    return PostPage(items=[_post(d, deliveries[str(d["_id"])]) for d in docs], nextCursor=next_cursor)


@router.get("/{post_id}", response_model=PostOut, summary="One post with its per-platform delivery state")
def get_post(post_id: PostIdDep, scope: TenantScopeDep) -> PostOut:
    doc = services.post_view(post_id, scope.query())
    if doc is None:
        raise not_found("post")
    return _post(doc, services.deliveries_of([post_id], scope.query())[post_id])


def _out(result: services.OperationResult) -> OperationOut:
    return OperationOut(
        postId=result.post_id, status=result.status, platforms=result.platforms, note=result.note
    )


@router.post(
    "/{post_id}/retry",
    response_model=OperationOut,
    responses=responses(409),
    summary="Retry the failed/cancelled platforms of a post (or one platform) now",
)
def retry_post(
    post_id: PostIdDep,
    caller: ApiKeyDep,
    scope: TenantScopeDep,
    body: Annotated[PlatformIn | None, Body()] = None,
) -> OperationOut:
    platform = body.platform if body else None
    return _out(services.retry(post_id, scope.query(), platform=platform, by_user_id=caller.actor))


@router.post(
    "/{post_id}/cancel",
    response_model=OperationOut,
    responses=responses(409),
    summary="Cancel a scheduled post (back to approved) or one of its platforms",
)
def cancel_post(
    post_id: PostIdDep,
    caller: ApiKeyDep,
    scope: TenantScopeDep,
    body: Annotated[PlatformIn | None, Body()] = None,
) -> OperationOut:
    platform = body.platform if body else None
    return _out(services.cancel(post_id, scope.query(), platform=platform, by_user_id=caller.actor))


@router.post(
    "/{post_id}/reschedule",
    response_model=OperationOut,
    responses=responses(409),
    summary="Move a scheduled, approved or failed post to a future time",
)
def reschedule_post(
    post_id: PostIdDep, body: RescheduleIn, caller: ApiKeyDep, scope: TenantScopeDep
) -> OperationOut:
    return _out(services.reschedule(post_id, scope.query(), body.scheduleTime, by_user_id=caller.actor))
