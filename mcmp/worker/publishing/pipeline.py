"""The publish pipeline for one delivery: claim → preflight → (reconcile) → publish → record.

Exactly-once rests on four explicit steps (README, invariant 1):
1. the delivery is taken atomically (``delivery_states.start_*``) with a new attempt id and
   ``needsReconcile=True`` recorded *before* any platform call;
2. if the previous attempt may have reached the platform (ambiguous answer, crash, abandoned
   attempt), the connector first looks the post up (``find_published``) and records it instead
   of posting again;
3. the outcome is written only if this attempt id still owns the delivery;
4. the post's status/ids are then derived from all its deliveries (``post_status``).
Between 1 and 2 the named :mod:`preflight` steps run. An attempt ends as a :class:`Record`:
the delivery's transition plus what the post needs, written here one by one or by
:mod:`batch` for many at once. Running this again for a published delivery (a retry from
Flower) does nothing and says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

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
from mcmp.connectors.registry import get_connector
from mcmp.connectors.types import PostContent, PublishRequest, PublishResult
from mcmp.models import DeliveryState, ErrorClass, IntegrationAccount
from mcmp.models.base import as_utc, utcnow
from mcmp.models.delivery import DeliveryDoc
from mcmp.worker import liveness, metrics, rate_limit
from mcmp.worker.accounts import cache as account_cache
from mcmp.worker.accounts import tokens
from mcmp.worker.logs import log_context
from mcmp.worker.publishing import auth, delivery_states, lanes, post_status, preflight
from mcmp.worker.publishing.delivery_states import Taken, Transition
from mcmp.worker.publishing.preflight import PostDoc, Preflight
from mcmp.worker.publishing.retry_policy import backoff_seconds

log = logging.getLogger(__name__)
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
    MOVED = "moved"  # to the long lane before any platform call (lanes.py): continues there


@dataclass(frozen=True)
class Record:
    """How one attempt ends: the delivery's transition, then what its post needs once it applied.

    ``post_error`` is shown on the post while it is retried or held; ``settles`` means the post's
    status is derived again (with ``settled``, the delivery as written, when it was published).
    """

    outcome: Outcome
    transition: Transition
    post_error: str | None = None
    settles: bool = False
    settled: DeliveryDoc | None = None
    counted: bool = True  # reported to the outcome metric once written
    moved_token: str | None = None  # MOVED: the claim token it waits under on the long lane


@dataclass
class Attempt:
    """One attempt while it runs: the taken delivery, the post read for it, the preflight's findings."""

    taken: Taken
    settings: Settings
    post: PostDoc | None
    uncertain: bool
    account: IntegrationAccount | None = None
    lane: str = lanes.FAST
    handoff_token: str = field(default_factory=lanes.new_token)  # shared by a batch's moved members
    admissions: preflight.BatchAdmissions | None = None  # the batch's rate-limit admission per account
    started: float = field(default_factory=time.monotonic)  # when its preflight began
    # The account's long-lane mark as its batch read it (one Redis read per batch); None: read it here.
    marked_long: bool | None = None

    @property
    def client_id(self) -> str:
        return str((self.post or {}).get("clientId") or "")

    @property
    def post_id(self) -> str:
        return self.taken.post_id

    @property
    def platform(self) -> str:
        return self.taken.platform

    def forget_account(self) -> None:
        """The account gave trouble: the next attempt reads it from the database."""
        if self.post is not None:
            account_cache.for_ttl(self.settings.account_cache_seconds).forget(
                str(self.post.get("clientId")), self.platform
            )

    # --- how an attempt can end (no write happens here) ---------------------------------------
    def fail(
        self, reason: str, error_class: ErrorClass = ErrorClass.PERMANENT, *, still_uncertain: bool = False
    ) -> Record:
        log.warning("delivery failed: %s", reason)
        transition = delivery_states.fail_op(self.taken, reason, error_class, needs_reconcile=still_uncertain)
        return Record(Outcome.FAILED, transition, settles=True)

    def move(self, reason: str) -> Record:
        """To the long lane before any platform call: no attempt spent, flags as they were."""
        log.info("moving to the long lane: %s", reason)
        transition = delivery_states.handoff_op(
            self.taken, self.handoff_token, self.settings.queued_lease_seconds
        )
        return Record(Outcome.MOVED, transition, counted=False, moved_token=self.handoff_token)

    def retry(self, reason: str, error_class: ErrorClass, retry_after: float | None) -> Record:
        attempt = self.taken.attempt
        if attempt >= self.settings.max_attempts and not self.uncertain:
            return self.fail(f"gave up after {attempt} attempts: {reason}", error_class)
        delay = backoff_seconds(attempt, self.settings, retry_after)
        log.info("attempt %d failed (%s: %s); retrying in %.1fs", attempt, error_class.value, reason, delay)
        due = utcnow() + timedelta(seconds=delay)
        transition = delivery_states.retry_op(
            self.taken, due, reason, error_class, needs_reconcile=self.uncertain
        )
        message = f"{self.platform}: {reason} (attempt {attempt}, retrying)"
        return Record(Outcome.RETRY, transition, post_error=message)

    def defer(
        self, until: datetime, reason: str, error_class: ErrorClass = ErrorClass.RATE_LIMITED
    ) -> Record:
        log.info("deferred until %s (%s): %s", until.isoformat(), error_class.value, reason)
        transition = delivery_states.retry_op(
            self.taken, until, reason, error_class, needs_reconcile=self.uncertain, consume_attempt=False
        )
        return Record(Outcome.DEFERRED, transition)

    def wait_for_auth(self, account: IntegrationAccount, reason: str, *, rejected: bool = True) -> Record:
        """Wait for a reconnect; a token just ``rejected`` goes through :func:`auth.token_rejected`."""
        self.forget_account()
        if rejected:
            reconnected = auth.token_rejected(account, reason, holding=1).reconnected
        else:  # read moments ago (or cached): a reconnect since must not be missed
            reconnected = auth.connected_now(account)
        if reconnected:
            return self.defer(utcnow(), "account was reconnected during the attempt", ErrorClass.AUTH)
        message = auth.waiting_note(self.platform, reason)
        log.info("waiting for re-authorisation (no attempt used): %s", reason)
        transition = delivery_states.wait_for_auth_op(self.taken, message, needs_reconcile=self.uncertain)
        return Record(Outcome.WAITING_AUTH, transition, post_error=message)

    def release(self, until: datetime, note: str | None) -> Record:
        transition = delivery_states.release_op(self.taken, until, needs_reconcile=self.uncertain, note=note)
        post_error = f"{self.platform}: {note}" if note else None
        return Record(Outcome.RESCHEDULED, transition, post_error=post_error, counted=False)

    def cancel(self, reason: str) -> Record:
        log.info(reason)
        return Record(Outcome.CANCELLED, delivery_states.cancel_op(self.taken, reason), counted=False)

    def complete(self, result: PublishResult, call_started: datetime | None, reconciled: bool) -> Record:
        published_at = result.published_at or call_started or utcnow()
        transition = delivery_states.complete_op(
            self.taken, result.platform_post_id, result.url, published_at, call_started
        )
        settled: DeliveryDoc = {
            "_id": self.taken.id,
            "platform": self.platform,
            "state": DeliveryState.PUBLISHED.value,
            "platformPostId": result.platform_post_id,
            "publishedAt": published_at,
            "attempt": self.taken.attempt,
        }
        log.info("%s as %s", "reconciled" if reconciled else "published", result.platform_post_id)
        outcome = Outcome.RECONCILED if reconciled else Outcome.PUBLISHED
        return Record(outcome, transition, settles=True, settled=settled)

    def decide(self, decision: preflight.Decision) -> Record:
        """The record of a preflight decision."""
        if isinstance(decision, preflight.Fail):
            return self.fail(decision.reason, decision.error_class)
        if isinstance(decision, preflight.Defer):
            return self.defer(decision.until, decision.reason, decision.error_class)
        if isinstance(decision, preflight.Release):
            return self.release(decision.until, decision.note)
        if isinstance(decision, preflight.Cancel):
            return self.cancel(decision.reason)
        if isinstance(decision, preflight.Move):
            return self.move(decision.reason)
        return self.wait_for_auth(decision.account, decision.reason, rejected=decision.rejected)


def commit(record: Record, post: PostDoc | None) -> Outcome:
    """Write one attempt's record: the delivery first (if this attempt still owns it), then the post."""
    if not delivery_states.apply(record.transition):
        if record.settled is not None:
            log.warning(
                "lost the lease before recording %s; the newer attempt will reconcile",
                record.settled["platformPostId"],
            )
        return Outcome.LOST_LEASE
    after_commit(record, post)
    return record.outcome


def after_moves(moved: list[tuple[Record, str]], settings: Settings) -> None:
    """Deliveries whose move was written (with their client): mark their accounts, send them on."""
    if not moved:
        return
    for record, client_id in moved:
        lanes.mark_long(client_id, record.transition.taken.platform, settings)
    by_token: dict[str, list[Taken]] = {}
    for record, _ in moved:
        by_token.setdefault(record.moved_token or "", []).append(record.transition.taken)
    for token, takens in by_token.items():
        lanes.send_moved(takens, token)


def after_commit(record: Record, post: PostDoc | None) -> None:
    """What the post needs once the delivery's transition was written (one delivery)."""
    post_id = record.transition.taken.post_id
    if record.outcome is Outcome.MOVED:
        after_moves([(record, str((post or {}).get("clientId") or ""))], get_settings())
        return
    if record.settles:
        post_status.sync(post_id, post if record.settled is not None else None, record.settled)
    elif record.post_error:
        post_status.record_error(post_id, record.post_error)
    if record.counted:
        metrics.delivery_outcome(record.transition.taken.platform, record.outcome)


def publish_delivery(
    delivery_id: str,
    claim: dict[str, str] | None = None,
    settings: Settings | None = None,
    lane: str = lanes.FAST,
) -> Outcome:
    """Run one attempt of one delivery. Safe to call any number of times for the same id.

    ``claim`` is the dispatcher's hint for a first attempt (one write instead of read + write);
    when it no longer matches the stored delivery the normal compare-and-swap decides.
    """
    settings = settings or get_settings()
    if not ObjectId.is_valid(delivery_id):  # an invalid id must not crash the worker loop
        log.error("publish_delivery: %r is not a delivery id", delivery_id)
        return Outcome.NOT_FOUND
    taken = None
    if claim and claim.get("attempt"):  # born taken: started with no write (delivery_states.start_born)
        item = delivery_states.parse_batch_item((cast(Any, claim.get("items")) or [[]])[0])
        if item is not None and item.delivery_id == delivery_id:
            born = delivery_states.start_born([item], str(claim["attempt"]), settings.inflight_lease_seconds)
            taken = born[0] if born else None
        if taken is None:
            return _explain_not_taken(delivery_id)
    elif claim:
        taken = delivery_states.start_claimed(delivery_id, claim, settings.inflight_lease_seconds)
    if taken is None:
        taken = delivery_states.start_attempt(delivery_id, settings.inflight_lease_seconds)
    if taken is None:
        return _explain_not_taken(delivery_id)
    post = post_status.posts().find_one({"_id": ObjectId(taken.post_id)})
    with log_context(
        delivery_id=delivery_id, post_id=taken.post_id, platform=taken.platform, attempt=taken.attempt
    ):
        attempt = Attempt(taken, settings, post, taken.uncertain, lane=lane)
        with liveness.running(taken.attempt_id, [taken.id]):
            return commit(run_attempt(attempt), attempt.post)


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


def run_attempt(attempt: Attempt) -> Record:
    """Preflight, then (reconcile and) publish: how this attempt ends, not yet written.

    On the fast lane, an account marked long moves at once, and a preflight past the lane's
    share (``MCMP_LONG_DELIVERY_SECONDS``) moves before the platform call (:mod:`lanes`).
    """
    settings = attempt.settings
    attempt.started = time.monotonic()
    move_at = None
    if attempt.lane != lanes.LONG:
        move_at = attempt.started + settings.long_delivery_seconds
        marked = attempt.marked_long
        if marked is None:
            marked = lanes.is_long(attempt.client_id, attempt.platform)
        if marked:
            return attempt.move("this account's deliveries take long; continuing on the long lane")
    check = Preflight(
        taken=attempt.taken,
        settings=settings,
        now=utcnow(),
        post=attempt.post,
        accounts=account_cache.for_ttl(settings.account_cache_seconds),
        account=attempt.account,
        deadline=attempt.started + settings.preflight_deadline_seconds,
        move_at=move_at,
        admissions=attempt.admissions,
    )
    decision = preflight.run(check)
    attempt.account = check.account
    if decision is not None:
        return attempt.decide(decision)
    if check.overdue_on_lane():
        return attempt.move(f"preflight took longer than {settings.long_delivery_seconds:g} s")
    assert check.content is not None and check.credentials is not None and check.account is not None
    request = PublishRequest(
        delivery_id=str(attempt.taken.id),
        idempotency_key=str(attempt.taken.id),
        attempt_id=attempt.taken.attempt_id,
        attempt_started_at=utcnow(),
        content=check.content,
        credentials=check.credentials,
        first_attempt_at=attempt.taken.created_at or as_utc(attempt.taken.id.generation_time),
        keep_alive=_ownership_check(attempt.taken, attempt.settings.inflight_lease_seconds / 3),
    )
    return _call_platform(attempt, get_connector(attempt.platform), request, check.account)


def _ownership_check(taken: Taken, every_seconds: float) -> Callable[[], None]:
    """What a connector calls during a long publish (a video's upload and processing).

    The lease itself is kept by this worker's liveness thread; this check, at most every
    ``every_seconds``, stops the connector (``RetryableError``) once the attempt no longer owns
    the delivery (the worker was judged dead and the delivery handed on), before it could create
    a post the new owner also creates.
    """
    checked = [time.monotonic()]

    def keep_alive() -> None:
        now = time.monotonic()
        if now - checked[0] < every_seconds:
            return
        checked[0] = now
        if not delivery_states.still_owned(taken):
            raise RetryableError("this attempt no longer owns the delivery; stopping before publishing")

    return keep_alive


def _call_platform(
    attempt: Attempt, connector: Connector, request: PublishRequest, account: IntegrationAccount
) -> Record:
    call_started: datetime | None = None
    try:
        if attempt.uncertain:
            lookups = delivery_states.note_lookup(attempt.taken)
            try:
                found = connector.find_published(request)
            except (RateLimitedError, AuthError):
                raise
            except Exception as exc:
                if lookups >= attempt.settings.max_reconcile_lookups:
                    return _unconfirmed(attempt, lookups, exc)
                raise
            if found is not None:
                return attempt.complete(found, None, reconciled=True)
            attempt.uncertain = False  # looked up: the post does not exist on the platform
            log.info("reconciled: no earlier post found; publishing")
        call_started = utcnow()
        metrics.observe_lateness(attempt.platform, attempt.taken.scheduled_for, call_started)
        began = time.monotonic()
        try:
            result = connector.publish(request)
        except Exception as exc:
            metrics.publish_call(attempt.platform, exc)
            raise
        finally:
            if time.monotonic() - began > attempt.settings.long_delivery_seconds:
                lanes.mark_long(attempt.client_id, attempt.platform, attempt.settings)
        metrics.publish_call(attempt.platform, None)
    except RateLimitedError as exc:
        until = _record_block(attempt, exc, request.credentials.account_id)
        return attempt.defer(until, exc.message)
    except AuthError as exc:
        return _after_auth_error(attempt, account, exc)
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


def _unconfirmed(attempt: Attempt, lookups: int, exc: Exception) -> Record:
    """An uncertain delivery whose lookup never answered: fail it, saying what to check. Never post blind."""
    why = exc.message if isinstance(exc, ConnectorError) else f"internal error ({type(exc).__name__})"
    first = attempt.taken.created_at or as_utc(attempt.taken.id.generation_time)
    since = f" since {first:%Y-%m-%d %H:%M} UTC" if first else ""
    reason = (
        f"not published: an earlier attempt may have posted this on {attempt.platform}, and {lookups} "
        f"lookups could not confirm either way (last: {why}). Check {attempt.platform} for a post of "
        f"this delivery ({attempt.taken.id}){since}: if it is there, nothing is missing; if not, "
        f"retry the post (POST /v1/posts/{attempt.post_id}/retry), which looks it up again before posting"
    )
    return attempt.fail(reason, ErrorClass.AMBIGUOUS, still_uncertain=True)


def _after_auth_error(attempt: Attempt, account: IntegrationAccount, exc: AuthError) -> Record:
    """The platform refused the token on publish: one forced refresh where that can help, else wait.

    OAuth 2 platforms invalidate access tokens before ``expiresAt`` (password change, session
    expiry: LinkedIn/Google 401); a still-valid refresh grant recovers without a human. Where no
    refresh can help (``exc.refreshable`` is False: a dead Graph token, a refused webhook secret
    or application password, a missing scope), or the token was itself refreshed moments ago and
    is still refused, or the refresh is refused too, the account must be reconnected.
    """
    attempt.forget_account()
    reason = exc.message
    if not exc.refreshable:
        return attempt.wait_for_auth(account, reason)
    refreshed_at = as_utc((account.metadata or {}).get("tokenRefreshedAt"))
    if refreshed_at is not None and utcnow() - refreshed_at < timedelta(seconds=AUTH_REFRESH_GUARD_SECONDS):
        return attempt.wait_for_auth(account, f"{reason}; refused again after a refresh")
    fresh = tokens.ensure_fresh(
        account, attempt.settings, force=True, on_revoked=auth.rejecter(attempt.forget_account)
    )
    if fresh.outcome in (tokens.Outcome.REFRESHED, tokens.Outcome.ALREADY_REFRESHED):
        log.info("token refused (%s); retrying at once with the refreshed token", reason)
        return attempt.defer(utcnow(), f"token refused, refreshed: {reason}", ErrorClass.AUTH)
    if fresh.outcome is tokens.Outcome.REVOKED:
        return attempt.wait_for_auth(fresh.account or account, fresh.reason or reason)
    if fresh.outcome is tokens.Outcome.FAILED:  # the token endpoint refused for good: no new token
        return attempt.wait_for_auth(account, f"{reason}; the refresh failed too: {fresh.reason}")
    # Refresh endpoint unavailable: an ordinary retry, bounded by max_attempts.
    return attempt.retry(
        f"token refused and refresh unavailable: {fresh.reason or reason}", ErrorClass.AUTH, None
    )


def _record_block(attempt: Attempt, exc: RateLimitedError, account_id: str) -> datetime:
    """Block the scope for every worker, then this delivery's turn after it (spread, not all at once)."""
    try:
        rate_limit.throttled(attempt.platform, exc.scope, account_id, exc.retry_after if exc.hinted else None)
        slot = preflight.admit(attempt.settings, attempt.platform, account_id, str(attempt.taken.id))
    except Exception as err:  # best effort; the delivery is deferred regardless
        log.warning("could not record rate limit (%s)", type(err).__name__)
        return exc.until
    return slot.at or exc.until


__all__ = [
    "Attempt",
    "Outcome",
    "PostContent",
    "Record",
    "after_moves",
    "commit",
    "publish_delivery",
    "run_attempt",
]
