"""Analytics backfill: snapshot every published (post, platform) of a client, resumably.

What a backfill records: for each (post, platform) published in ``[since, until]``, one
AnalyticsRecord for the **latest schedule slot already reached** (mcmp/worker/analytics/slots.py),
unless that slot already has one. Platforms only report current totals, so earlier slots are
not invented. Hence the backfill is idempotent by construction: the work list is "eligible pairs
minus pairs whose slot record exists", so a second run after an interruption (Ctrl-C, SIGKILL,
a lost worker) continues where the first stopped and never redoes or duplicates a record (the
partial unique index on (postId, platform, slot) backs this up against concurrent runs).

Jobs live in ``analyticsbackfills`` (``_id, clientId, platform, since, until, status, done,
total, detail``); the CLI resumes the newest unfinished job with the same parameters, the admin
API starts one and the ``mcmp.analytics.backfill`` task runs it with :func:`run_job` — the same
code. Requests go through the shared pacer (mcmp/worker/analytics/pacing.py), so a backfill stays
inside the platforms' limits together with every worker's scheduled snapshots.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from bson import ObjectId
from pymongo.collection import Collection

from mcmp.config import Settings, get_settings
from mcmp.connectors.errors import AmbiguousError, AuthError, ConnectorError, RateLimitedError, RetryableError
from mcmp.connectors.protocol import Connector
from mcmp.connectors.registry import UnknownPlatformError, get_connector
from mcmp.connectors.types import Credentials
from mcmp.models import AccountStatus, Post
from mcmp.models.base import as_utc, utcnow
from mcmp.models.post import posts
from mcmp.worker.accounts import store as accounts
from mcmp.worker.analytics.slots import due_index
from mcmp.worker.analytics.snapshots import (
    DELETED_REASON,
    BudgetUnavailable,
    Target,
    deliveries,
    fetch_and_record,
    metrics_cost,
    records,
    slots,
)

log = logging.getLogger(__name__)

COLLECTION = "analyticsbackfills"
TASK = "mcmp.analytics.backfill"
POST_STATUSES = ("published", "failed", "scheduled")  # statuses a post with platform ids can have
MAX_UNIT_ATTEMPTS = 6
# The job document's progress is written at least this often while rows come in, and at once
# when a run ends, so a run killed with SIGKILL leaves a count at most this stale.
SAVE_EVERY_SECONDS = 2.0
Progress = Callable[["Summary"], None]


class BackfillJobDoc(TypedDict, total=False):
    """A backfill job as ``analyticsbackfills`` holds it (the worker's own collection)."""

    _id: ObjectId
    clientId: str
    since: datetime | None
    until: datetime | None
    platform: str | None
    status: str  # queued, running, done, incomplete, enqueue_failed
    done: int
    total: int | None
    detail: dict[str, float]  # the run's counts (recorded, doneBefore, deleted, …) and rate
    deletedKeys: list[str]  # "postId|platform" found deleted on the platform
    createdAt: datetime
    updatedAt: datetime


def jobs() -> Collection[BackfillJobDoc]:
    collection: Collection[BackfillJobDoc] = Post._get_collection().database[COLLECTION]
    return collection


@dataclass
class Summary:
    job_id: str
    total: int = 0  # eligible (post, platform) pairs
    done: int = 0  # pairs whose slot record exists (before + now) or that are settled (deleted)
    done_before: int = 0
    recorded: int = 0
    duplicates: int = 0
    deleted: int = 0
    skipped: int = 0  # account missing/expired, platform refused: left for a later run
    not_due: int = 0  # published too recently for the first slot
    calls: int = 0  # platform calls made (Graph batch sub-requests counted)
    seconds: float = 0.0
    status: str = "running"
    by_platform: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Rows per second over the whole run so far (rows arrive in jumps: a Graph batch is 25)."""
        return (self.recorded + self.duplicates + self.deleted) / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the whole run's rate; None until a row has come in."""
        left = max(0, self.total - self.done - self.skipped)
        if left == 0:
            return 0.0
        return left / self.rate if self.rate > 0 else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate"] = round(self.rate, 1)
        return data

    def line(self) -> str:
        return (
            f"backfill {self.job_id}: {self.status}, {self.done}/{self.total} rows "
            f"({self.recorded} recorded now, {self.done_before} done before, {self.deleted} deleted, "
            f"{self.skipped} skipped, {self.not_due} not due yet) in {self.seconds:.1f} s — "
            f"{self.rate:.0f} rows/s, {self.calls} platform calls"
        )


# --- jobs ----------------------------------------------------------------------------------------------
def _params(
    client_id: str, since: datetime | None, until: datetime | None, platform: str | None
) -> BackfillJobDoc:
    return {"clientId": client_id, "since": as_utc(since), "until": as_utc(until), "platform": platform}


def new_job(
    client_id: str, since: datetime | None, until: datetime | None = None, platform: str | None = None
) -> BackfillJobDoc:
    now = utcnow()
    job: BackfillJobDoc = {
        "_id": ObjectId(),
        "clientId": client_id,
        "since": as_utc(since),
        "until": as_utc(until),
        "platform": platform,
        "status": "queued",
        "done": 0,
        "total": None,
        "detail": {},
        "createdAt": now,
        "updatedAt": now,
    }
    jobs().insert_one(job)
    return job


def open_job(
    client_id: str, since: datetime | None, until: datetime | None = None, platform: str | None = None
) -> tuple[BackfillJobDoc, bool]:
    """The newest unfinished job with these parameters (resumed), else a new one."""
    found = jobs().find_one(
        {**_params(client_id, since, until, platform), "status": {"$ne": "done"}}, sort=[("createdAt", -1)]
    )
    if found is not None:
        return found, True
    return new_job(client_id, since, until, platform), False


def start_backfill(
    client_id: str,
    since: datetime | None,
    platform: str | None,
    until: datetime | None = None,
    send: Callable[[str], object] | None = None,
) -> BackfillJobDoc:
    """Admin API: record a job and send ``mcmp.analytics.backfill(job_id)``; returns the job."""
    job = new_job(client_id, since, until, platform)
    try:
        if send is not None:
            send(str(job["_id"]))
        else:
            from mcmp.worker.app import app

            app.send_task(TASK, args=[str(job["_id"])])
    except Exception:
        jobs().update_one({"_id": job["_id"]}, {"$set": {"status": "enqueue_failed", "updatedAt": utcnow()}})
        raise
    return job


def backfill_progress(job_id: str) -> BackfillJobDoc | None:
    if not ObjectId.is_valid(job_id):
        return None
    return jobs().find_one({"_id": ObjectId(job_id)})


# --- planning --------------------------------------------------------------------------------------
@dataclass
class Plan:
    todo: list[Target]
    total: int
    done_before: int
    not_due: int
    by_platform: dict[str, int]


def plan(job: BackfillJobDoc, now: datetime | None = None, settings: Settings | None = None) -> Plan:
    """Eligible pairs of the job and which of them still lack their slot record (3 queries)."""
    settings = settings or get_settings()
    now = now or utcnow()
    all_slots = slots(settings)
    client_id, platform = job["clientId"], job.get("platform")
    since, until = as_utc(job.get("since")), as_utc(job.get("until"))
    eligible: list[Target] = []
    not_due = 0
    cursor = posts().find(
        {"clientId": client_id, "status": {"$in": list(POST_STATUSES)}},
        {"platformPostIds": 1, "publishedAt": 1},
        batch_size=5000,
    )
    for post in cursor:
        ids = post.get("platformPostIds") or {}
        published_map = post.get("publishedAt") or {}
        for name, platform_post_id in ids.items():
            if name == "_id" or not isinstance(platform_post_id, str) or not platform_post_id:
                continue
            if platform and name != platform:
                continue
            published = published_map.get(name)
            if not isinstance(published, datetime):
                continue
            published = as_utc(published)
            assert published is not None
            if (since and published < since) or (until and published > until):
                continue
            index = due_index(published, now, all_slots)
            if index is None:
                not_due += 1
                continue
            eligible.append(Target(str(post["_id"]), client_id, name, platform_post_id, published, index))
    labels = [s.label for s in all_slots]
    have = {
        (r["postId"], r["platform"], r["slot"])
        for r in records().find(
            {"clientId": client_id, "slot": {"$in": labels}},
            {"postId": 1, "platform": 1, "slot": 1, "_id": 0},
        )
    }
    settled = set(job.get("deletedKeys") or [])
    todo = [
        t
        for t in eligible
        if (t.post_id, t.platform, all_slots[t.index].label) not in have
        and f"{t.post_id}|{t.platform}" not in settled
    ]
    by_platform: dict[str, int] = defaultdict(int)
    for t in todo:
        by_platform[t.platform] += 1
    return Plan(todo, len(eligible), len(eligible) - len(todo), not_due, dict(by_platform))


# --- running -----------------------------------------------------------------------------------------
Unit = tuple[Connector, Credentials, list[Target]]  # one metrics request: who, with what, for which posts


class _Run:
    """Shared state of one run: counters under a lock, the job document saved on a timer.

    Rows arrive in jumps and a run may wait minutes for a rate budget between two jumps, so
    progress is not written "on the next row" (a run killed while waiting would leave the rows
    it recorded uncounted) but every ``SAVE_EVERY_SECONDS`` by a ticker thread, which also calls
    ``progress`` so a display keeps showing the falling rate and growing ETA while nothing comes.
    """

    def __init__(self, job: BackfillJobDoc, summary: Summary, progress: Progress | None) -> None:
        self.job = job
        self.summary = summary
        self.progress = progress
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.saved: tuple[str, int, int] | None = None
        self._ticker_stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, value in counts.items():
                setattr(self.summary, key, getattr(self.summary, key) + value)
            self.summary.seconds = time.monotonic() - self.started
        if self.progress:
            self.progress(self.summary)

    def start_ticker(self) -> None:
        self._ticker = threading.Thread(target=self._tick, name="backfill-progress", daemon=True)
        self._ticker.start()

    def stop_ticker(self) -> None:
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)

    def _tick(self) -> None:
        while not self._ticker_stop.wait(SAVE_EVERY_SECONDS):
            with self.lock:
                self.summary.seconds = time.monotonic() - self.started
            try:
                self.save(only_if_changed=True)
            except Exception as exc:  # a MongoDB hiccup must not end the run; the next tick retries
                log.warning("backfill progress not saved: %s", type(exc).__name__)
            if self.progress:
                self.progress(self.summary)

    def save(self, status: str | None = None, only_if_changed: bool = False) -> None:
        with self.lock:
            if status:
                self.summary.status = status
            s = self.summary
            mark = (s.status, s.done, s.skipped)
            if only_if_changed and mark == self.saved:
                return
            self.saved = mark
            update = {
                "status": s.status,
                "done": s.done,
                "total": s.total,
                "detail": {
                    "recorded": s.recorded,
                    "doneBefore": s.done_before,
                    "deleted": s.deleted,
                    "skipped": s.skipped,
                    "notDue": s.not_due,
                    "calls": s.calls,
                    "seconds": round(s.seconds, 1),
                    "rowsPerSecond": round(s.rate, 1),
                },
                "updatedAt": utcnow(),
            }
        jobs().update_one({"_id": self.job["_id"]}, {"$set": update})


def _units(targets: Sequence[Target], settings: Settings, run: _Run) -> list[Unit]:
    """(connector, credentials, chunk) per request; pairs without a usable account are skipped."""
    from mcmp.worker.analytics.pacing import budget
    from mcmp.worker.analytics.snapshots import chunk_size

    by_platform: dict[str, list[Target]] = defaultdict(list)
    for t in targets:
        by_platform[t.platform].append(t)
    per_platform: list[list[Unit]] = []
    for platform, items in sorted(by_platform.items()):
        account = accounts.find_account(run.job["clientId"], platform)
        if account is None or account.status != AccountStatus.CONNECTED.value:
            why = "no integration account" if account is None else f"account is {account.status}"
            run.summary.problems.append(f"{platform}: {len(items)} skipped ({why}; run again once connected)")
            run.summary.skipped += len(items)
            continue
        try:
            connector = get_connector(platform)
        except UnknownPlatformError as exc:
            run.summary.problems.append(f"{platform}: {exc}")
            run.summary.skipped += len(items)
            continue
        credentials = accounts.credentials_for(account)
        size = chunk_size(connector, credentials, settings, budget(settings, platform).burst)
        per_platform.append(
            [(connector, credentials, items[i : i + size]) for i in range(0, len(items), size)]
        )
    # Round-robin across platforms: each has its own budget, so they progress side by side.
    return [unit for group in itertools.zip_longest(*per_platform) for unit in group if unit is not None]


def _run_unit(unit: Unit, settings: Settings, run: _Run, stop: threading.Event) -> None:
    connector, credentials, chunk_targets = unit
    for attempt in range(1, MAX_UNIT_ATTEMPTS + 1):
        if stop.is_set():
            return
        try:
            for chunk in fetch_and_record(connector, credentials, chunk_targets, settings, max_wait=3600.0):
                if chunk.deleted:
                    _settle_deleted(run.job, chunk.deleted)
                run.add(
                    done=chunk.inserted + chunk.duplicates + len(chunk.deleted),
                    recorded=chunk.inserted,
                    duplicates=chunk.duplicates,
                    deleted=len(chunk.deleted),
                    calls=chunk.calls,
                )
            return
        except AuthError as exc:
            account = accounts.find_account(run.job["clientId"], connector.platform)
            if account is not None:
                accounts.mark_expired(account, exc.message)
            run.summary.problems.append(f"{connector.platform}: account must be reconnected ({exc.message})")
            break
        except (RateLimitedError, RetryableError, AmbiguousError, BudgetUnavailable) as exc:
            wait = getattr(exc, "retry_after", None) or min(30.0, 2.0**attempt)
            log.info("backfill chunk retry %d in %.1fs: %s", attempt, wait, exc)
            stop.wait(min(wait, 60.0))
        except ConnectorError as exc:
            run.summary.problems.append(f"{connector.platform}: {exc.message}")
            break
    run.add(skipped=len(chunk_targets))


def _settle_deleted(job: BackfillJobDoc, targets: Sequence[Target]) -> None:
    """Remember deleted pairs on the job (a resumed run does not ask again) and stop their schedule."""
    jobs().update_one(
        {"_id": job["_id"]},
        {"$addToSet": {"deletedKeys": {"$each": [f"{t.post_id}|{t.platform}" for t in targets]}}},
    )
    now = utcnow()
    by_platform: dict[str, list[str]] = defaultdict(list)
    for t in targets:
        by_platform[t.platform].append(t.post_id)
    for platform, post_ids in by_platform.items():
        deliveries().update_many(
            {"postId": {"$in": post_ids}, "platform": platform},
            {
                "$unset": {"analyticsDueAt": ""},
                "$set": {"analyticsStoppedReason": DELETED_REASON, "analyticsStoppedAt": now},
            },
        )


def run_job(
    job_id: str | ObjectId,
    concurrency: int | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Summary], None] | None = None,
    settings: Settings | None = None,
) -> Summary:
    """Run (or continue) a job to the end; KeyboardInterrupt leaves it resumable."""
    settings = settings or get_settings()
    job = jobs().find_one({"_id": ObjectId(str(job_id))})
    if job is None:
        raise LookupError(f"no backfill job {job_id}")
    work = plan(job, settings=settings)
    summary = Summary(
        str(job["_id"]),
        total=work.total,
        done=work.done_before,
        done_before=work.done_before,
        not_due=work.not_due,
        by_platform=work.by_platform,
    )
    run = _Run(job, summary, progress)
    run.save("running")
    if on_plan:
        on_plan(summary)
    units = _units(work.todo, settings, run)
    stop = threading.Event()
    workers = concurrency or settings.analytics_backfill_concurrency
    run.start_ticker()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill") as pool:
            futures = [pool.submit(_run_unit, unit, settings, run, stop) for unit in units]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
    except KeyboardInterrupt:
        run.stop_ticker()
        summary.seconds = time.monotonic() - run.started
        run.save("interrupted")
        raise
    finally:
        run.stop_ticker()
    summary.seconds = time.monotonic() - run.started
    complete = summary.done >= summary.total and summary.skipped == 0
    run.save("done" if complete else "incomplete")
    log.info(summary.line())
    return summary


def dry_run(job_params: BackfillJobDoc, settings: Settings | None = None) -> tuple[Plan, dict[str, int]]:
    """What a run would do: the plan and the platform calls it would need, per platform."""
    settings = settings or get_settings()
    work = plan({**job_params, "deletedKeys": []}, settings=settings)
    calls: dict[str, int] = {}
    for platform, count in work.by_platform.items():
        try:
            connector = get_connector(platform)
        except UnknownPlatformError:
            continue
        account = accounts.find_account(job_params["clientId"], platform)
        if account is None:
            continue
        calls[platform] = metrics_cost(connector, accounts.credentials_for(account), count)
    return work, calls


__all__ = [
    "COLLECTION",
    "TASK",
    "Plan",
    "Summary",
    "backfill_progress",
    "dry_run",
    "new_job",
    "open_job",
    "plan",
    "run_job",
    "start_backfill",
]
