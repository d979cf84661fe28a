"""Operator actions on posts: retry, cancel, reschedule, each refused before it can go wrong.

Used by the admin API and by the ``mcmp.retry_post`` task an operator applies from Flower.
Delivery states move only through the transition functions of
:mod:`mcmp.worker.publishing.delivery_states`; post status changes go through
:func:`mcmp.worker.publishing.post_status.move` (conditional on the status just read, one
``statusHistory`` entry each).

Every function takes ``scope``: the tenant filter of the caller (e.g.
``{"clientId": {"$in": [...]}}``, ``{}`` for all tenants). A post outside it is reported as
:class:`NotFound`, exactly like one that does not exist.

Order matters where a worker could act in between: a post is moved back to ``scheduled``
*before* its deliveries are reopened (a worker's preflight cancels an attempt whose post is not
scheduled), and re-checked after, because a concurrent ``post_status.sync`` that read the
deliveries before the reopen may have settled the post as ``failed`` again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId

from mcmp.config import get_settings
from mcmp.connectors.errors import PermanentError
from mcmp.models import DeliveryState, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.models.delivery import DeliveryDoc, DeliveryField, deliveries
from mcmp.models.post import PostDoc, PostField, posts
from mcmp.worker import liveness
from mcmp.worker.accounts import store as account_store
from mcmp.worker.publishing import delivery_states, post_status
from mcmp.worker.publishing.post_status import EXPANDED_MARKER
from mcmp.worker.publishing.validation import PostInvalid, validate_for_platform
from mcmp.worker.scheduling import posting_windows
from mcmp.worker.services.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    NothingToRetry,
    PostNotPublishable,
    Unavailable,
    canonical,
)

log = logging.getLogger(__name__)

S = DeliveryState
P = PostStatus
RETRY_NOTE = "retry requested via admin API"
FLOWER_RETRY_NOTE = "retried from Flower"
CANCEL_NOTE = "cancelled via admin API"
RESCHEDULE_NOTE = "rescheduled via admin API"
RESCHEDULABLE = frozenset({P.SCHEDULED.value, P.APPROVED.value, P.FAILED.value})
UNAPPROVED = frozenset({P.DRAFT.value, P.PENDING_APPROVAL.value})
_CONFLICT_RETRIES = 3


def deliveries_of_post(post_id: str) -> list[DeliveryDoc]:
    """A post's deliveries (every platform it has one for)."""
    return list(deliveries().find({DeliveryField.POST_ID: post_id}))


@dataclass(frozen=True)
class OperationResult:
    post_id: str
    status: str
    platforms: list[str] = field(default_factory=list)  # the platforms the action changed
    note: str = ""


_ACTION_FIELDS = {
    PostField.STATUS: 1,
    PostField.PLATFORMS: 1,
    PostField.CLIENT_ID: 1,
    PostField.SCHEDULE_TIME: 1,
    EXPANDED_MARKER: 1,
}


def _post(post_id: str, scope: Mapping[str, Any]) -> PostDoc:
    post = posts().find_one({PostField.ID: ObjectId(post_id), **scope}, _ACTION_FIELDS)
    if post is None:
        raise NotFound(f"post {post_id} not found")
    return post


def _platforms(post: PostDoc) -> list[str]:
    return [p for p in dict.fromkeys(post.get(PostField.PLATFORMS) or []) if isinstance(p, str)]


def _check_platform(post: PostDoc, platform: str | None) -> None:
    if platform is not None and platform not in _platforms(post):
        raise InvalidRequest(
            f"platform {platform!r} is not one of the post's platforms ({', '.join(_platforms(post)) or 'none'})",
            field="platform",
        )


def _by_platform(post_id: str) -> dict[str, DeliveryDoc]:
    return {d[DeliveryField.PLATFORM]: d for d in deliveries_of_post(post_id)}


def _state(states: Mapping[str, DeliveryDoc], platform: str) -> str | None:
    found = states.get(platform)
    return None if found is None else found.get(DeliveryField.STATE)


def _describe(states: Mapping[str, DeliveryDoc], platforms: Sequence[str]) -> str:
    return ", ".join(f"{p}: {_state(states, p) or 'no delivery yet'}" for p in platforms)


def _keep_scheduled(post_id: str, scope: Mapping[str, Any], note: str, by_user_id: str | None) -> None:
    """Undo a ``failed`` written by a sync that read the deliveries before our reopen."""
    post = posts().find_one({PostField.ID: ObjectId(post_id), **scope}, {PostField.STATUS: 1})
    if post is None or post.get(PostField.STATUS) != P.FAILED.value:
        return
    active = {s.value for s in (S.PENDING, S.QUEUED, S.IN_FLIGHT, S.WAITING_AUTH)}
    if any(d[DeliveryField.STATE] in active for d in deliveries_of_post(post_id)):
        post_status.move(post, scope, P.SCHEDULED.value, note, by_user_id, expanded=True)


def _problems(exc: PermanentError) -> list[tuple[str, str]]:
    if isinstance(exc, PostInvalid):
        return [(field, reason) for field, _, reason in (p.partition(": ") for p in exc.problems)]
    field = getattr(exc, "field", None)
    reason = getattr(exc, "reason", None)
    return [(str(field), str(reason))] if field and reason else [("post", exc.message)]


def check_publishable(post_id: str, scope: Mapping[str, Any], platforms: Sequence[str]) -> None:
    """Refuse (:class:`PostNotPublishable`) a post that would fail again on one of ``platforms``.

    The same checks as every worker attempt (``validate_for_platform``), with the account's ids
    and metadata but no decrypted token: a retry or reschedule must not re-open a post that can
    only fail, nor let an empty body reach a platform.
    """
    post = posts().find_one({PostField.ID: ObjectId(post_id), **scope})
    if post is None:
        raise NotFound(f"post {post_id} not found")
    # One deadline for all of it, as a worker's preflight has: a slow media host never holds an
    # API thread longer (checks still running then count as unknown, which refuses nothing).
    deadline = time.monotonic() + get_settings().preflight_deadline_seconds
    for platform in platforms:
        account = account_store.find_account(str(post.get(PostField.CLIENT_ID)), platform)
        credentials = account_store.credentials_without_secrets(account) if account else None
        try:
            validate_for_platform(post, platform, credentials, deadline=deadline)
        except PermanentError as exc:
            raise PostNotPublishable(post_id, platform, _problems(exc)) from None


def retry(
    post_id: str,
    scope: Mapping[str, Any],
    platform: str | None = None,
    by_user_id: str | None = None,
    note: str = RETRY_NOTE,
) -> OperationResult:
    """Failed/cancelled deliveries (all, or one platform) → pending now; the post → ``scheduled``.

    Published deliveries are never reopened, so retrying a published post publishes nothing:
    :class:`NothingToRetry` says so. A platform of a failed/approved post that never got a
    delivery (e.g. the post failed before expansion) is created by the dispatcher: the expansion
    marker is unset only in that case.
    """
    post_id = canonical(post_id, "post")
    for _ in range(_CONFLICT_RETRIES):
        post = _post(post_id, scope)
        _check_platform(post, platform)
        status = post.get(PostField.STATUS)
        if status in UNAPPROVED:
            raise Conflict(f"post is {status}: only approved content is published")
        selected = [platform] if platform else _platforms(post)
        states = _by_platform(post_id)
        retryable = [p for p in selected if _state(states, p) in (S.FAILED.value, S.CANCELLED.value)]
        missing = [p for p in selected if p not in states] if status != P.SCHEDULED.value else []
        if not retryable and not missing:
            raise NothingToRetry(f"nothing to retry ({_describe(states, selected)})")
        check_publishable(post_id, scope, retryable + missing)
        if status != P.SCHEDULED.value and not post_status.move(
            post, scope, P.SCHEDULED.value, note, by_user_id, expanded=not missing
        ):
            continue  # the post changed under us: read it again
        reopened = delivery_states.reopen(post_id, utcnow(), retryable, retried=True) if retryable else 0
        _keep_scheduled(post_id, scope, note, by_user_id)
        post_status.sync(post_id)
        log.info("retry of post %s: reopened %d deliveries", post_id, reopened, extra={"post_id": post_id})
        return OperationResult(post_id, _status(post_id), retryable + missing, note)
    raise Conflict("the post kept changing while the retry was applied; try again")


def cancel(
    post_id: str,
    scope: Mapping[str, Any],
    platform: str | None = None,
    by_user_id: str | None = None,
) -> OperationResult:
    """Cancel a scheduled post (→ ``approved``) or one of its platforms.

    Open deliveries (pending/queued/waiting_auth) become ``cancelled``, and so do deliveries
    ``in_flight`` whose message waits in the broker with no worker started on it (born taken:
    :func:`delivery_states.cancel_unstarted`). One a worker started may already have reached the
    platform, so the request is refused (409) rather than pretending, and nothing is cancelled;
    when Redis cannot say whether a worker started it, likewise (503). When some platforms are
    already published the post is not un-scheduled: it settles as ``published`` (published +
    cancelled) through ``post_status.sync``.
    """
    post_id = canonical(post_id, "post")
    post = _post(post_id, scope)
    _check_platform(post, platform)
    if post.get(PostField.STATUS) != P.SCHEDULED.value:
        raise Conflict(f"post is {post.get(PostField.STATUS)}: only a scheduled post can be cancelled")
    selected = [platform] if platform else _platforms(post)
    states = _by_platform(post_id)
    if platform is not None and platform not in states:
        raise Conflict(
            f"{platform} has no delivery yet (the post is not due); cancel the whole post or reschedule it"
        )
    stopped = _cancel_unstarted(states, selected)
    if platform is not None:
        if not (delivery_states.cancel_open(post_id, [platform], CANCEL_NOTE) or stopped):
            raise Conflict(f"nothing to cancel ({_describe(states, [platform])})")
        post_status.sync(post_id)
        return OperationResult(post_id, _status(post_id), [platform], CANCEL_NOTE)
    cancelled = delivery_states.cancel_open(post_id, None, CANCEL_NOTE) + stopped
    states = _by_platform(post_id)
    if any(d[DeliveryField.STATE] == S.PUBLISHED.value for d in states.values()):
        post_status.sync(post_id)
    elif post_status.move(post, scope, P.APPROVED.value, CANCEL_NOTE, by_user_id, expanded=False):
        delivery_states.cancel_open(post_id, None, CANCEL_NOTE)  # created by a concurrent expansion
        posting_windows.release_slots(post_id)
    else:
        raise Conflict("the post changed while it was being cancelled; read it again")
    log.info("post %s cancelled (%d deliveries)", post_id, cancelled, extra={"post_id": post_id})
    return OperationResult(post_id, _status(post_id), sorted(states), CANCEL_NOTE)


def _cancel_unstarted(states: Mapping[str, DeliveryDoc], selected: Sequence[str]) -> int:
    """Cancel the selected in-flight deliveries no worker has started, or refuse before any change."""
    in_flight = [p for p in selected if _state(states, p) == S.IN_FLIGHT.value]
    if not in_flight:
        return 0
    by_id = {states[p][DeliveryField.ID]: p for p in in_flight}
    try:
        result = delivery_states.cancel_unstarted([states[p] for p in in_flight], CANCEL_NOTE)
    except liveness.StartsUnknown as exc:
        raise Unavailable(
            f"cannot tell whether {', '.join(in_flight)} is being published right now ({exc}); "
            "nothing was cancelled, try again in a few seconds"
        ) from None
    if result.started:
        started = ", ".join(sorted(by_id[oid] for oid in result.started))
        raise Conflict(f"being published right now on {started}; try again in a few seconds")
    if result.moved:  # reaped or handed back meanwhile (open: cancelled next), or taken by a worker
        now_in_flight = {
            d[DeliveryField.ID]
            for d in deliveries().find(
                {DeliveryField.ID: {"$in": result.moved}, DeliveryField.STATE: S.IN_FLIGHT.value}
            )
        }
        if now_in_flight:
            post_id = str(states[by_id[result.moved[0]]][DeliveryField.POST_ID])
            post_status.sync(post_id)
            running = ", ".join(sorted(by_id[oid] for oid in now_in_flight))
            done = (
                f"; cancelled on {', '.join(sorted(by_id[o] for o in result.cancelled))}"
                if result.cancelled
                else ""
            )
            raise Conflict(f"being published right now on {running}{done}; try again in a few seconds")
    return len(result.cancelled)


def reschedule(
    post_id: str,
    scope: Mapping[str, Any],
    when: datetime,
    by_user_id: str | None = None,
) -> OperationResult:
    """Move a scheduled, approved or failed post to a future ``when`` (→ ``scheduled``).

    Not-yet-started deliveries move with it; a failed/cancelled post's unfinished platforms are
    reopened at ``when``; published deliveries stay published. An attempt already in flight is
    released by the worker's preflight, which re-reads ``scheduleTime``.
    """
    post_id = canonical(post_id, "post")
    when_utc = as_utc(when)
    if when_utc is None or when_utc <= utcnow():
        raise InvalidRequest("scheduleTime must be in the future", field="scheduleTime")
    for _ in range(_CONFLICT_RETRIES):
        post = _post(post_id, scope)
        status = post.get(PostField.STATUS)
        if status not in RESCHEDULABLE:
            raise Conflict(f"post is {status}: only a scheduled, approved or failed post can be rescheduled")
        states = _by_platform(post_id)
        complete = bool(_platforms(post)) and all(p in states for p in _platforms(post))
        unfinished = [p for p in _platforms(post) if _state(states, p) != S.PUBLISHED.value]
        check_publishable(post_id, scope, unfinished)
        if not post_status.move(
            post,
            scope,
            P.SCHEDULED.value,
            f"{RESCHEDULE_NOTE} to {when_utc.isoformat()}",
            by_user_id,
            expanded=True if complete and status != P.SCHEDULED.value else (None if complete else False),
            extra_set={PostField.SCHEDULE_TIME: when_utc},
        ):
            continue
        moved = delivery_states.reschedule_open(post_id, when_utc)
        if status != P.SCHEDULED.value:
            moved += delivery_states.reopen(post_id, when_utc)
            _keep_scheduled(post_id, scope, RESCHEDULE_NOTE, by_user_id)
        posting_windows.release_slots(post_id)
        return OperationResult(
            post_id, _status(post_id), sorted(states), f"{RESCHEDULE_NOTE} ({moved} deliveries moved)"
        )
    raise Conflict("the post kept changing while it was rescheduled; try again")


def _status(post_id: str) -> str:
    post = posts().find_one({PostField.ID: ObjectId(post_id)}, {PostField.STATUS: 1})
    return str(post.get(PostField.STATUS)) if post else ""
