"""Which due deliveries the dispatcher claims: round-robin across tenants, each under its cap.

Claiming in due order alone put a tenant's 10 posts behind another tenant's backlog of
thousands (and their slow sites). Here a claim pass reads the due page, skips tenants already at
``MCMP_TENANT_MAX_IN_FLIGHT`` deliveries due and unfinished (their rest waits in MongoDB, not in
the broker; a delivery queued ahead of its time counts only near its due time, see
:class:`InFlight`), and takes the others in turns: each tenant's earliest due first, then the next
tenant's, and within a tenant account after account (client × platform), so a batch message
holds a share of every tenant that is due. A tenant at its cap is left out of the next read of
the page, so a backlog of one never hides another's due posts from the dispatcher.

Reads only: the writes are ``delivery_states.claim_taken`` / ``unclaim``. Counting rides the
``(state, dueAt)`` index (queued and in-flight deliveries are bounded by the caps) and is done
once per dispatcher pass (:class:`InFlight`): the pass adds what it takes itself, so deciding
which new deliveries are born taken and which due ones to claim reads the counts once, not once
per decision (each count reads every queued and in-flight delivery: at 100 deliveries/s, three
counts a tick were ~10 reads of a delivery document per delivery published).

A read of the due page costs the server every due delivery in its index range, not the page:
SecantusDB materialises the whole range before it sorts and limits (~1 s of its CPU at 20,000
due, measured by ``bench/server_ops.py``). Under such a backlog, re-reading it for every pass
(four passes a second, up to ``MAX_READS`` reads each) is what starved the server and held a
burst's drain to ~20 deliveries/s. So one read keeps ``KEEP_PAGES`` pages of candidates and
later passes take their turns from them (what a pass takes re-checked by ``_id``: still pending
and due), until
``RESCAN_FACTOR`` times that read's duration has passed: a cheap read (the usual case) is
redone every pass, a costly one at most a fixed share of the time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from mcmp.models import DeliveryState
from mcmp.models.base import as_utc, utcnow
from mcmp.models.delivery import DeliveryDoc
from mcmp.models.id_batches import find_in
from mcmp.worker.publishing.delivery_states import NewDelivery, deliveries

# Reads of the due page per claim pass: the first in due order, then without the tenants that
# filled up (a backlog of one tenant cannot hide the others for more than this many reads).
MAX_READS = 4
# A due page read is served to later passes until this many times its own duration has passed.
RESCAN_FACTOR = 4.0
# What a delivery queued ahead counts against its tenant's cap: only when another of the tenant's
# is due within this many seconds after it (about one call's span; see ``InFlight``).
WINDOW_SECONDS = 1.0
BUCKET_MS = 100  # due times of queued deliveries ahead are counted in buckets this wide
# Pages of candidates one read keeps for the passes after it (each tenant up to this many caps).
KEEP_PAGES = 4
# Under a backlog the next read's window reaches this many times the due span the last one held.
WINDOW_SPANS = 2
MIN_SPAN = timedelta(seconds=1)


@dataclass(frozen=True)
class _Backlog:
    """Where the last read stopped short of its horizon: its last due time, and the due span it held."""

    edge: datetime
    span: timedelta


@dataclass
class _Kept:
    """Candidates of the last read (due order), what it cost, and where they were read."""

    source: tuple[str, int] = ("", 0)
    rows: list[DeliveryDoc] = field(default_factory=list)
    read_at: float = 0.0
    took: float = 0.0
    backlog: _Backlog | None = None

    def fresh(self, source: tuple[str, int]) -> bool:
        """Served from, unless used up (then read again at once, whatever the read cost)."""
        return (
            bool(self.rows)
            and source == self.source
            and time.monotonic() - self.read_at < RESCAN_FACTOR * self.took
        )


_kept = _Kept()
_kept_lock = threading.Lock()


class InFlight:
    """Each tenant's queued and in-flight deliveries for one dispatcher pass, counted when first
    asked and kept current with what the pass itself takes.

    A delivery queued ahead of its due time (born within the look-ahead) holds no worker until
    then, so it is not counted against every other: for a delivery due at ``t`` a tenant holds
    its deliveries already due and not finished, plus those due in the ``WINDOW_SECONDS`` before
    ``t`` (:meth:`at`). Counting every one the look-ahead had queued capped a steady tenant at
    ``cap / look-ahead`` deliveries a second (25/s by default) and sent the rest of a busy
    fleet's deliveries the costlier pending → claim path exactly when it was short of time.

    Deliveries that finish during the pass still count (the pass is conservative: it never
    gives a tenant more than its cap). Another dispatcher's claims in the same moment are not
    seen, as with any count-then-claim: two dispatchers may each fill a tenant's room once.
    """

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or utcnow()
        self._due: dict[str, int] | None = None
        self._ahead: dict[str, Counter[int]] = defaultdict(Counter)

    def due(self, tenant: str) -> int:
        """The tenant's deliveries due by now and not finished: they hold workers or wait for one."""
        return self._counted().get(tenant, 0)

    def due_counts(self) -> dict[str, int]:
        """:meth:`due` of every tenant that has any."""
        return dict(self._counted())

    def at(self, tenant: str, due_at: datetime) -> int:
        """What the tenant holds when a delivery of it due at ``due_at`` starts."""
        held = self.due(tenant)
        moment = _ms(due_at)
        if moment <= _ms(self._now):
            return held
        since = moment - int(WINDOW_SECONDS * 1000)
        return held + sum(n for bucket, n in self._ahead[tenant].items() if since < bucket <= moment)

    def took(self, tenant: str, due_at: datetime) -> None:
        """The pass took one delivery of ``tenant`` due at ``due_at`` (born taken or claimed)."""
        if self._due is None:
            return  # not counted yet: the count will see it
        if _ms(due_at) <= _ms(self._now):
            self._due[tenant] = self._due.get(tenant, 0) + 1
        else:
            self._ahead[tenant][_bucket(due_at)] += 1

    def _counted(self) -> dict[str, int]:
        if self._due is None:
            self._due = {}
            for row in in_flight_by_tenant(self._now):
                tenant, bucket = str(row["_id"]["c"]), row["_id"]["b"]
                if bucket is None:
                    self._due[tenant] = self._due.get(tenant, 0) + int(row["n"])
                else:
                    self._ahead[tenant][int(bucket)] += int(row["n"])
        return self._due


def in_flight_by_tenant(now: datetime) -> list[Mapping[str, Any]]:
    """Queued and in-flight deliveries per tenant (clientId): those due by ``now`` in one row
    (bucket ``None``), the rest per ``BUCKET_MS`` of due time (bucket = its first millisecond)."""
    due_ms: dict[str, Any] = {"$toLong": "$dueAt"}
    bucket = {"$subtract": [due_ms, {"$mod": [due_ms, BUCKET_MS]}]}
    return list(
        deliveries().aggregate(  # rows are groups, not deliveries
            [
                {"$match": {"state": {"$in": [DeliveryState.QUEUED.value, DeliveryState.IN_FLIGHT.value]}}},
                {
                    "$group": {
                        "_id": {"c": "$clientId", "b": {"$cond": [{"$lte": ["$dueAt", now]}, None, bucket]}},
                        "n": {"$sum": 1},
                    }
                },
            ]
        )
    )


def _ms(moment: datetime) -> int:
    return int((as_utc(moment) or moment).timestamp() * 1000)


def _bucket(moment: datetime) -> int:
    ms = _ms(moment)
    return ms - ms % BUCKET_MS


def admit(candidates: Sequence[Mapping[str, Any]], cap: int, load: InFlight, limit: int) -> list[Any]:
    """The ids of ``candidates`` (in turns) that fit their tenant's cap at their due time, at most
    ``limit``; each one admitted counts in ``load`` for the next."""
    admitted: list[Any] = []
    for doc in candidates:
        if len(admitted) >= limit:
            break
        tenant = str(doc.get("clientId") or "")
        if load.at(tenant, doc["dueAt"]) < cap:
            load.took(tenant, doc["dueAt"])
            admitted.append(doc["_id"])
    return admitted


def interleave(candidates: Sequence[Mapping[str, Any]], room: Mapping[str, int], limit: int) -> list[Any]:
    """The ids to claim from ``candidates`` (in due order): per tenant at most its room, in turns.

    Tenants take turns in the order of their earliest candidate; inside a tenant, its accounts
    (clientId × platform) take turns the same way. Pure, so the rule is tested on its own.
    """
    tenants: dict[str, dict[str, deque[Any]]] = {}
    for doc in candidates:
        tenant = str(doc.get("clientId") or "")
        accounts = tenants.setdefault(tenant, {})
        accounts.setdefault(str(doc.get("platform") or ""), deque()).append(doc["_id"])
    per_tenant: list[deque[Any]] = []
    for tenant, accounts in tenants.items():
        quota = max(0, room.get(tenant, limit))
        queues = list(accounts.values())
        taken: deque[Any] = deque()
        while len(taken) < quota and queues:
            for queue in list(queues):
                if len(taken) >= quota:
                    break
                taken.append(queue.popleft())
                if not queue:
                    queues.remove(queue)
        if taken:
            per_tenant.append(taken)
    chosen: list[Any] = []
    while per_tenant and len(chosen) < limit:
        for queue in list(per_tenant):
            if len(chosen) >= limit:
                break
            chosen.append(queue.popleft())
            if not queue:
                per_tenant.remove(queue)
    return chosen


def choose_due(horizon: datetime, limit: int, cap: int, load: InFlight | None = None) -> list[ObjectId]:
    """Pending deliveries due by ``horizon`` to claim now: at most ``limit``, fairly, under ``cap``."""
    load = load or InFlight()
    collection = deliveries()
    source = (collection.full_name, id(collection.database.client))
    with _kept_lock:
        room: dict[str, int] = defaultdict(lambda: cap)
        room.update({tenant: max(0, cap - n) for tenant, n in load.due_counts().items()})
        excluded = {tenant for tenant, left in room.items() if left <= 0}
        if not _kept.fresh(source):
            started = time.monotonic()
            keep: dict[str, int] = defaultdict(lambda: cap * KEEP_PAGES)
            keep.update({tenant: left * KEEP_PAGES for tenant, left in room.items()})
            backlog = _kept.backlog if _kept.source == source else None
            rows, _kept.backlog = _read_due(horizon, limit * KEEP_PAGES, keep, set(excluded), backlog)
            _kept.source, _kept.rows = source, rows
            _kept.read_at, _kept.took = time.monotonic(), time.monotonic() - started
            candidates, checked = rows, True
        else:
            candidates, checked = _kept.rows, False
        open_ = [c for c in candidates if str(c.get("clientId") or "") not in excluded]
        by_id = {c["_id"]: c for c in open_}
        turns = interleave(
            open_, {t: room[t] for t in {str(c.get("clientId") or "") for c in open_}}, len(open_)
        )
        chosen = admit([by_id[i] for i in turns], cap, load, limit)
        gone: set[Any] = set()
        if not checked and chosen:
            # Only what this pass would claim is re-checked, not every kept candidate: under a
            # backlog the pass takes a tenant's few free slots out of hundreds kept.
            still = {r["_id"] for r in _still_due([by_id[i] for i in chosen], horizon)}
            gone = set(chosen) - still
            chosen = [i for i in chosen if i in still]
        taken = set(chosen)
        _kept.rows = [c for c in candidates if c["_id"] not in taken and c["_id"] not in gone]
    return chosen


def _read_due(
    horizon: datetime,
    limit: int,
    room: Mapping[str, int],
    excluded: set[str],
    backlog: _Backlog | None = None,
) -> tuple[list[DeliveryDoc], _Backlog | None]:
    """The due page in due order, read again without the tenants that filled ``room`` (``MAX_READS``);
    and where a next read may stop (``None``: everything due was read).

    A next page starts at the last due time read, and the deliveries read already at that instant
    are dropped here: a ``$or`` (after it, or at it with a greater id) in the filter would make
    SecantusDB scan the whole collection, as any top-level operator does.

    Under a backlog (``backlog``: the last read stopped short of its horizon) the first page ends
    ``WINDOW_SPANS`` of the last read's due span past where it stopped. It has no lower bound, so
    it is still the earliest due in due order; a page that comes back short is read again up to
    the horizon, so nothing due is hidden from a tenant. SecantusDB materialises, sorts and limits
    every delivery in the range it is given, so the window is what keeps a read O(page) rather
    than O(backlog): at 25,000 deliveries due, 1.2 s of its CPU per read, windowed 55 ms
    (``bench/server_ops.py``).
    """
    candidates: list[DeliveryDoc] = []
    seen: dict[str, int] = defaultdict(int)
    upper = horizon if backlog is None else min(horizon, backlog.edge + WINDOW_SPANS * backlog.span)
    for _ in range(MAX_READS):
        query: dict[str, Any] = {"state": DeliveryState.PENDING.value, "dueAt": {"$lte": upper}}
        if excluded:
            query["clientId"] = {"$nin": sorted(excluded)}
        at_last: set[Any] = set()
        if candidates:  # the next page: from the last due time read (due order; ties by id)
            last_due = candidates[-1]["dueAt"]
            at_last = {c["_id"] for c in candidates if c["dueAt"] == last_due}
            query["dueAt"] = {"$gte": last_due, "$lte": upper}
        read = list(
            deliveries()
            .find(query, {"_id": 1, "clientId": 1, "platform": 1, "dueAt": 1})
            .sort([("dueAt", 1), ("_id", 1)])
            .limit(limit + len(at_last))
        )
        page = [d for d in read if d["_id"] not in at_last]
        candidates += page
        for doc in page:
            tenant = str(doc.get("clientId") or "")
            seen[tenant] += 1
            if seen[tenant] >= room[tenant]:
                excluded.add(tenant)
        if sum(min(seen[t], room[t]) for t in seen) >= limit:
            break
        if len(read) < limit + len(at_last):  # the window is read to its end
            if upper >= horizon:
                return candidates, None
            upper = horizon
    if not candidates:
        return candidates, None
    first, last = as_utc(candidates[0]["dueAt"]) or horizon, as_utc(candidates[-1]["dueAt"]) or horizon
    return candidates, _Backlog(last, max(MIN_SPAN, last - first))


def _still_due(rows: list[DeliveryDoc], horizon: datetime) -> list[DeliveryDoc]:
    """The kept candidates that are still pending and due: point reads by ``_id``, in their order.

    Another path may have taken one meanwhile (a single ``publish_delivery``, a second
    dispatcher) and deferred it: claiming it again before its new time would call early. The
    filter is ``_id`` alone, never hinted: SecantusDB serves that by key lookups, while a hint on
    ``_id_`` (or another field beside it) walks the collection.
    """
    if not rows:
        return []
    found = find_in(deliveries(), "_id", [r["_id"] for r in rows], None, {"_id": 1, "state": 1, "dueAt": 1})
    current = {d["_id"]: d for d in found if d.get("state") == DeliveryState.PENDING.value}
    return [r for r in rows if r["_id"] in current and current[r["_id"]]["dueAt"] <= horizon]


def born_claimed(new: Sequence[NewDelivery], cap: int, load: InFlight | None = None) -> set[int]:
    """Which of the dispatcher's new deliveries (indexes into ``new``) fit their tenant's cap at
    their due time; counted in ``load`` as taken.

    Only these are born claimed; the rest are inserted pending and claimed fairly on a later pass
    (born claimed and then handed back would cost each of them two more writes, and exactly when
    the fleet is behind). The same turns as a claim (account after account).
    """
    pending = [(i, d) for i, d in enumerate(new) if d.state is DeliveryState.PENDING]
    if not pending:
        return set()
    candidates = [
        {"_id": i, "clientId": d.client_id, "platform": d.platform, "dueAt": d.due_at} for i, d in pending
    ]
    by_index = {c["_id"]: c for c in candidates}
    turns = interleave(candidates, {}, len(candidates))
    return set(admit([by_index[i] for i in turns], cap, load or InFlight(), len(candidates)))


__all__ = ["InFlight", "admit", "born_claimed", "choose_due", "in_flight_by_tenant", "interleave"]
