"""What an on-call operator needs to know now, read from the shared state (MongoDB and Redis).

Two readers: ``mcmp status`` (the whole :class:`Report`, with what needs attention) and the admin
API's ``/metrics``, whose gauges (``mcmp_deliveries_uncertain``, ``mcmp_accounts``,
``mcmp_analytics_snapshots_due``, ``mcmp_throttled_seconds``, ``mcmp_worker_processes_live`` …)
describe the whole fleet, so no single worker could export them. Every read rides an index:
active delivery states on ``(state, dueAt)``, snapshots on ``analyticsDueAt``, posts of the few
troubled accounts on ``clientId``. Labels stay low-cardinality: platform, status, reason, scope;
tenants and accounts are named only in ``mcmp status``, never as metric labels.

The thresholds below are the alert rules' (deploy/prometheus/alerts.yml), so the command and the
pages agree on what needs attention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from mcmp.models import AccountStatus, DeliveryState, IntegrationAccount, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.models.delivery import ANALYTICS_PAUSED
from mcmp.models.integration_account import integration_accounts
from mcmp.worker import fleet, rate_limit
from mcmp.worker.publishing import delivery_states, post_status

S = DeliveryState
# What needs attention (the alert rules use the same figures).
LATE_AFTER_SECONDS = 120.0  # oldest due delivery not started
DISPATCH_STALLED_AFTER_SECONDS = 30.0
UNCERTAIN_AFTER_SECONDS = 600.0
THROTTLED_AFTER_SECONDS = 1800.0
ANALYTICS_BEHIND_AFTER_SECONDS = 3600.0
EXPIRING_WITHIN = timedelta(hours=24)
FAILURE_WINDOW = timedelta(hours=1)
WAITING = (S.PENDING.value, S.QUEUED.value, S.WAITING_AUTH.value)


@dataclass(frozen=True)
class PlatformAge:
    """A count per platform and the age of its oldest member (seconds)."""

    platform: str
    count: int
    oldest_age_seconds: float


@dataclass(frozen=True)
class AccountAtRisk:
    client_id: str
    client: str  # the tenant's slug (its id when the client document is gone)
    platform: str
    account: str
    reason: str  # expired | error | expires_soon
    scheduled_posts: int


@dataclass(frozen=True)
class Failures:
    platform: str
    reason: str  # the delivery's errorClass
    failed: int  # failed for good in the window
    retrying: int  # failed and waiting for a retry
    example: str


@dataclass(frozen=True)
class ThrottleNow:
    platform: str
    scope: str
    client: str | None
    account: str | None
    seconds: float  # throttled without a pause for this long


@dataclass
class Report:
    at: datetime
    due_backlog: int = 0
    queued: int = 0
    in_flight: int = 0  # claimed for an attempt: waiting in the broker (born taken) or calling the platform
    retry_waiting: int = 0
    waiting_auth: int = 0
    oldest_due_age_seconds: float = 0.0
    worker_processes: int | None = None  # None: Redis did not answer
    dispatchers: int | None = None
    last_dispatch_tick_age_seconds: float | None = None
    failures: list[Failures] = field(default_factory=list)
    accounts_at_risk: list[AccountAtRisk] = field(default_factory=list)
    uncertain: list[PlatformAge] = field(default_factory=list)
    throttled: list[ThrottleNow] = field(default_factory=list)
    analytics_due: list[PlatformAge] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


# --- the reads --------------------------------------------------------------------------------


def uncertain_by_platform(now: datetime) -> list[PlatformAge]:
    """Deliveries awaiting reconciliation (an earlier attempt may have posted) that are not in flight.

    Age counts from the delivery's first pick-up: reconciliation normally follows within one
    retry backoff, so an old one means lookups keep failing (``LookupIncompleteError``).
    """
    rows: Iterable[Mapping[str, Any]] = delivery_states.deliveries().aggregate(  # groups
        [
            {"$match": {"state": {"$in": list(WAITING)}, "needsReconcile": True}},
            {
                "$group": {
                    "_id": "$platform",
                    "n": {"$sum": 1},
                    "first": {"$min": {"$ifNull": ["$firstTakenAt", "$updatedAt"]}},
                }
            },
        ]
    )
    return sorted(
        (PlatformAge(str(r["_id"]), int(r["n"]), _age(now, r.get("first"))) for r in rows),
        key=lambda p: p.platform,
    )


def analytics_due_by_platform(now: datetime) -> list[PlatformAge]:
    """Snapshot slots already due and not taken, per platform (paused accounts excluded)."""
    rows: Iterable[Mapping[str, Any]] = delivery_states.deliveries().aggregate(  # groups
        [
            {"$match": {"analyticsDueAt": {"$lte": now}}},
            {"$group": {"_id": "$platform", "n": {"$sum": 1}, "first": {"$min": "$analyticsDueAt"}}},
        ]
    )
    return sorted(
        (PlatformAge(str(r["_id"]), int(r["n"]), _age(now, r.get("first"))) for r in rows),
        key=lambda p: p.platform,
    )


def accounts_by_status() -> dict[tuple[str, str], int]:
    """Integration accounts per (platform, status): token health at a glance."""
    rows = IntegrationAccount._get_collection().aggregate(  # rows are groups, not accounts
        [{"$group": {"_id": {"p": "$platform", "s": "$status"}, "n": {"$sum": 1}}}]
    )
    return {(str(r["_id"].get("p")), str(r["_id"].get("s") or "connected")): int(r["n"]) for r in rows}


def accounts_at_risk(now: datetime) -> list[AccountAtRisk]:
    """Accounts that cannot publish (expired, error) or whose token ends within a day with no
    refresh token, that have scheduled posts on their platform."""
    accounts = integration_accounts()
    troubled = list(
        accounts.find(
            {
                "$or": [
                    {"status": {"$in": [AccountStatus.EXPIRED.value, AccountStatus.ERROR.value]}},
                    {
                        "expiresAt": {"$lte": now + EXPIRING_WITHIN},
                        "refreshToken": {"$in": [None, ""]},
                    },
                ]
            },
            {"clientId": 1, "platform": 1, "accountName": 1, "status": 1, "expiresAt": 1},
        )
    )
    if not troubled:
        return []
    clients = sorted({str(a.get("clientId")) for a in troubled})
    scheduled: dict[tuple[str, str], int] = {}
    rows: Iterable[Mapping[str, Any]] = post_status.posts().aggregate(  # groups, not posts
        [
            {"$match": {"clientId": {"$in": clients}, "status": PostStatus.SCHEDULED.value}},
            {"$unwind": "$platforms"},
            {"$group": {"_id": {"c": "$clientId", "p": "$platforms"}, "n": {"$sum": 1}}},
        ]
    )
    for row in rows:
        scheduled[(str(row["_id"]["c"]), str(row["_id"]["p"]))] = int(row["n"])
    slugs = _slugs(clients)
    found = []
    for account in troubled:
        client_id, platform = str(account.get("clientId")), str(account.get("platform"))
        posts = scheduled.get((client_id, platform), 0)
        if not posts:
            continue
        status = account.get("status")
        reason = (
            status if status in (AccountStatus.EXPIRED.value, AccountStatus.ERROR.value) else "expires_soon"
        )
        found.append(
            AccountAtRisk(
                client_id,
                slugs.get(client_id, client_id),
                platform,
                str(account.get("accountName") or account["_id"]),
                str(reason),
                posts,
            )
        )
    return sorted(found, key=lambda a: (a.platform, a.client, a.account))


def expired_with_scheduled_posts(at_risk: list[AccountAtRisk]) -> dict[str, int]:
    """Expired accounts that have scheduled posts, per platform (the alerting gauge)."""
    counts: dict[str, int] = {}
    for account in at_risk:
        if account.reason == AccountStatus.EXPIRED.value:
            counts[account.platform] = counts.get(account.platform, 0) + 1
    return counts


def failures_since(since: datetime) -> list[Failures]:
    """Deliveries that failed (for good, or awaiting a retry) since ``since``, per platform and errorClass.

    A delivery keeps its ``errorClass`` until an attempt succeeds, so one whose retry is already
    claimed or running (``queued``, ``in_flight``) still counts as retrying: the operator who
    looks while the dispatcher hands out retries must not see the failures vanish.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    coll = delivery_states.deliveries()
    retrying = [S.PENDING.value, S.QUEUED.value, S.IN_FLIGHT.value]
    for states, key in (([S.FAILED.value], "failed"), (retrying, "retrying")):
        query = {"state": {"$in": states}, "errorClass": {"$ne": None}, "updatedAt": {"$gte": since}}
        rows: Iterable[Mapping[str, Any]] = coll.aggregate(  # groups, not deliveries
            [
                {"$match": query},
                {"$sort": {"updatedAt": -1}},
                {
                    "$group": {
                        "_id": {"p": "$platform", "e": "$errorClass"},
                        "n": {"$sum": 1},
                        "example": {"$first": "$lastError"},
                    }
                },
            ]
        )
        for row in rows:
            group = groups.setdefault(
                (str(row["_id"]["p"]), str(row["_id"]["e"])), {"failed": 0, "retrying": 0, "example": ""}
            )
            group[key] += int(row["n"])
            group["example"] = group["example"] or str(row.get("example") or "")[:100]
    return [
        Failures(platform, reason, g["failed"], g["retrying"], g["example"])
        for (platform, reason), g in sorted(groups.items())
    ]


def throttles(now: datetime) -> list[ThrottleNow]:
    """Scopes blocked right now, longest throttled first, with the tenant and account named."""
    found = rate_limit.throttled_now()
    ids = [t.account_id for t in found if t.account_id and ObjectId.is_valid(t.account_id)]
    names: dict[str, tuple[str, str]] = {}
    if ids:
        accounts = list(
            integration_accounts().find(
                {"_id": {"$in": [ObjectId(i) for i in ids]}}, {"clientId": 1, "accountName": 1}
            )
        )
        slugs = _slugs(sorted({str(a.get("clientId")) for a in accounts}))
        for a in accounts:
            client_id = str(a.get("clientId"))
            names[str(a["_id"])] = (slugs.get(client_id, client_id), str(a.get("accountName") or a["_id"]))
    return [
        ThrottleNow(
            t.platform,
            t.scope,
            names.get(t.account_id or "", (None, None))[0],
            names.get(t.account_id or "", (None, t.account_id))[1],
            _age(now, t.since),
        )
        for t in found
    ]


def throttled_seconds(found: list[ThrottleNow]) -> dict[tuple[str, str], float]:
    """The longest running throttle per (platform, scope): the alerting gauge."""
    longest: dict[tuple[str, str], float] = {}
    for t in found:
        key = (t.platform, t.scope)
        longest[key] = max(longest.get(key, 0.0), t.seconds)
    return longest


@dataclass
class Gauges:
    """The fleet-wide figures of ``/metrics`` (one read of each; None where Redis did not answer)."""

    uncertain: list[PlatformAge]
    analytics_due: list[PlatformAge]
    accounts: dict[tuple[str, str], int]
    expired_with_scheduled_posts: dict[str, int]
    fleet: fleet.Fleet | None
    throttled: dict[tuple[str, str], float] | None


def gauges(now: datetime | None = None) -> Gauges:
    now = now or utcnow()
    try:
        running: fleet.Fleet | None = fleet.fleet()
        throttled: dict[tuple[str, str], float] | None = throttled_seconds(throttles(now))
    except Exception:  # Redis down: the MongoDB figures are still served
        running, throttled = None, None
    return Gauges(
        uncertain=uncertain_by_platform(now),
        analytics_due=analytics_due_by_platform(now),
        accounts=accounts_by_status(),
        expired_with_scheduled_posts=expired_with_scheduled_posts(accounts_at_risk(now)),
        fleet=running,
        throttled=throttled,
    )


def report(now: datetime | None = None) -> Report:
    """Everything ``mcmp status`` shows, and what of it needs attention."""
    from mcmp.worker import services

    now = now or utcnow()
    counts = services.queue_counts({}, now)
    out = Report(
        at=now,
        due_backlog=counts.due_backlog,
        queued=counts.queued,
        in_flight=counts.in_flight,
        retry_waiting=counts.retry_waiting,
        waiting_auth=counts.waiting_auth,
        oldest_due_age_seconds=round(counts.oldest_due_age_seconds or 0.0, 1),
    )
    try:
        running = fleet.fleet()
        out.worker_processes, out.dispatchers = running.worker_processes, running.dispatchers
        age = running.last_tick_age(now.timestamp())
        out.last_dispatch_tick_age_seconds = None if age is None else round(age, 1)
        out.throttled = throttles(now)
    except Exception as exc:  # Redis down: say so, MongoDB's figures still help
        out.attention.append(f"Redis did not answer ({type(exc).__name__}): workers and dispatchers unknown")
    out.failures = failures_since(now - FAILURE_WINDOW)
    out.accounts_at_risk = accounts_at_risk(now)
    out.uncertain = uncertain_by_platform(now)
    out.analytics_due = analytics_due_by_platform(now)
    out.attention += _attention(out)
    return out


def _attention(r: Report) -> list[str]:
    notes = []
    if r.worker_processes == 0:
        notes.append("no live worker process: nothing is being published")
    if r.dispatchers is not None and (
        r.last_dispatch_tick_age_seconds is None
        or r.last_dispatch_tick_age_seconds > DISPATCH_STALLED_AFTER_SECONDS
    ):
        ago = r.last_dispatch_tick_age_seconds
        notes.append(
            "no dispatcher has ever ticked"
            if ago is None
            else f"no dispatcher tick for {ago:.0f}s: due posts are not handed to workers"
        )
    if r.oldest_due_age_seconds > LATE_AFTER_SECONDS:
        notes.append(f"posts are late: the oldest due delivery waits for {r.oldest_due_age_seconds:.0f}s")
    for f in r.failures:
        if f.failed and f.reason != "permanent":
            notes.append(f"{f.platform}: {f.failed} deliveries failed for good ({f.reason}) in the last hour")
    for a in r.accounts_at_risk:
        notes.append(
            f"{a.platform} account {a.account!r} of {a.client} is {a.reason.replace('_', ' ')} "
            f"with {a.scheduled_posts} scheduled posts"
        )
    for u in r.uncertain:
        if u.oldest_age_seconds > UNCERTAIN_AFTER_SECONDS:
            notes.append(
                f"{u.platform}: {u.count} deliveries await reconciliation, oldest {u.oldest_age_seconds / 60:.0f} min"
            )
    for t in r.throttled:
        if t.seconds > THROTTLED_AFTER_SECONDS:
            who = f"{t.account} of {t.client}" if t.client else (t.account or "the app")
            notes.append(f"{t.platform} {t.scope} throttled for {t.seconds / 60:.0f} min ({who})")
    for s in r.analytics_due:
        if s.oldest_age_seconds > ANALYTICS_BEHIND_AFTER_SECONDS:
            notes.append(
                f"{s.platform}: analytics snapshots behind by {s.oldest_age_seconds / 60:.0f} min ({s.count} due)"
            )
    return notes


def _age(now: datetime, then: datetime | None) -> float:
    moment = as_utc(then)
    if moment is None or moment >= ANALYTICS_PAUSED:
        return 0.0
    return round(max(0.0, (now - moment).total_seconds()), 1)


def _slugs(client_ids: list[str]) -> Mapping[str, str]:
    from mcmp.models.client import clients

    oids = [ObjectId(c) for c in client_ids if ObjectId.is_valid(c)]
    if not oids:
        return {}
    return {
        str(c["_id"]): str(c.get("slug") or c["_id"])
        for c in clients().find({"_id": {"$in": oids}}, {"slug": 1})
    }


__all__ = ["Gauges", "Report", "gauges", "report"]
