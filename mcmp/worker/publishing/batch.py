"""Publishing a dispatcher's batch of deliveries with a few database commands, not a few per delivery.

The batch is taken with no write when its deliveries were born taken (one read, one start key
each in Redis), else with one ``update_many`` (a compare-and-swap per delivery on its claim token); one
query reads its posts, one its accounts; the platform calls run concurrently on a bounded pool
(started in due order, each no earlier than its own due time); the outcomes are written with one
bulk write (per-operation results: an outcome whose attempt no longer owns its delivery is
dropped, as one by one) and the posts with another. A slow delivery never holds the others: what
has finished after ``MCMP_BATCH_RECORD_AFTER_SECONDS`` is recorded and the task returns its
process to the lane; each straggler carries on on its own thread (having given its lane slot back,
``runners``) and records itself when it ends, still under its own attempt and its worker's liveness. Members that take
long move to the long lane before their platform call (``lanes``); the batch sends them on
together, and on that lane runs them on its own pool (``MCMP_LONG_LANE_CONCURRENCY``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from contextlib import ExitStack
from functools import lru_cache
from typing import Any

from bson import ObjectId

from mcmp.config import Settings, get_settings
from mcmp.models import IntegrationAccount
from mcmp.models.base import utcnow
from mcmp.models.delivery import DeliveryDoc
from mcmp.models.id_batches import find_in
from mcmp.worker import liveness, metrics
from mcmp.worker.accounts import cache as account_cache
from mcmp.worker.accounts import store as account_store
from mcmp.worker.logs import log_context
from mcmp.worker.publishing import delivery_states, lanes, post_status, runners
from mcmp.worker.publishing.delivery_states import Taken
from mcmp.worker.publishing.pipeline import (
    Attempt,
    Outcome,
    Record,
    after_commit,
    after_moves,
    commit,
    run_attempt,
)
from mcmp.worker.publishing.preflight import BatchAdmissions, PostDoc

log = logging.getLogger(__name__)
# A batch member never starts earlier than its due time, nor waits longer than this for it.
MAX_DUE_WAIT_SECONDS = 5.0


@lru_cache(maxsize=4)
def _pool(lane: str, size: int, release_after: float | None) -> runners.Lane:
    """One per lane and worker process: the bound holds across batches running at once."""
    return runners.Lane(lane, size, release_after)


def publish_batch(
    delivery_ids: Sequence[str],
    claim: Mapping[str, Any] | None,
    settings: Settings | None = None,
    on_failed: Callable[[Taken], None] | None = None,
    lane: str = lanes.FAST,
) -> dict[str, int]:
    """Run one attempt of each delivery of a dispatcher batch; returns a count per outcome.

    Deliveries not won (a re-sent copy or a single ``publish_delivery`` took them first, or they
    were reaped and claimed again) are left to whoever holds them. ``on_failed`` is told of each
    delivery that ended ``failed`` (the task sends a per-delivery message so Flower lists it).
    """
    settings = settings or get_settings()
    items = _items(delivery_ids, claim)
    token = str((claim or {}).get("token") or "")
    born = str((claim or {}).get("attempt") or "")  # created taken under this attempt id
    if not items or not (token or born):
        log.error("publish_batch: the claim is missing or garbled; each delivery is tried on its own")
        from mcmp.worker.publishing.pipeline import publish_delivery

        return _count(
            [publish_delivery(i, None, settings, lane) for i in delivery_ids if ObjectId.is_valid(i)]
        )
    if born:
        taken = delivery_states.start_born(items, born, settings.inflight_lease_seconds)
    else:
        taken = delivery_states.start_batch(items, token, settings.inflight_lease_seconds)
    if not taken:
        return {}
    posts = _posts(taken)
    accounts = _accounts(taken, posts, settings)
    token = lanes.new_token()  # the members this batch moves go on together
    in_order = sorted(taken, key=lambda t: t.scheduled_for or utcnow())
    admissions = BatchAdmissions(settings, _members_by_account(in_order, posts, accounts))
    # The long-lane marks of the batch's accounts in one read (a mark set while it runs is seen by
    # the next batch; a member slow here still moves on its own share, ``run_attempt``).
    marked = lanes.long_accounts(_account_key(t, posts) for t in in_order) if lane != lanes.LONG else set()
    attempts = [
        Attempt(
            t,
            settings,
            posts.get(t.post_id),
            t.uncertain,
            accounts.get(_account_key(t, posts)),
            lane=lane,
            handoff_token=token,
            admissions=admissions,
            marked_long=_account_key(t, posts) in marked,
        )
        for t in in_order
    ]
    if lane == lanes.LONG:
        pool = _pool(lane, settings.long_lane_concurrency, None)
    else:  # a slow member gives its slot back and carries on beside the lane (runners.py)
        pool = _pool(lane, settings.batch_concurrency, settings.long_delivery_seconds)
    with ExitStack() as running:
        for attempt_id in {t.attempt_id for t in taken}:
            running.enter_context(
                liveness.running(attempt_id, [t.id for t in taken if t.attempt_id == attempt_id])
            )
        futures: dict[Future[Record | None], Attempt] = {pool.submit(_run, a): a for a in attempts}
        done, stragglers = wait(futures, timeout=_record_after(attempts, settings))
        finished = [(r, futures[f]) for f in done if (r := f.result()) is not None]
        outcomes = _record(finished, on_failed)
        if stragglers:
            log.info("%d slow deliveries of the batch record their own outcome", len(stragglers))
        for f in stragglers:  # each straggler is written alone, as soon as it ends, on its thread
            f.add_done_callback(functools.partial(_record_later, attempt=futures[f], on_failed=on_failed))
    return _count(outcomes)


def _record_later(
    future: Future[Record | None], attempt: Attempt, on_failed: Callable[[Taken], None] | None
) -> None:
    """A straggler's outcome, written when it ends (the batch task has long returned its process)."""
    try:
        record = future.result()
        if record is not None:
            _record_one(record, attempt, on_failed)
    except Exception:  # its lease (kept while it ran) hands it on, as after a crash
        log.exception("could not record a slow delivery's outcome; its lease will hand it on")


def _items(delivery_ids: Sequence[str], claim: Mapping[str, Any] | None) -> list[delivery_states.BatchItem]:
    wanted = {str(i) for i in delivery_ids}
    entries = (claim or {}).get("items") or []
    parsed = [delivery_states.parse_batch_item(e) for e in entries if isinstance(e, list | tuple)]
    return [
        i for i in parsed if i is not None and i.delivery_id in wanted and ObjectId.is_valid(i.delivery_id)
    ]


def _posts(taken: Sequence[Taken]) -> dict[str, PostDoc]:
    """The batch's posts in one query (never hinted: a hint on ``_id`` makes ``$in`` scan, §11)."""
    ids = list({ObjectId(t.post_id) for t in taken if ObjectId.is_valid(t.post_id)})
    return {str(p["_id"]): p for p in find_in(post_status.posts(), "_id", ids)}


def _account_key(t: Taken, posts: Mapping[str, PostDoc]) -> tuple[str, str]:
    return str((posts.get(t.post_id) or {}).get("clientId") or ""), t.platform


def _accounts(
    taken: Sequence[Taken], posts: Mapping[str, PostDoc], settings: Settings
) -> dict[tuple[str, str], IntegrationAccount]:
    """Each (client, platform) account of the batch: from the process's cache, else one query."""
    cache = account_cache.for_ttl(settings.account_cache_seconds)
    found: dict[tuple[str, str], IntegrationAccount] = {}
    missing: set[tuple[str, str]] = set()
    for t in taken:
        key = _account_key(t, posts)
        cached = cache.get(*key)
        if cached is not None:
            found[key] = cached
        elif key[0]:
            missing.add(key)
    found.update(account_store.find_accounts(missing))
    return found


def _members_by_account(
    taken: Sequence[Taken],
    posts: Mapping[str, PostDoc],
    accounts: Mapping[tuple[str, str], IntegrationAccount],
) -> dict[tuple[str, str], list[str]]:
    """The batch's delivery ids per (platform, account id), in the order given: admitted together."""
    members: dict[tuple[str, str], list[str]] = {}
    for t in taken:
        account = accounts.get(_account_key(t, posts))
        if account is not None:
            members.setdefault((t.platform, str(account.pk)), []).append(str(t.id))
    return members


def _record_after(attempts: Sequence[Attempt], settings: Settings) -> float:
    last_due = max((a.taken.scheduled_for or utcnow() for a in attempts), default=utcnow())
    wait_for_due = min(MAX_DUE_WAIT_SECONDS, max(0.0, (last_due - utcnow()).total_seconds()))
    return wait_for_due + settings.batch_record_after_seconds


def _run(attempt: Attempt) -> Record | None:
    """One member: wait for its due time, then preflight and the platform call (nothing written).

    An unexpected error (the database unreachable mid-preflight, say) ends this member alone, as
    a crash would: it stays in flight, needing reconciliation, until its lease expires.
    """
    due = attempt.taken.scheduled_for
    if due is not None:
        delay = (due - utcnow()).total_seconds()
        if delay > 0:
            time.sleep(min(delay, MAX_DUE_WAIT_SECONDS))
    with (
        log_context(
            delivery_id=str(attempt.taken.id),
            post_id=attempt.post_id,
            platform=attempt.platform,
            attempt=attempt.taken.attempt,
        ),
        # its own liveness entry: a straggler outlives its batch task, and its lease is kept
        liveness.running(f"{attempt.taken.attempt_id}/run", [attempt.taken.id]),
    ):
        try:
            return run_attempt(attempt)
        except Exception:
            log.exception("attempt ended without an outcome; its lease will hand it on")
            return None


def _record(
    finished: list[tuple[Record, Attempt]], on_failed: Callable[[Taken], None] | None
) -> list[Outcome]:
    """The finished members' outcomes in one bulk write, then their posts in another."""
    if not finished:
        return []
    applied = delivery_states.apply_many([r.transition for r, _ in finished])
    outcomes: list[Outcome] = []
    settled: list[tuple[PostDoc, DeliveryDoc]] = []
    errors: dict[str, str] = {}
    moved: list[tuple[Record, str]] = []
    for (record, attempt), ok in zip(finished, applied, strict=True):
        if not ok:
            if record.settled is not None:
                log.warning(
                    "lost the lease before recording %s; the newer attempt will reconcile",
                    record.settled["platformPostId"],
                )
            outcomes.append(Outcome.LOST_LEASE)
            continue
        outcomes.append(record.outcome)
        if record.outcome is Outcome.MOVED:
            moved.append((record, attempt.client_id))
        elif record.settled is not None and attempt.post is not None:
            settled.append((attempt.post, record.settled))  # published: posts settled in bulk
            if record.counted:
                metrics.delivery_outcome(attempt.platform, record.outcome)
        elif record.settles:
            after_commit(record, attempt.post)  # failed: the post's other deliveries are read
        else:
            _note(record, attempt, errors)
        if record.outcome is Outcome.FAILED and on_failed is not None:
            on_failed(attempt.taken)
    post_status.sync_many(settled, errors)
    after_moves(moved, finished[0][1].settings)
    return outcomes


def _note(record: Record, attempt: Attempt, errors: dict[str, str]) -> None:
    if record.post_error:
        errors[attempt.post_id] = record.post_error
    if record.counted:
        metrics.delivery_outcome(attempt.platform, record.outcome)


def _record_one(record: Record, attempt: Attempt, on_failed: Callable[[Taken], None] | None) -> Outcome:
    outcome = commit(record, attempt.post)
    if outcome is Outcome.FAILED and on_failed is not None:
        on_failed(attempt.taken)
    return outcome


def _count(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.value] = counts.get(outcome.value, 0) + 1
    return counts


__all__ = ["publish_batch"]
