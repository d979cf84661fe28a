"""Operator actions on posts and accounts: retry, cancel, reschedule, store a new token.

Used by the admin API (and later a CLI). Delivery states move only through the transition
functions of :mod:`mcmp.worker.publishing.delivery_states`; post status changes are conditional updates on the
status just read, with one ``statusHistory`` entry each (:func:`mcmp.worker.publishing.post_status.history_entry`).

Every function takes ``scope``: the tenant filter of the caller (e.g.
``{"clientId": {"$in": [...]}}``, ``{}`` for all tenants). A post or account outside it is
reported as :class:`NotFound`, exactly like one that does not exist.

Order matters where a worker could act in between: a post is moved back to ``scheduled``
*before* its deliveries are reopened (a worker's preflight cancels an attempt whose post is not
scheduled), and re-checked after, because a concurrent ``post_status.sync`` that read the
deliveries before the reopen may have settled the post as ``failed`` again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId

from mcmp.models import DeliveryState, IntegrationAccount, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.worker.accounts import secrets as token_secrets
from mcmp.worker.publishing import delivery_states, post_status
from mcmp.worker.publishing.post_status import EXPANDED_MARKER
from mcmp.worker.scheduling import posting_windows

log = logging.getLogger(__name__)

S = DeliveryState
P = PostStatus
RETRY_NOTE = "retry requested via admin API"
CANCEL_NOTE = "cancelled via admin API"
RESCHEDULE_NOTE = "rescheduled via admin API"
RESCHEDULABLE = frozenset({P.SCHEDULED.value, P.APPROVED.value, P.FAILED.value})
UNAPPROVED = frozenset({P.DRAFT.value, P.PENDING_APPROVAL.value})
_CONFLICT_RETRIES = 3


class OperationError(Exception):
    """Root of the errors below; ``message`` is safe to show to the caller."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(OperationError):
    """No such object for this caller (absent, or another tenant's)."""


class Conflict(OperationError):
    """The object's current state does not allow the action (HTTP 409)."""


class NothingToRetry(Conflict):
    """Every selected platform is published or still active: retrying would publish nothing."""


class InvalidRequest(OperationError):
    """The request itself is wrong (unknown platform, time in the past): HTTP 422."""


@dataclass(frozen=True)
class OperationResult:
    post_id: str
    status: str
    platforms: list[str] = field(default_factory=list)  # the platforms the action changed
    note: str = ""


def _post(post_id: str, scope: Mapping[str, Any]) -> dict[str, Any]:
    if not ObjectId.is_valid(post_id):
        raise NotFound(f"post {post_id} not found")
    post = post_status.posts().find_one(
        {"_id": ObjectId(post_id), **scope},
        {"status": 1, "platforms": 1, "clientId": 1, "scheduleTime": 1, EXPANDED_MARKER: 1},
    )
    if post is None:
        raise NotFound(f"post {post_id} not found")
    return post


def _platforms(post: Mapping[str, Any]) -> list[str]:
    return [p for p in dict.fromkeys(post.get("platforms") or []) if isinstance(p, str)]


def _check_platform(post: Mapping[str, Any], platform: str | None) -> None:
    if platform is not None and platform not in _platforms(post):
        raise InvalidRequest(
            f"platform {platform!r} is not one of the post's platforms ({', '.join(_platforms(post)) or 'none'})",
            field="platform",
        )


def _move_post(
    post: Mapping[str, Any],
    scope: Mapping[str, Any],
    to_status: str,
    note: str,
    by_user_id: str | None,
    *,
    expanded: bool | None,
    extra_set: Mapping[str, Any] | None = None,
) -> bool:
    """Conditional ``status`` change with its history entry. ``expanded``: set the marker (all
    deliveries exist), unset it (the dispatcher must create missing ones), or leave it (None)."""
    now = utcnow()
    update: dict[str, Any] = {"$set": {"status": to_status, "updatedAt": now, **(extra_set or {})}}
    if post.get("status") != to_status:
        update["$push"] = {
            "statusHistory": post_status.history_entry(post.get("status"), to_status, note, by_user_id)
        }
    if expanded is True:
        update["$set"][EXPANDED_MARKER] = now
    elif expanded is False:
        update["$unset"] = {EXPANDED_MARKER: ""}
    result = post_status.posts().update_one(
        {"_id": post["_id"], "status": post.get("status"), **scope}, update
    )
    return result.modified_count == 1


def _by_platform(post_id: str) -> dict[str, dict[str, Any]]:
    return {d["platform"]: d for d in delivery_states.for_post(post_id)}


def _describe(states: Mapping[str, dict[str, Any]], platforms: Sequence[str]) -> str:
    return ", ".join(f"{p}: {states[p]['state'] if p in states else 'no delivery yet'}" for p in platforms)


def _keep_scheduled(post_id: str, scope: Mapping[str, Any], note: str, by_user_id: str | None) -> None:
    """Undo a ``failed`` written by a sync that read the deliveries before our reopen."""
    post = post_status.posts().find_one({"_id": ObjectId(post_id), **scope}, {"status": 1})
    if post is None or post.get("status") != P.FAILED.value:
        return
    active = {s.value for s in (S.PENDING, S.QUEUED, S.IN_FLIGHT, S.WAITING_AUTH)}
    if any(d["state"] in active for d in delivery_states.for_post(post_id)):
        _move_post(post, scope, P.SCHEDULED.value, note, by_user_id, expanded=True)


def retry(
    post_id: str,
    scope: Mapping[str, Any],
    platform: str | None = None,
    by_user_id: str | None = None,
) -> OperationResult:
    """Failed/cancelled deliveries (all, or one platform) → pending now; the post → ``scheduled``.

    Published deliveries are never reopened, so retrying a published post publishes nothing:
    :class:`NothingToRetry` says so. A platform of a failed/approved post that never got a
    delivery (e.g. the post failed before expansion) is created by the dispatcher: the expansion
    marker is unset only in that case.
    """
    for _ in range(_CONFLICT_RETRIES):
        post = _post(post_id, scope)
        _check_platform(post, platform)
        status = post.get("status")
        if status in UNAPPROVED:
            raise Conflict(f"post is {status}: only approved content is published")
        selected = [platform] if platform else _platforms(post)
        states = _by_platform(post_id)
        retryable = [
            p for p in selected if states.get(p, {}).get("state") in (S.FAILED.value, S.CANCELLED.value)
        ]
        missing = [p for p in selected if p not in states] if status != P.SCHEDULED.value else []
        if not retryable and not missing:
            raise NothingToRetry(f"nothing to retry ({_describe(states, selected)})")
        if status != P.SCHEDULED.value and not _move_post(
            post, scope, P.SCHEDULED.value, RETRY_NOTE, by_user_id, expanded=not missing
        ):
            continue  # the post changed under us: read it again
        reopened = delivery_states.reopen(post_id, utcnow(), retryable, retried=True) if retryable else 0
        _keep_scheduled(post_id, scope, RETRY_NOTE, by_user_id)
        post_status.sync(post_id)
        log.info("retry of post %s: reopened %d deliveries", post_id, reopened, extra={"post_id": post_id})
        return OperationResult(post_id, _status(post_id), retryable + missing, RETRY_NOTE)
    raise Conflict("the post kept changing while the retry was applied; try again")


def cancel(
    post_id: str,
    scope: Mapping[str, Any],
    platform: str | None = None,
    by_user_id: str | None = None,
) -> OperationResult:
    """Cancel a scheduled post (→ ``approved``) or one of its platforms.

    Open deliveries (pending/queued/waiting_auth) become ``cancelled``. A delivery in flight may
    already have reached the platform, so the request is refused (409) rather than pretending.
    When some platforms are already published the post is not un-scheduled: it settles as
    ``published`` (published + cancelled) through ``post_status.sync``.
    """
    post = _post(post_id, scope)
    _check_platform(post, platform)
    if post.get("status") != P.SCHEDULED.value:
        raise Conflict(f"post is {post.get('status')}: only a scheduled post can be cancelled")
    selected = [platform] if platform else _platforms(post)
    states = _by_platform(post_id)
    in_flight = [p for p in selected if states.get(p, {}).get("state") == S.IN_FLIGHT.value]
    if in_flight:
        raise Conflict(f"being published right now on {', '.join(in_flight)}; try again in a few seconds")
    if platform is not None:
        if platform not in states:
            raise Conflict(
                f"{platform} has no delivery yet (the post is not due); cancel the whole post or reschedule it"
            )
        if not delivery_states.cancel_open(post_id, [platform], CANCEL_NOTE):
            raise Conflict(f"nothing to cancel ({_describe(states, [platform])})")
        post_status.sync(post_id)
        return OperationResult(post_id, _status(post_id), [platform], CANCEL_NOTE)
    cancelled = delivery_states.cancel_open(post_id, None, CANCEL_NOTE)
    states = _by_platform(post_id)
    if any(d["state"] == S.PUBLISHED.value for d in states.values()):
        post_status.sync(post_id)
    elif _move_post(post, scope, P.APPROVED.value, CANCEL_NOTE, by_user_id, expanded=False):
        delivery_states.cancel_open(post_id, None, CANCEL_NOTE)  # created by a concurrent expansion
        posting_windows.release_slots(post_id)
    else:
        raise Conflict("the post changed while it was being cancelled; read it again")
    log.info("post %s cancelled (%d deliveries)", post_id, cancelled, extra={"post_id": post_id})
    return OperationResult(post_id, _status(post_id), sorted(states), CANCEL_NOTE)


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
    when_utc = as_utc(when)
    if when_utc is None or when_utc <= utcnow():
        raise InvalidRequest("scheduleTime must be in the future", field="scheduleTime")
    for _ in range(_CONFLICT_RETRIES):
        post = _post(post_id, scope)
        status = post.get("status")
        if status not in RESCHEDULABLE:
            raise Conflict(f"post is {status}: only a scheduled, approved or failed post can be rescheduled")
        states = _by_platform(post_id)
        complete = bool(_platforms(post)) and all(p in states for p in _platforms(post))
        if not _move_post(
            post,
            scope,
            P.SCHEDULED.value,
            f"{RESCHEDULE_NOTE} to {when_utc.isoformat()}",
            by_user_id,
            expanded=True if complete and status != P.SCHEDULED.value else (None if complete else False),
            extra_set={"scheduleTime": when_utc},
        ):
            continue
        moved = delivery_states.reschedule_open(post_id, when_utc)
        if status != P.SCHEDULED.value:
            moved += delivery_states.reopen(post_id, when_utc)
        posting_windows.release_slots(post_id)
        return OperationResult(
            post_id, _status(post_id), sorted(states), f"{RESCHEDULE_NOTE} ({moved} deliveries moved)"
        )
    raise Conflict("the post kept changing while it was rescheduled; try again")


def _status(post_id: str) -> str:
    post = post_status.posts().find_one({"_id": ObjectId(post_id)}, {"status": 1})
    return str(post.get("status")) if post else ""


def store_token(
    account_id: str,
    scope: Mapping[str, Any],
    access_token: str,
    refresh_token: str | None = None,
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    """Store a new token on an account (status ``connected``) and resume deliveries waiting for it.

    An existing refresh token is kept unless a new one is given; ``expiresAt`` always describes
    the new access token (absent when unknown). Tokens are sealed with ``mcmp.worker.accounts.secrets.seal``
    when that helper exists; otherwise stored as given (the worker accepts plaintext).
    """
    if not ObjectId.is_valid(account_id):
        raise NotFound(f"account {account_id} not found")
    seal = getattr(token_secrets, "seal", None)

    def sealed(value: str) -> str:
        return seal(value) if callable(seal) else value

    now = utcnow()
    update: dict[str, Any] = {
        "$set": {"accessToken": sealed(access_token), "status": "connected", "updatedAt": now},
        "$unset": {"metadata.authError": "", "metadata.authErrorAt": ""},
    }
    if refresh_token is not None:
        update["$set"]["refreshToken"] = sealed(refresh_token)
    if expires_at is not None:
        update["$set"]["expiresAt"] = as_utc(expires_at)
    else:
        update["$unset"]["expiresAt"] = ""
    coll = IntegrationAccount._get_collection()
    account = coll.find_one_and_update({"_id": ObjectId(account_id), **scope}, update, return_document=True)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    delivery_states.resume_waiting(platform=account["platform"], client_id=account["clientId"])
    return account
