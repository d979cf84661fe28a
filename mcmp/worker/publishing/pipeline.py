"""The publish pipeline for one delivery: claim → preflight → (reconcile) → publish → record.

Exactly-once rests on four explicit steps (README, invariant 1):
1. ``start_attempt`` claims the delivery atomically and records a new attempt id and
   ``needsReconcile=True`` *before* any platform call;
2. if the previous attempt may have reached the platform (ambiguous answer, crash, expired
   lease), the connector first looks the post up (``find_published``) and records it instead of
   posting again;
3. the outcome is written only if this attempt id still owns the delivery;
4. the post's status/ids are then derived from all its deliveries (``post_status.sync``).
Running this again for a published delivery (a retry from Flower) does nothing and says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId

from mcmp.config import Settings, get_settings
from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from mcmp.connectors.protocol import Connector
from mcmp.connectors.registry import UnknownPlatformError, get_connector
from mcmp.connectors.types import PostContent, PublishRequest, PublishResult
from mcmp.models import AccountStatus, DeliveryState, ErrorClass, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.worker import metrics, rate_limit
from mcmp.worker.accounts import cache as account_cache
from mcmp.worker.accounts import store as accounts
from mcmp.worker.accounts import tokens
from mcmp.worker.logs import log_context
from mcmp.worker.publishing import campaign_bounds, delivery_states, post_status
from mcmp.worker.publishing.content import build_content
from mcmp.worker.publishing.retry_policy import backoff_seconds

log = logging.getLogger(__name__)
# A delivery whose token cannot be refreshed right now (and is no longer valid) tries again after this.
TOKEN_RETRY_SECONDS = 10.0
# A token refreshed less than this long ago and still refused on publish is not refreshed again.
AUTH_REFRESH_GUARD_SECONDS = 600.0


class Outcome(StrEnum):
    PUBLISHED = "published"
    RECONCILED = "reconciled"  # found on the platform after an ambiguous attempt: not re-posted
    ALREADY_PUBLISHED = "already_published"
    NOT_AVAILABLE = "not_available"  # in flight elsewhere, not due, or finished
    NOT_FOUND = "not_found"
    RETRY = "retry"
    DEFERRED = "deferred"  # rate limited: attempt given back
    WAITING_AUTH = "waiting_auth"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"
    LOST_LEASE = "lost_lease"


class _Attempt:
    """State of one attempt while it runs (kept out of the function to keep steps small)."""

    def __init__(self, delivery: dict[str, Any], uncertain: bool, settings: Settings) -> None:
        self.delivery = delivery
        self.uncertain = uncertain  # may a previous attempt have created the post?
        self.settings = settings
        self.post_id: str = delivery["postId"]
        self.platform: str = delivery["platform"]
        self.attempt: int = delivery["attempt"]
        self.post: dict[str, Any] | None = None  # as read by the preflight (status, platforms)
        self.accounts = account_cache.for_ttl(settings.account_cache_seconds)

    def forget_account(self) -> None:
        """The account gave trouble: the next attempt reads it from the database."""
        if self.post is not None:
            self.accounts.forget(str(self.post.get("clientId")), self.platform)

    # --- outcomes ---------------------------------------------------------------------------
    def fail(self, reason: str, error_class: ErrorClass = ErrorClass.PERMANENT) -> Outcome:
        log.warning("delivery failed: %s", reason)
        if delivery_states.fail(self.delivery, reason, error_class):
            post_status.sync(self.post_id)
            metrics.delivery_outcome(self.platform, Outcome.FAILED)
            return Outcome.FAILED
        return Outcome.LOST_LEASE

    def retry(self, reason: str, error_class: ErrorClass, retry_after: float | None) -> Outcome:
        if self.attempt >= self.settings.max_attempts and not self.uncertain:
            return self.fail(f"gave up after {self.attempt} attempts: {reason}", error_class)
        delay = backoff_seconds(self.attempt, self.settings, retry_after)
        due = utcnow() + timedelta(seconds=delay)
        log.info(
            "attempt %d failed (%s: %s); retrying in %.1fs", self.attempt, error_class.value, reason, delay
        )
        if delivery_states.schedule_retry(
            self.delivery, due, reason, error_class, needs_reconcile=self.uncertain
        ):
            post_status.record_error(
                self.post_id, f"{self.platform}: {reason} (attempt {self.attempt}, retrying)"
            )
            metrics.delivery_outcome(self.platform, Outcome.RETRY)
            return Outcome.RETRY
        return Outcome.LOST_LEASE

    def defer(
        self, until: datetime, reason: str, error_class: ErrorClass = ErrorClass.RATE_LIMITED
    ) -> Outcome:
        log.info("deferred until %s (%s): %s", until.isoformat(), error_class.value, reason)
        ok = delivery_states.schedule_retry(
            self.delivery,
            until,
            reason,
            error_class,
            needs_reconcile=self.uncertain,
            consume_attempt=False,
        )
        if ok:
            metrics.delivery_outcome(self.platform, Outcome.DEFERRED)
        return Outcome.DEFERRED if ok else Outcome.LOST_LEASE

    def wait_for_auth(self, account: Any, reason: str) -> Outcome:
        self.forget_account()
        if not accounts.mark_expired(account, reason):  # reconnected meanwhile: use the new token
            return self.defer(utcnow(), "account was reconnected during the attempt", ErrorClass.AUTH)
        message = f"{self.platform}: account must be reconnected ({reason})"
        log.warning("waiting for re-authorisation: %s", reason)
        if delivery_states.wait_for_auth(self.delivery, message, needs_reconcile=self.uncertain):
            post_status.record_error(self.post_id, message)
            metrics.delivery_outcome(self.platform, Outcome.WAITING_AUTH)
            return Outcome.WAITING_AUTH
        return Outcome.LOST_LEASE

    def complete(self, result: PublishResult, call_started: datetime | None, reconciled: bool) -> Outcome:
        published_at = result.published_at or call_started or utcnow()
        if not delivery_states.complete(
            self.delivery, result.platform_post_id, result.url, published_at, call_started
        ):
            log.warning(
                "lost the lease before recording %s; the newer attempt will reconcile",
                result.platform_post_id,
            )
            return Outcome.LOST_LEASE
        settled = {
            **self.delivery,
            "state": DeliveryState.PUBLISHED.value,
            "platformPostId": result.platform_post_id,
            "publishedAt": published_at,
        }
        post_status.sync(self.post_id, self.post, settled)
        outcome = Outcome.RECONCILED if reconciled else Outcome.PUBLISHED
        log.info("%s as %s", "reconciled" if reconciled else "published", result.platform_post_id)
        metrics.delivery_outcome(self.platform, outcome)
        return outcome


def publish_delivery(
    delivery_id: str, claim: dict[str, str] | None = None, settings: Settings | None = None
) -> Outcome:
    """Run one attempt of one delivery. Safe to call any number of times for the same id.

    ``claim`` is the dispatcher's hint for a first attempt (one write instead of read + write);
    when it no longer matches the stored delivery the normal compare-and-swap decides.
    """
    settings = settings or get_settings()
    try:
        taken = None
        if claim and ObjectId.is_valid(delivery_id):
            taken = delivery_states.start_claimed(delivery_id, claim, settings.inflight_lease_seconds)
        if taken is None:
            taken = delivery_states.start_attempt(delivery_id, settings.inflight_lease_seconds)
    except Exception as exc:  # an invalid id must not crash the worker loop
        if not ObjectId.is_valid(delivery_id):
            log.error("publish_delivery: %r is not a delivery id", delivery_id)
            return Outcome.NOT_FOUND
        raise exc
    if taken is None:
        return _explain_not_taken(delivery_id)
    delivery, uncertain = taken
    with log_context(
        delivery_id=delivery_id,
        post_id=delivery["postId"],
        platform=delivery["platform"],
        attempt=delivery["attempt"],
    ):
        return _run(_Attempt(delivery, uncertain, settings))


def _explain_not_taken(delivery_id: str) -> Outcome:
    doc = delivery_states.deliveries().find_one(
        {"_id": ObjectId(delivery_id)}, {"state": 1, "platformPostId": 1, "platform": 1}
    )
    if doc is None:
        log.warning("delivery %s does not exist; nothing to do", delivery_id)
        return Outcome.NOT_FOUND
    if doc["state"] == DeliveryState.PUBLISHED.value:
        log.info(
            "delivery %s is already published on %s as %s; nothing to do",
            delivery_id,
            doc.get("platform"),
            doc.get("platformPostId"),
        )
        return Outcome.ALREADY_PUBLISHED
    log.info("delivery %s is %s; not taking it now", delivery_id, doc["state"])
    return Outcome.NOT_AVAILABLE


def _run(attempt: _Attempt) -> Outcome:
    settings = attempt.settings
    post = post_status.posts().find_one({"_id": ObjectId(attempt.post_id)})
    attempt.post = post
    if post is None:
        delivery_states.cancel_attempt(attempt.delivery, "post was deleted")
        return Outcome.CANCELLED
    if post.get("status") != PostStatus.SCHEDULED.value:
        reason = f"post is now {post.get('status')!r}; not publishing"
        log.info(reason)
        delivery_states.cancel_attempt(attempt.delivery, reason)
        return Outcome.CANCELLED
    schedule_time = (
        as_utc(post.get("scheduleTime")) if isinstance(post.get("scheduleTime"), datetime) else None
    )
    if schedule_time is not None and schedule_time > utcnow() + timedelta(
        seconds=settings.lookahead_seconds + 1
    ):
        log.info("post was moved to %s; releasing the delivery until then", schedule_time.isoformat())
        delivery_states.release(attempt.delivery, schedule_time, needs_reconcile=attempt.uncertain)
        return Outcome.RESCHEDULED
    # An uncertain delivery began inside the bounds and may be live already: reconcile it first.
    outside = None if attempt.uncertain else campaign_bounds.check(post)
    if outside is not None and outside.hold_until is None:
        return attempt.fail(outside.reason)
    if outside is not None and outside.hold_until is not None:
        post_status.record_error(attempt.post_id, f"{attempt.platform}: {outside.reason}")
        delivery_states.release(
            attempt.delivery, outside.hold_until, needs_reconcile=attempt.uncertain, note=outside.reason
        )
        return Outcome.RESCHEDULED
    try:
        connector = get_connector(attempt.platform)
    except UnknownPlatformError as exc:
        return attempt.fail(str(exc))
    client_id = str(post["clientId"])
    account = attempt.accounts.get(client_id, attempt.platform) or accounts.find_account(
        post["clientId"], attempt.platform
    )
    if account is None:
        return attempt.fail(f"no IntegrationAccount for {attempt.platform} is connected to this client")
    if account.status != AccountStatus.CONNECTED.value:
        reason = (account.metadata or {}).get("authError") or f"account status is {account.status}"
        return attempt.wait_for_auth(account, str(reason))
    # Just-in-time refresh, single-flight, bounded well inside the in-flight lease.
    fresh = tokens.ensure_fresh(account, settings, budget_seconds=settings.inflight_lease_seconds / 3)
    if fresh.credentials is None:
        if fresh.outcome is tokens.Outcome.REVOKED:
            return attempt.wait_for_auth(fresh.account or account, fresh.reason)
        retry_at = utcnow() + timedelta(seconds=TOKEN_RETRY_SECONDS)
        return attempt.defer(retry_at, fresh.reason, ErrorClass.AUTH)  # no attempt consumed
    account, credentials = fresh.account or account, fresh.credentials
    if fresh.outcome is tokens.Outcome.NOT_DUE:
        attempt.accounts.put(client_id, attempt.platform, account)
    else:
        attempt.forget_account()
    try:
        content = build_content(post, attempt.platform)
        connector.validate(content, credentials)
    except PermanentError as exc:
        return attempt.fail(exc.message)
    blocked = _blocked_until(attempt.platform, str(account.pk))
    if blocked is not None:
        return attempt.defer(blocked, "platform rate limit reached (shared budget)")
    request = PublishRequest(
        delivery_id=str(attempt.delivery["_id"]),
        idempotency_key=str(attempt.delivery["_id"]),
        attempt_id=attempt.delivery["attemptId"],
        attempt_started_at=utcnow(),
        content=content,
        credentials=credentials,
        first_attempt_at=as_utc(attempt.delivery.get("createdAt")),
        keep_alive=_lease_keeper(attempt.delivery, settings.inflight_lease_seconds),
    )
    return _call_platform(attempt, connector, request, account)


def _lease_keeper(delivery: dict[str, Any], lease_seconds: float) -> Callable[[], None]:
    """What a connector calls during a long publish (a video's upload and processing).

    Renews this attempt's in-flight lease at most every third of the lease, so a live worker's
    long call is never reclaimed by the reaper; raises once the attempt no longer owns the
    delivery, so the connector stops before it could create a post the new owner also creates.
    """
    renewed = [time.monotonic()]

    def keep_alive() -> None:
        now = time.monotonic()
        if now - renewed[0] < lease_seconds / 3:
            return
        renewed[0] = now
        if not delivery_states.extend_lease(delivery, lease_seconds):
            raise RetryableError("this attempt no longer owns the delivery; stopping before publishing")

    return keep_alive


def _blocked_until(platform: str, account_id: str) -> datetime | None:
    try:
        return rate_limit.blocked_until(platform, account_id)
    except Exception as exc:  # Redis hiccup: the platform's own 429 still protects us
        log.warning("rate-limit check unavailable (%s); proceeding", type(exc).__name__)
        return None


def _call_platform(attempt: _Attempt, connector: Connector, request: PublishRequest, account: Any) -> Outcome:
    call_started: datetime | None = None
    try:
        if attempt.uncertain:
            found = connector.find_published(request)
            if found is not None:
                return attempt.complete(found, None, reconciled=True)
            attempt.uncertain = False  # looked up: the post does not exist on the platform
            log.info("reconciled: no earlier post found; publishing")
        call_started = utcnow()
        metrics.observe_lateness(attempt.platform, attempt.delivery.get("scheduledFor"), call_started)
        result = connector.publish(request)
    except RateLimitedError as exc:
        _record_block(attempt.platform, exc, request.credentials.account_id)
        return attempt.defer(exc.until, exc.message)
    except AuthError as exc:
        return _after_auth_error(attempt, account, exc.message)
    except PermanentError as exc:
        return attempt.fail(exc.message)
    except AmbiguousError as exc:
        attempt.uncertain = attempt.uncertain or call_started is not None
        return attempt.retry(exc.message, ErrorClass.AMBIGUOUS, exc.retry_after)
    except RetryableError as exc:
        return attempt.retry(exc.message, ErrorClass.RETRYABLE, exc.retry_after)
    except ConnectorError as exc:
        return attempt.fail(exc.message)
    except Exception as exc:  # a connector bug: it may have sent the request, so reconcile next time
        log.exception("connector %s raised unexpectedly", attempt.platform)
        attempt.uncertain = attempt.uncertain or call_started is not None
        return attempt.retry(
            f"internal error in connector ({type(exc).__name__})", ErrorClass.AMBIGUOUS, None
        )
    return attempt.complete(result, call_started, reconciled=False)


def _after_auth_error(attempt: _Attempt, account: Any, reason: str) -> Outcome:
    """The platform refused the token on publish: one forced refresh before asking for a reconnect.

    Platforms invalidate access tokens before ``expiresAt`` (password change, session expiry,
    LinkedIn/Google 401); a still-valid refresh grant recovers without a human. A token that was
    itself refreshed moments ago and is still refused means the grant is gone.
    """
    attempt.forget_account()
    refreshed_at = as_utc((account.metadata or {}).get("tokenRefreshedAt"))
    if refreshed_at is not None and utcnow() - refreshed_at < timedelta(seconds=AUTH_REFRESH_GUARD_SECONDS):
        return attempt.wait_for_auth(account, reason)
    fresh = tokens.ensure_fresh(account, attempt.settings, force=True)
    if fresh.outcome in (tokens.Outcome.REFRESHED, tokens.Outcome.ALREADY_REFRESHED):
        log.info("token refused (%s); retrying at once with the refreshed token", reason)
        return attempt.defer(utcnow(), f"token refused, refreshed: {reason}", ErrorClass.AUTH)
    if fresh.outcome is tokens.Outcome.REVOKED:
        return attempt.wait_for_auth(fresh.account or account, fresh.reason or reason)
    # Refresh endpoint unavailable: an ordinary retry, bounded by max_attempts.
    return attempt.retry(
        f"token refused and refresh unavailable: {fresh.reason or reason}", ErrorClass.AUTH, None
    )


def _record_block(platform: str, exc: RateLimitedError, account_id: str) -> None:
    try:
        rate_limit.block(platform, exc.scope, account_id, exc.retry_after)
    except Exception as err:  # best effort; the delivery is deferred regardless
        log.warning("could not record rate limit (%s)", type(err).__name__)


__all__ = ["Outcome", "PostContent", "publish_delivery"]
