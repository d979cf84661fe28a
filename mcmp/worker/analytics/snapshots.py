"""Scheduled metrics snapshots of published deliveries (docs/analytics.md).

Flow::

    delivery_states.complete ── sets analyticsDueAt = publishedAt + first slot
    beat: mcmp.analytics.plan (every MCMP_ANALYTICS_PLAN_INTERVAL_SECONDS)
        ── resume paused accounts that are connected again
        ── read due deliveries (sparse index on analyticsDueAt), group per (client, platform)
        ── send mcmp.analytics.snapshot_batch(client_id, platform, [delivery ids]) — ids only
    worker (queue ``analytics``): snapshot_batch
        ── account expired/missing → pause (analyticsDueAt = ANALYTICS_PAUSED), no request
        ── chunks of MCMP_ANALYTICS_BATCH_SIZE posts, each paced (mcmp/worker/analytics/pacing.py),
           one connector.fetch_metrics call (Graph batch / LinkedIn List(...) / GBP multi-post)
        ── insert_many(ordered=False) of one AnalyticsRecord per (post, platform, slot): the
           partial unique index turns a retried or duplicated task into a no-op, never a 2nd record
        ── advance analyticsDueAt to the next slot (conditional on the due time read), or stop:
           deleted on the platform → analyticsStoppedReason, no further requests.

Record first, advance second: a crash in between re-fetches the slot and the duplicate insert
is ignored. Two beats or a re-sent task only cost platform calls, deduplicated cheaply by a
Redis ``SET NX`` per (delivery, due time) when planning.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

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
from mcmp.connectors.types import Credentials, MetricsRef, MetricsSnapshot
from mcmp.models import AccountStatus
from mcmp.models.analytics_record import AnalyticsRecordDoc, analytics_records
from mcmp.models.base import as_utc, utcnow
from mcmp.models.delivery import ANALYTICS_PAUSED, DeliveryDoc
from mcmp.models.delivery import deliveries as typed_deliveries
from mcmp.worker import rate_limit
from mcmp.worker.accounts import store as accounts
from mcmp.worker.analytics import pacing as analytics_pacing
from mcmp.worker.analytics.slots import Slot, due_index, first_due, next_due, parse_slots

log = logging.getLogger(__name__)

SNAPSHOT_TASK = "mcmp.analytics.snapshot_batch"
PLAN_TASK = "mcmp.analytics.plan"
SEED_METRICS = ("impressions", "reach", "clicks", "likes", "comments", "shares", "saves")
TASK_IDS = 200  # deliveries per snapshot task (the task chunks them further per request)
DELETED_REASON = "deleted on the platform"


@lru_cache(maxsize=8)
def _slots(labels: tuple[str, ...]) -> tuple[Slot, ...]:
    return parse_slots(labels)


def slots(settings: Settings | None = None) -> tuple[Slot, ...]:
    return _slots(tuple((settings or get_settings()).analytics_slots))


def first_snapshot_due(published_at: datetime) -> datetime:
    """When a delivery published at ``published_at`` gets its first snapshot."""
    return first_due(as_utc(published_at) or utcnow(), slots())


def records() -> Collection[AnalyticsRecordDoc]:
    return analytics_records()


def deliveries() -> Collection[DeliveryDoc]:
    return typed_deliveries()


# --- fetching and recording (shared with the backfill) ---------------------------------------------
@dataclass(frozen=True)
class Target:
    """One (post, platform) to snapshot now, for the slot ``slots[index]``."""

    post_id: str
    client_id: str
    platform: str
    platform_post_id: str
    published_at: datetime
    index: int
    delivery_id: ObjectId | None = None
    due_at: datetime | None = None  # analyticsDueAt as read (conditional advance)


@dataclass
class Chunk:
    targets: list[Target]
    inserted: int = 0
    duplicates: int = 0
    deleted: list[Target] = field(default_factory=list)
    calls: int = 0


class BudgetUnavailable(Exception):
    """The shared request budget is not available within the allowed wait: give the work back."""


def metrics_cost(connector: Connector, credentials: Credentials, count: int) -> int:
    """Platform calls one ``fetch_metrics`` of ``count`` posts costs (the connector's hook; default 2/post)."""
    return int(connector.metrics_cost(credentials, count))


def chunk_size(connector: Connector, credentials: Credentials, settings: Settings, burst: int) -> int:
    """Posts per request: the configured batch, shrunk until one request fits in the burst."""
    size = settings.analytics_batch_size
    while size > 1 and metrics_cost(connector, credentials, size) > burst:
        size = max(1, size // 2)
    return size


def record_doc(target: Target, slot: Slot, snapshot: MetricsSnapshot, now: datetime) -> AnalyticsRecordDoc:
    metrics = {k: int(v) for k, v in snapshot.metrics.items() if k in SEED_METRICS}
    return {
        "_id": ObjectId(),
        "clientId": target.client_id,
        "postId": target.post_id,
        "platform": target.platform,
        "slot": slot.label,
        "metrics": metrics,
        "fetchedAt": now,
        "createdAt": now,
        "updatedAt": now,
        "__v": 0,
    }


def insert_records(docs: Sequence[AnalyticsRecordDoc]) -> tuple[int, int]:
    """Insert, ignoring (postId, platform, slot) duplicates; returns (inserted, duplicates)."""
    if not docs:
        return 0, 0
    try:
        result = records().insert_many(list(docs), ordered=False)
        return len(result.inserted_ids), 0
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise
        return len(docs) - len(errors), len(errors)


def fetch_and_record(
    connector: Connector,
    credentials: Credentials,
    targets: Sequence[Target],
    settings: Settings,
    max_wait: float,
    on_calls: Callable[[int], None] | None = None,
) -> Iterator[Chunk]:
    """Fetch metrics chunk by chunk (paced) and record them; yields each chunk's outcome.

    Errors of the connector propagate (the caller decides: defer, pause, skip); chunks yielded
    before are durable. ``RateLimitedError`` is recorded as a shared block first.
    """
    all_slots = slots(settings)
    limits = analytics_pacing.budget(settings, connector.platform)
    size = chunk_size(connector, credentials, settings, limits.burst)
    for start in range(0, len(targets), size):
        part = list(targets[start : start + size])
        cost = metrics_cost(connector, credentials, len(part))
        if not analytics_pacing.acquire(connector.platform, credentials.account_id, cost, limits, max_wait):
            raise BudgetUnavailable(f"{connector.platform}: request budget not available within {max_wait}s")
        if on_calls:
            on_calls(cost)
        try:
            snapshots = connector.fetch_metrics(
                credentials, [MetricsRef(t.post_id, t.platform_post_id) for t in part]
            )
        except RateLimitedError as exc:
            try:
                rate_limit.block(connector.platform, exc.scope, credentials.account_id, exc.retry_after)
            except Exception as err:  # best effort: the platform keeps refusing anyway
                log.warning("could not record rate limit (%s)", type(err).__name__)
            raise
        by_id = {s.platform_post_id: s for s in snapshots}
        now = utcnow()
        chunk = Chunk(part, calls=cost)
        docs = []
        for target in part:
            snap = by_id.get(target.platform_post_id)
            if snap is None:
                continue
            if snap.deleted:
                chunk.deleted.append(target)
                continue
            docs.append(record_doc(target, all_slots[target.index], snap, now))
        chunk.inserted, chunk.duplicates = insert_records(docs)
        yield chunk


# --- the schedule --------------------------------------------------------------------------------------
def _planned_key(delivery_id: object, due: datetime) -> str:
    return f"mcmp:an:planned:{delivery_id}:{int(due.timestamp() * 1000)}"


def plan_due(
    send: Callable[[str, str, list[str]], None],
    settings: Settings | None = None,
    now: datetime | None = None,
) -> int:
    """Send one snapshot task per (client, platform) group of due deliveries; returns deliveries sent."""
    settings = settings or get_settings()
    now = now or utcnow()
    resume_paused(now)
    docs = [
        (doc, due)
        for doc in deliveries()
        .find({"analyticsDueAt": {"$lte": now}}, {"clientId": 1, "platform": 1, "analyticsDueAt": 1})
        .sort("analyticsDueAt", 1)
        .limit(settings.analytics_plan_limit)
        if (due := as_utc(doc.get("analyticsDueAt"))) is not None
    ]
    if not docs:
        return 0
    ttl = max(60, settings.task_time_limit_seconds)
    pipe = rate_limit.client().pipeline(transaction=False)
    for doc, due in docs:
        pipe.set(_planned_key(doc["_id"], due), "1", nx=True, ex=ttl)
    fresh = [doc for (doc, _), won in zip(docs, pipe.execute(), strict=True) if won]
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for doc in fresh:
        groups[(doc["clientId"], doc["platform"])].append(str(doc["_id"]))
    sent = 0
    for (client_id, platform), ids in groups.items():
        for i in range(0, len(ids), TASK_IDS):
            send(client_id, platform, ids[i : i + TASK_IDS])
            sent += len(ids[i : i + TASK_IDS])
    if sent:
        log.info("analytics: planned %d due snapshots in %d account groups", sent, len(groups))
    return sent


def _release(targets: Sequence[Target]) -> None:
    """Let the next planning tick send these again (after a deferral or a transient error)."""
    keys = [_planned_key(t.delivery_id, t.due_at) for t in targets if t.due_at is not None]
    if keys:
        try:
            rate_limit.client().delete(*keys)
        except Exception as exc:  # the keys expire anyway
            log.warning("could not release planned snapshots (%s)", type(exc).__name__)


def _advance(targets: Sequence[Target], settings: Settings, note: str | None = None) -> None:
    all_slots = slots(settings)
    ops = []
    now = utcnow()
    for t in targets:
        nxt = next_due(t.published_at, t.index, all_slots)
        update: dict[str, Any] = {"$set": {"analyticsSlot": all_slots[t.index].label, "updatedAt": now}}
        if nxt is None:
            update["$unset"] = {"analyticsDueAt": ""}
        else:
            update["$set"]["analyticsDueAt"] = nxt
        if note:
            update["$set"]["analyticsLastError"] = note
        ops.append(UpdateOne({"_id": t.delivery_id, "analyticsDueAt": t.due_at}, update))
    if ops:
        deliveries().bulk_write(ops, ordered=False)


def stop(targets: Sequence[Target], reason: str) -> None:
    """No more snapshots for these deliveries (e.g. the post was deleted on the platform)."""
    ids = [t.delivery_id for t in targets if t.delivery_id is not None]
    if ids:
        now = utcnow()
        deliveries().update_many(
            {"_id": {"$in": ids}},
            {
                "$unset": {"analyticsDueAt": ""},
                "$set": {"analyticsStoppedReason": reason, "analyticsStoppedAt": now, "updatedAt": now},
            },
        )
        log.info("analytics stopped for %d deliveries: %s", len(ids), reason)


def pause(targets: Sequence[Target], client_id: str, platform: str, reason: str) -> None:
    """Account expired or missing: no requests until it is connected again (see resume_paused)."""
    ids = [t.delivery_id for t in targets if t.delivery_id is not None]
    if ids:
        deliveries().update_many(
            {"_id": {"$in": ids}},
            {
                "$set": {
                    "analyticsDueAt": ANALYTICS_PAUSED,
                    "analyticsPaused": f"{client_id}|{platform}",
                    "analyticsPausedReason": reason,
                    "updatedAt": utcnow(),
                },
            },
        )
        log.info("analytics paused for %d deliveries of %s/%s: %s", len(ids), client_id, platform, reason)


def resume_paused(now: datetime | None = None, limit: int = 10_000) -> int:
    """Paused snapshots of accounts that are connected again become due now."""
    keys = {
        key
        for doc in deliveries()
        .find({"analyticsDueAt": ANALYTICS_PAUSED}, {"analyticsPaused": 1})
        .limit(limit)
        if (key := doc.get("analyticsPaused"))
    }
    resumed = 0
    for key in keys:
        client_id, _, platform = key.partition("|")
        account = accounts.find_account(client_id, platform)
        if account is None or account.status != AccountStatus.CONNECTED.value:
            continue
        result = deliveries().update_many(
            {"analyticsDueAt": ANALYTICS_PAUSED, "analyticsPaused": key},
            {
                "$set": {"analyticsDueAt": now or utcnow(), "updatedAt": utcnow()},
                "$unset": {"analyticsPaused": "", "analyticsPausedReason": ""},
            },
        )
        resumed += result.modified_count
        log.info("analytics resumed for %d deliveries of %s/%s", result.modified_count, client_id, platform)
    return resumed


def _targets(client_id: str, platform: str, delivery_ids: Sequence[str], now: datetime) -> list[Target]:
    all_slots = slots()
    oids = [ObjectId(i) for i in delivery_ids if ObjectId.is_valid(i)]
    found = []
    for doc in deliveries().find(
        {"_id": {"$in": oids}, "analyticsDueAt": {"$lte": now}},
        {
            "clientId": 1,
            "postId": 1,
            "platform": 1,
            "platformPostId": 1,
            "publishedAt": 1,
            "analyticsDueAt": 1,
        },
    ):
        if doc.get("clientId") != client_id or doc.get("platform") != platform:
            continue  # ids are checked against the tenant they were sent for
        published = as_utc(doc.get("publishedAt"))
        platform_post_id = doc.get("platformPostId")
        if published is None or not platform_post_id:
            continue
        index = due_index(published, now, all_slots)
        if index is None:
            continue
        found.append(
            Target(
                post_id=doc["postId"],
                client_id=client_id,
                platform=platform,
                platform_post_id=platform_post_id,
                published_at=published,
                index=index,
                delivery_id=doc["_id"],
                due_at=as_utc(doc["analyticsDueAt"]),
            )
        )
    return found


def snapshot_batch(
    client_id: str, platform: str, delivery_ids: Sequence[str], settings: Settings | None = None
) -> dict[str, int]:
    """Snapshot the due deliveries among ``delivery_ids`` of one account. Idempotent."""
    settings = settings or get_settings()
    counts = {"recorded": 0, "duplicates": 0, "deleted": 0, "paused": 0, "deferred": 0, "skipped": 0}
    targets = _targets(client_id, platform, delivery_ids, utcnow())
    if not targets:
        return counts
    account = accounts.find_account(client_id, platform)
    if account is None or account.status != AccountStatus.CONNECTED.value:
        reason = "no integration account" if account is None else f"account is {account.status}"
        pause(targets, client_id, platform, reason)
        counts["paused"] = len(targets)
        return counts
    try:
        connector = get_connector(platform)
    except UnknownPlatformError as exc:
        stop(targets, str(exc))
        return counts
    credentials = accounts.credentials_for(account)
    remaining = list(targets)
    try:
        for chunk in fetch_and_record(
            connector, credentials, targets, settings, settings.analytics_max_wait_seconds
        ):
            done = {id(t) for t in chunk.targets}
            remaining = [t for t in remaining if id(t) not in done]
            gone = {id(t) for t in chunk.deleted}
            if chunk.deleted:
                stop(chunk.deleted, DELETED_REASON)
            _advance([t for t in chunk.targets if id(t) not in gone], settings)
            counts["recorded"] += chunk.inserted
            counts["duplicates"] += chunk.duplicates
            counts["deleted"] += len(chunk.deleted)
    except AuthError as exc:
        accounts.mark_expired(account, exc.message)
        pause(remaining, client_id, platform, exc.message)
        counts["paused"] = len(remaining)
    except (BudgetUnavailable, RateLimitedError, RetryableError, AmbiguousError) as exc:
        log.info("analytics deferred for %d deliveries: %s", len(remaining), exc)
        _release(remaining)
        counts["deferred"] = len(remaining)
    except (PermanentError, ConnectorError) as exc:
        # The platform refuses these snapshots for good: skip this slot, keep the later ones.
        log.warning("analytics slot skipped for %d deliveries: %s", len(remaining), exc)
        _advance(remaining, settings, note=getattr(exc, "message", str(exc)))
        counts["skipped"] = len(remaining)
    return counts


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    if done <= 0 or elapsed <= 0:
        return None
    return max(0.0, (total - done) * elapsed / done)


__all__ = [
    "DELETED_REASON",
    "PLAN_TASK",
    "SNAPSHOT_TASK",
    "BudgetUnavailable",
    "Chunk",
    "Target",
    "eta_seconds",
    "fetch_and_record",
    "first_snapshot_due",
    "insert_records",
    "pause",
    "plan_due",
    "resume_paused",
    "slots",
    "snapshot_batch",
    "stop",
]
