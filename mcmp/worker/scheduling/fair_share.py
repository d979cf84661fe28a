"""Which due deliveries the dispatcher claims: round-robin across tenants, each under its cap.

Claiming in due order alone put a tenant's 10 posts behind another tenant's backlog of
thousands (and their slow sites). Here a claim pass reads the due page, skips tenants already at
``MCMP_TENANT_MAX_IN_FLIGHT`` deliveries queued or in flight (their rest waits in MongoDB, not in
the broker), and takes the others in turns: each tenant's earliest due first, then the next
tenant's, and within a tenant account after account (client × platform), so a batch message
holds a share of every tenant that is due. A tenant at its cap is left out of the next read of
the page, so a backlog of one never hides another's due posts from the dispatcher.

Reads only: the writes are ``delivery_states.claim_ids`` / ``unclaim``. Counting rides the
``(state, dueAt)`` index (queued and in-flight deliveries are bounded by the caps).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from mcmp.models import DeliveryState
from mcmp.worker.publishing.delivery_states import NewDelivery, deliveries

# Reads of the due page per claim pass: the first in due order, then without the tenants that
# filled up (a backlog of one tenant cannot hide the others for more than this many reads).
MAX_READS = 4


def in_flight_by_tenant() -> dict[str, int]:
    """Deliveries queued or in flight per tenant (clientId)."""
    rows = deliveries().aggregate(
        [
            {"$match": {"state": {"$in": [DeliveryState.QUEUED.value, DeliveryState.IN_FLIGHT.value]}}},
            {"$group": {"_id": "$clientId", "n": {"$sum": 1}}},
        ]
    )
    return {str(r["_id"]): int(r["n"]) for r in rows}


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


def choose_due(horizon: datetime, limit: int, cap: int) -> list[ObjectId]:
    """Pending deliveries due by ``horizon`` to claim now: at most ``limit``, fairly, under ``cap``."""
    counts = in_flight_by_tenant()
    room: dict[str, int] = defaultdict(lambda: cap)
    room.update({tenant: max(0, cap - n) for tenant, n in counts.items()})
    excluded = {tenant for tenant, left in room.items() if left <= 0}
    candidates: list[dict[str, Any]] = []
    seen: dict[str, int] = defaultdict(int)
    for _ in range(MAX_READS):
        query: dict[str, Any] = {"state": DeliveryState.PENDING.value, "dueAt": {"$lte": horizon}}
        if excluded:
            query["clientId"] = {"$nin": sorted(excluded)}
        if candidates:  # the next page: past what was read (due order; ties by id)
            last = candidates[-1]
            query["$or"] = [
                {"dueAt": {"$gt": last["dueAt"]}},
                {"dueAt": last["dueAt"], "_id": {"$gt": last["_id"]}},
            ]
        page = list(
            deliveries()
            .find(query, {"_id": 1, "clientId": 1, "platform": 1, "dueAt": 1})
            .sort([("dueAt", 1), ("_id", 1)])
            .limit(limit)
        )
        candidates += page
        for doc in page:
            tenant = str(doc.get("clientId") or "")
            seen[tenant] += 1
            if seen[tenant] >= room[tenant]:
                excluded.add(tenant)
        if len(page) < limit or sum(min(seen[t], room[t]) for t in seen) >= limit:
            break
    return interleave(candidates, room, limit)


def born_claimed(new: Sequence[NewDelivery], cap: int) -> set[int]:
    """Which of the dispatcher's new deliveries (indexes into ``new``) fit their tenant's cap now.

    Only these are born claimed; the rest are inserted pending and claimed fairly on a later pass.
    Born claimed and then handed back (``share_of``) would cost each of them two more writes, and
    exactly when the fleet is behind. The same turns as :func:`share_of` (account after account).
    """
    pending = [(i, d) for i, d in enumerate(new) if d.state is DeliveryState.PENDING]
    if not pending:
        return set()
    counts = in_flight_by_tenant()
    room = {d.client_id: max(0, cap - counts.get(d.client_id, 0)) for _, d in pending}
    candidates = [{"_id": i, "clientId": d.client_id, "platform": d.platform} for i, d in pending]
    return set(interleave(candidates, room, len(candidates)))


def share_of(claimed: Sequence[dict[str, Any]], cap: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Split deliveries just claimed (born queued) into those within each tenant's cap and the rest.

    ``claimed`` counts itself among the tenant's queued deliveries already; the rest is handed
    back (pending) and claimed fairly on a later pass.
    """
    if not claimed:
        return [], []
    counts = in_flight_by_tenant()
    mine: dict[str, int] = defaultdict(int)
    for doc in claimed:
        mine[str(doc.get("clientId") or "")] += 1
    room = {tenant: max(0, cap - (counts.get(tenant, n) - n)) for tenant, n in mine.items()}
    keep_ids = set(interleave(claimed, room, len(claimed)))
    order = {doc_id: i for i, doc_id in enumerate(interleave(claimed, room, len(claimed)))}
    keep = sorted((d for d in claimed if d["_id"] in keep_ids), key=lambda d: order[d["_id"]])
    rest = [d["_id"] for d in claimed if d["_id"] not in keep_ids]
    return keep, rest


__all__ = ["born_claimed", "choose_due", "in_flight_by_tenant", "interleave", "share_of"]
