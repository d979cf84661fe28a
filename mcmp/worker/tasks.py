"""Celery tasks: thin wrappers (ids in, one call to a plain function, nothing secret out).

Every task is idempotent, so re-sending one from Flower or the admin API is always safe.

Flower is the operator's view of these tasks, so a task's state says what happened to the work,
not merely that the code ran: ``mcmp.publish_delivery`` ends **FAILURE** (with the reason) when
its delivery is failed, **RETRY** when the attempt will be retried later (the retry itself is a
due time in MongoDB, sent again by the dispatcher — Celery does not re-send it), and **SUCCESS**
otherwise. Its kwargs carry ``post_id`` and ``platform`` so the task list can be searched by
them. Periodic maintenance sends no task events (it would bury the publish tasks); its work and
failures are in the worker's log.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery.exceptions import Retry

from mcmp.errors import PublisherError
from mcmp.worker.app import app

if TYPE_CHECKING:
    from mcmp.worker.scheduling.dispatcher import Dispatcher


class DeliveryFailed(PublisherError):
    """The delivery is failed for good; the message names post, platform and the reason."""


class DeliveryRetrying(PublisherError):
    """The attempt failed and the delivery will be tried again at its next due time."""


class RetryRefused(PublisherError):
    """``mcmp.retry_post`` changed nothing; the message says why (nothing failed, post invalid…)."""


@app.task(
    name="mcmp.publish_delivery",
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(DeliveryFailed,),  # an expected outcome: logged as one line, without a traceback
)
def publish_delivery(
    delivery_id: str,
    claim: dict[str, str] | None = None,
    post_id: str | None = None,
    platform: str | None = None,
    lane: str | None = None,
) -> str:
    """Publish one (post, platform) delivery; a no-op if it is already done or in flight.

    ``claim`` (claim token, post id, platform, due time — no secrets) lets a first attempt start
    with one write; a stale or re-sent hint is ignored safely. ``post_id`` and ``platform`` only
    label the task for operators (the delivery id decides what is published; a batch sends one
    per failed delivery, so Flower lists each failure by post and platform). ``lane`` is
    ``publish-long`` for a delivery moved or sent to the long lane (``publishing/lanes.py``).
    """
    from mcmp.worker.publishing.delivery_states import deliveries
    from mcmp.worker.publishing.pipeline import Outcome
    from mcmp.worker.publishing.pipeline import publish_delivery as run

    outcome = run(delivery_id, claim, lane=lane or "publish")
    if outcome not in (Outcome.FAILED, Outcome.RETRY, Outcome.NOT_AVAILABLE):
        return str(outcome)
    from bson import ObjectId

    doc = deliveries().find_one(
        {"_id": ObjectId(delivery_id)},
        {"state": 1, "postId": 1, "platform": 1, "lastError": 1, "attempt": 1, "dueAt": 1},
    )
    if doc is None:
        return str(outcome)
    what = f"{doc.get('platform')} post {doc.get('postId')}"
    if doc.get("state") == "failed":
        raise DeliveryFailed(f"{what} failed: {doc.get('lastError') or 'no reason recorded'}")
    if outcome is Outcome.RETRY and doc.get("state") == "pending":
        due = doc.get("dueAt")
        message = f"{what}: attempt {doc.get('attempt')} failed, retrying: {doc.get('lastError')}"
        raise Retry(message, DeliveryRetrying(message), when=due if isinstance(due, datetime) else None)
    return str(outcome)


@app.task(name="mcmp.retry_post", throws=(RetryRefused,))
def retry_post(post_id: str, platform: str | None = None) -> dict[str, Any]:
    """Retry a post's failed platforms (or one): exactly what the admin API's retry does.

    The post is checked first as every attempt checks it (a post that would fail again is
    refused and nothing is re-opened); then its failed/cancelled deliveries are due now and the
    post is ``scheduled`` again, with a ``statusHistory`` entry noted "retried from Flower".
    Published platforms are never re-published. Ends FAILURE with the reason when refused.
    """
    from mcmp.worker import services

    try:
        result = services.retry(post_id, {}, platform=platform, note=services.FLOWER_RETRY_NOTE)
    except services.OperationError as exc:
        raise RetryRefused(exc.message) from None
    return {"postId": result.post_id, "status": result.status, "platforms": result.platforms}


@app.task(name="mcmp.publish_batch", acks_late=True, reject_on_worker_lost=True)
def publish_batch(
    delivery_ids: list[str], claim: dict[str, Any] | None = None, lane: str | None = None
) -> dict[str, int]:
    """Publish a dispatcher batch of first attempts (ids, times and the claim token only).

    Each delivery that ends ``failed`` gets its own ``mcmp.publish_delivery`` message (ids only),
    so an operator finds and retries it one by one in Flower.
    """
    from mcmp.worker.publishing.batch import publish_batch as run

    def failed(taken: Any) -> None:
        # By name with a list, as the dispatcher and the long lane send it: Flower shows every
        # publish_delivery's arguments alike (``['<delivery id>']``) to the operator who retries it.
        app.send_task(
            publish_delivery.name,
            args=[str(taken.id)],
            kwargs={"post_id": taken.post_id, "platform": taken.platform},
        )

    return run(delivery_ids, claim, on_failed=failed, lane=lane or "publish")


@functools.cache
def _maintainer() -> Dispatcher:
    """One Dispatcher per worker process, so its slow full sweep keeps its own interval."""
    from mcmp.worker.scheduling.dispatcher import Dispatcher

    return Dispatcher()


@app.task(name="mcmp.maintenance.reap", send_events=False)
def reap() -> dict[str, int]:
    """Recover expired leases, fail unschedulable posts, resume reconnected accounts."""
    return _maintainer().maintenance()


@app.task(name="mcmp.maintenance.queue_posts", send_events=False)
def queue_posts() -> int:
    """Give approved posts flagged ``queue: true`` their client's next free posting-window slot."""
    from mcmp.worker.scheduling.posting_windows import queue_flagged_posts

    return queue_flagged_posts()


@app.task(name="mcmp.tokens.refresh_account", acks_late=True)
def refresh_account(account_id: str, force: bool = True) -> str:
    """Refresh one account's token now (single-flight); returns the outcome, never a token.

    Sent by the admin API (``force``: even when not due) and by ``refresh_due`` (only if due).
    """
    from mcmp.worker.accounts.tokens import refresh_account as run
    from mcmp.worker.publishing.auth import token_rejected

    def rejected(account: Any, reason: str) -> bool:  # the grant was refused: same end as a publish
        return not token_rejected(account, reason).reconnected

    return run(account_id, force=force, on_revoked=rejected)


@app.task(name="mcmp.tokens.refresh_due", send_events=False)
def refresh_due() -> int:
    """Queue a refresh for every connected account inside its platform's refresh margin."""
    from mcmp.worker.accounts.tokens import enqueue_due

    return enqueue_due(
        lambda account_id: refresh_account.apply_async(args=(account_id,), kwargs={"force": False})
    )


@app.task(name="mcmp.analytics.plan", send_events=False)
def analytics_plan() -> int:
    """Send a snapshot task per account for every delivery whose analytics slot is due."""
    from mcmp.worker.analytics.snapshots import plan_due

    return plan_due(
        lambda client_id, platform, ids: snapshot_batch.apply_async(args=(client_id, platform, ids))
    )


@app.task(name="mcmp.analytics.snapshot_batch", acks_late=True, reject_on_worker_lost=True)
def snapshot_batch(client_id: str, platform: str, delivery_ids: list[str]) -> dict[str, int]:
    """Snapshot one account's due deliveries (one record per slot, however often it runs)."""
    from mcmp.worker.analytics.snapshots import snapshot_batch as run

    return run(client_id, platform, delivery_ids)


@app.task(name="mcmp.analytics.backfill", acks_late=True, reject_on_worker_lost=True)
def analytics_backfill(job_id: str) -> dict[str, object]:
    """Run (or continue) a backfill job started by the admin API; same code as the CLI."""
    from mcmp.worker.analytics.backfill import run_job

    return run_job(job_id).as_dict()


@functools.cache
def _readiness() -> Any:
    """One readiness runner per worker process (its Redis client and scripts are reused)."""
    from mcmp.worker.readiness.scan import Readiness

    return Readiness()


@app.task(name="mcmp.readiness.pass", send_events=False, ignore_result=True)
def readiness_pass() -> dict[str, int]:
    """Check the future posts that changed (or whose account, campaign or client did); publish nothing."""
    stats = _readiness().run()
    return {"marked": stats.marked, "checked": stats.checked, "written": stats.written}
