"""The worker's public surface for the admin API and Flower: operator actions and the reads behind them.

Actions on posts and accounts (retry, cancel, reschedule, store a new token) are used by the
admin API and by the ``mcmp.retry_post`` task an operator applies from Flower; the API also reads
deliveries, queue statistics and backfill jobs and sends tasks only through this module, so it
never depends on how the worker stores or runs them. Delivery states move only through the transition
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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection

from mcmp.config import get_settings
from mcmp.connectors.errors import PermanentError
from mcmp.connectors.registry import available_platforms
from mcmp.errors import PublisherError
from mcmp.models import DeliveryState, IntegrationAccount, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.worker.accounts import crypto
from mcmp.worker.accounts import secrets as token_secrets
from mcmp.worker.accounts import store as account_store
from mcmp.worker.ops_status import Gauges, Report
from mcmp.worker.publishing import delivery_states, post_status
from mcmp.worker.publishing.post_status import EXPANDED_MARKER
from mcmp.worker.publishing.validation import PostInvalid, validate_for_platform
from mcmp.worker.scheduling import posting_windows

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


class OperationError(PublisherError):
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


class PostNotPublishable(OperationError):
    """The post would fail again as it stands (empty body, text too long, bad media): HTTP 422.

    Raised before anything is re-opened. ``problems`` lists ``(field, reason)`` of the post,
    e.g. ``("body", "must not be empty")``; ``platform`` is the first platform refused.
    """

    def __init__(self, post_id: str, platform: str, problems: list[tuple[str, str]]) -> None:
        described = "; ".join(f"{field}: {reason}" for field, reason in problems)
        super().__init__(f"post {post_id} cannot be published on {platform}: {described}", problems[0][0])
        self.platform = platform
        self.problems = problems


class Unavailable(OperationError):
    """This process cannot do it as configured (e.g. no key to seal a token with): HTTP 503."""


@dataclass(frozen=True)
class OperationResult:
    post_id: str
    status: str
    platforms: list[str] = field(default_factory=list)  # the platforms the action changed
    note: str = ""


def known_platforms() -> list[str]:
    """Platforms with an installed connector (built-in or third-party), for checking free strings."""
    return available_platforms()


def canonical(object_id: str, what: str) -> str:
    """The one spelling of an id (24 lowercase hex digits): posts are found by ObjectId but
    deliveries by the id's text, so ``6B0B…`` must become ``6b0b…`` before either is read."""
    if not isinstance(object_id, str) or not ObjectId.is_valid(object_id):
        raise NotFound(f"{what} not found")
    return str(ObjectId(object_id))


def _post(post_id: str, scope: Mapping[str, Any]) -> dict[str, Any]:
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
    post = post_status.posts().find_one({"_id": ObjectId(post_id), **scope})
    if post is None:
        raise NotFound(f"post {post_id} not found")
    # One deadline for all of it, as a worker's preflight has: a slow media host never holds an
    # API thread longer (checks still running then count as unknown, which refuses nothing).
    deadline = time.monotonic() + get_settings().preflight_deadline_seconds
    for platform in platforms:
        account = account_store.find_account(str(post.get("clientId")), platform)
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
        check_publishable(post_id, scope, retryable + missing)
        if status != P.SCHEDULED.value and not _move_post(
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

    Open deliveries (pending/queued/waiting_auth) become ``cancelled``. A delivery in flight may
    already have reached the platform, so the request is refused (409) rather than pretending.
    When some platforms are already published the post is not un-scheduled: it settles as
    ``published`` (published + cancelled) through ``post_status.sync``.
    """
    post_id = canonical(post_id, "post")
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
    post_id = canonical(post_id, "post")
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
        unfinished = [p for p in _platforms(post) if states.get(p, {}).get("state") != S.PUBLISHED.value]
        check_publishable(post_id, scope, unfinished)
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
    the new access token (absent when unknown). Tokens are sealed (encrypted) before they are
    written; without a key :class:`Unavailable` is raised and nothing is written, unless
    ``MCMP_ALLOW_PLAINTEXT_TOKENS`` allows storing them unencrypted.
    """
    account_id = canonical(account_id, "account")
    try:
        access = token_secrets.seal(access_token, account_id)
        refresh = None if refresh_token is None else token_secrets.seal(refresh_token, account_id)
    except crypto.TokenBindingError as exc:
        raise InvalidRequest(str(exc), field="accessToken") from None
    except crypto.TokenKeyError as exc:
        raise Unavailable(str(exc)) from None
    now = utcnow()
    update: dict[str, Any] = {
        "$set": {"accessToken": access, "status": "connected", "updatedAt": now},
        "$unset": {
            "metadata.authError": "",
            "metadata.authErrorAt": "",
            "metadata.refreshError": "",
            "metadata.refreshErrorAt": "",
        },
    }
    if refresh is not None:
        update["$set"]["refreshToken"] = refresh
    if expires_at is not None:
        update["$set"]["expiresAt"] = as_utc(expires_at)
    else:
        update["$unset"]["expiresAt"] = ""
    coll: Collection[dict[str, Any]] = IntegrationAccount._get_collection()
    account = coll.find_one_and_update({"_id": ObjectId(account_id), **scope}, update, return_document=True)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    delivery_states.resume_waiting(platform=account["platform"], client_id=account["clientId"])
    return account


# --- reads and task sends for the admin API ------------------------------------------------------


def deliveries_of(post_ids: Sequence[str], scope: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The deliveries of these posts inside ``scope``, by post id (every id present, maybe empty)."""
    found: dict[str, list[dict[str, Any]]] = {post_id: [] for post_id in post_ids}
    for d in delivery_states.deliveries().find({"postId": {"$in": list(post_ids)}, **scope}):
        found.setdefault(d["postId"], []).append(d)
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
    coll = delivery_states.deliveries()

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


def send_task(name: str, *args: str) -> str:
    """Send a task by name (ids only in its arguments); returns the task id. Broker errors propagate."""
    from mcmp.worker.app import app

    result = app.send_task(
        name,
        args=list(args),
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    )
    return str(result.id)


def answering_workers(timeout: float) -> int:
    """How many Celery workers answer a ping within ``timeout`` seconds (0 if the broker is down)."""
    from mcmp.worker.app import app

    try:
        return len(app.control.ping(timeout=timeout) or [])
    except Exception:
        return 0


BACKFILL_TASK = "mcmp.analytics.backfill"


def start_backfill(client_id: str, since: datetime | None, platform: str | None) -> dict[str, Any]:
    """Record an analytics backfill job and send ``mcmp.analytics.backfill(job_id)``.

    A job whose task could not be sent is marked ``enqueue_failed`` and the error propagates.
    """
    from mcmp.worker.analytics import backfill

    return backfill.start_backfill(
        client_id, since, platform, send=lambda job_id: send_task(BACKFILL_TASK, job_id)
    )


def backfill_job(job_id: str, scope: Mapping[str, Any]) -> dict[str, Any] | None:
    """The backfill job if it exists inside ``scope`` (a tenant filter on ``clientId``)."""
    from mcmp.worker.analytics import backfill

    if not ObjectId.is_valid(job_id):
        return None
    found: dict[str, Any] | None = backfill.jobs().find_one({"_id": ObjectId(job_id), **scope})
    return found


# --- what operators watch (``/metrics`` fleet gauges, ``mcmp status``) ---------------------------


def fleet_gauges(now: datetime | None = None) -> Gauges:
    """Fleet-wide figures for ``/metrics``: uncertain deliveries, accounts, throttles, live processes."""
    from mcmp.worker import ops_status

    return ops_status.gauges(now)


def operator_report(now: datetime | None = None) -> Report:
    """Everything ``mcmp status`` prints, with what needs attention."""
    from mcmp.worker import ops_status

    return ops_status.report(now)


# --- readiness (mcmp.worker.readiness): checked ahead, nothing published, nothing stored here ----


def post_readiness(post_id: str, scope: Mapping[str, Any]) -> dict[str, Any]:
    """The post's readiness verdict (stored, or computed now when the stored one is older)."""
    from mcmp.worker.readiness import report

    found = report.post_readiness(canonical(post_id, "post"), scope)
    if found is None:
        raise NotFound(f"post {post_id} not found")
    return found


def validate_draft(draft: Mapping[str, Any]) -> dict[str, Any]:
    """A draft's payload checked as if scheduled as it stands (no write, no platform call)."""
    from mcmp.worker.readiness import report

    return report.validate_draft(draft)


def accounts_at_risk(scope: Mapping[str, Any], limit: int = 200) -> list[dict[str, Any]]:
    """Accounts whose token will fail one of their scheduled posts: reason, first post and when."""
    from mcmp.worker.readiness import report

    return report.at_risk(scope, limit)


def posts_at_risk() -> dict[tuple[str, str], int]:
    """Scheduled posts that would fail because of their account, by (platform, reason), all tenants."""
    from mcmp.worker.readiness import report

    return dict(report.posts_at_risk())
