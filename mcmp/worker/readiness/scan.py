"""The readiness pass: find what changed, check it fairly across tenants, write the verdicts.

Cost is O(changed), never a pass over every future post:

* **Changed posts**: an indexed scan of ``posts.updatedAt`` (Mongoose timestamps) after a cursor
  kept in Redis. Each pass starts ``MCMP_READINESS_SCAN_OVERLAP_SECONDS`` before the cursor, so a
  write whose ``updatedAt`` came from a clock a little behind is not missed; a post whose stored
  verdict already judged that ``updatedAt`` is skipped without a write.
* **Changed accounts, campaigns, clients**: the same scan on their ``updatedAt``; each change
  marks the future posts it touches (an account: its client's posts on its platform).
* **Lead time**: scheduled posts entering ``now + MCMP_READINESS_LEAD_SECONDS`` are checked
  once more, so a change nobody wrote (a token that expired) is seen before the post is due.

Marked posts wait in a per-client Redis sorted set; a pass takes at most
``MCMP_READINESS_TENANT_SHARE`` of each client's, the clients' lanes running side by side
(``MCMP_READINESS_CONCURRENCY``), so one tenant's thousand edits or slow media never hold back
another's check. A verdict is written with ``$set`` of ``mcmpReadiness`` alone, conditional on the
``updatedAt`` judged: it never changes ``updatedAt`` (the frontend's "last edited", and the
scan's own cursor), so writing it can never cause another check; a post edited during its check
keeps its mark and is checked again. Losing Redis loses the marks and cursors: the scan then
starts over ``MCMP_READINESS_SCAN_OVERLAP_SECONDS`` before the newest change it can see.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import redis
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.collection import Collection

from mcmp.config import Settings, get_settings
from mcmp.models import Campaign, Client, IntegrationAccount, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.models.db import BY_ID
from mcmp.models.schedule import SCHEDULE_AT
from mcmp.worker.accounts.cache import AccountCache
from mcmp.worker.publishing.post_status import EXPANDED_MARKER, posts
from mcmp.worker.readiness import checks, risk

log = logging.getLogger(__name__)

_Doc = TypeVar("_Doc", bound=Mapping[str, Any])  # a document of any collection scanned

PREFIX = "mcmp:readiness:"
LOCK = PREFIX + "lock"
CLIENTS = PREFIX + "clients"
LEAD = PREFIX + "lead"
# The scans ride this index through their sort (SecantusDB walked the whole index when hinted).
BY_UPDATED = "updatedAt_1"
_SCAN_FIELDS = {
    "clientId": 1,
    "status": 1,
    "scheduleTime": 1,
    "queue": 1,
    "updatedAt": 1,
    "mcmpReadiness.postUpdatedAt": 1,
}
_PAGE = 1000
_MAX_PAGES = 20
# Removes a client from the set of clients with marks only while it has none (atomic).
_FORGET_IDLE = """
if redis.call('ZCARD', KEYS[1]) == 0 then return redis.call('SREM', KEYS[2], ARGV[1]) end
return 0
"""


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pending_key(client_id: str) -> str:
    return f"{PREFIX}pending:{client_id}"


@dataclass
class PassStats:
    marked: int = 0
    checked: int = 0
    written: int = 0
    not_ready: int = 0
    skipped: bool = False


class Readiness:
    """One process's readiness passes (the Celery task keeps one per worker process)."""

    def __init__(self, settings: Settings | None = None, client: redis.Redis | None = None) -> None:
        self.settings = settings or get_settings()
        self.redis = client or redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
        self._forget_idle = self.redis.register_script(_FORGET_IDLE)

    # --- marking -----------------------------------------------------------------------------
    def mark(self, items: Iterable[tuple[str, str]]) -> int:
        """Mark (client id, post id) pairs for a check; returns how many were given."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        count = 0
        clients: set[str] = set()
        for client_id, post_id in items:
            pipe.zadd(pending_key(client_id), {post_id: now}, nx=True)
            clients.add(client_id)
            count += 1
        if clients:
            pipe.sadd(CLIENTS, *clients)
            pipe.execute()
        return count

    def _cursor(self, name: str) -> datetime | None:
        raw = self.redis.get(PREFIX + "cursor:" + name)
        return datetime.fromisoformat(_str(raw)) if raw else None

    def _changed(self, coll: Collection[_Doc], name: str, fields: Mapping[str, Any]) -> list[_Doc]:
        """Documents of ``coll`` whose ``updatedAt`` moved since the cursor (minus the overlap)."""
        overlap = timedelta(seconds=self.settings.readiness_scan_overlap_seconds)
        cursor = self._cursor(name)
        if cursor is None:  # first pass (or Redis lost): from just before the newest change
            newest = list(
                coll.find({"updatedAt": {"$type": "date"}}, {"updatedAt": 1}).sort("updatedAt", -1).limit(1)
            )
            stamp = as_utc(newest[0].get("updatedAt")) if newest else None
            cursor = stamp if isinstance(stamp, datetime) else utcnow()
        mark = cursor - overlap
        found: list[_Doc] = []
        newest_seen = cursor
        for _ in range(_MAX_PAGES):
            page = list(
                coll.find({"updatedAt": {"$gt": mark}}, dict(fields)).sort("updatedAt", 1).limit(_PAGE)
            )
            found += page
            if page:
                mark = as_utc(page[-1]["updatedAt"])
                newest_seen = max(newest_seen, mark)
            if len(page) < _PAGE:
                break
        self.redis.set(PREFIX + "cursor:" + name, newest_seen.isoformat())
        return found

    def mark_changed_posts(self, now: datetime) -> int:
        items = []
        for doc in self._changed(posts(), "posts", _SCAN_FIELDS):
            judged = checks.judged_version(doc)
            if judged is not None and judged == as_utc(doc.get("updatedAt")):
                continue  # this version has its verdict already
            if checks.is_candidate(doc, now):
                items.append((str(doc.get("clientId")), str(doc["_id"])))
        return self.mark(items)

    def _handled(self, key: str) -> None:
        """Remember a dependency version as handled: the overlap reads a change several times."""
        self.redis.set(key, 1, ex=3600)

    def mark_changed_dependencies(self, now: datetime) -> int:
        marked = 0
        future = {"$in": list(risk.FUTURE_STATUSES)}
        sources: list[tuple[Collection[dict[str, Any]], str, dict[str, Any]]] = [
            (
                IntegrationAccount._get_collection(),
                "integrationaccounts",
                {"clientId": 1, "platform": 1, "updatedAt": 1},
            ),
            (Campaign._get_collection(), "campaigns", {"clientId": 1, "updatedAt": 1}),
            (Client._get_collection(), "clients", {"updatedAt": 1}),
        ]
        for coll, name, fields in sources:
            for doc in self._changed(coll, name, fields):
                stamp = as_utc(doc.get("updatedAt"))
                key = f"{PREFIX}dep:{name}:{doc['_id']}:{stamp.timestamp() if stamp else 0}"
                if self.redis.exists(key):
                    continue
                if name == "integrationaccounts":
                    query = {
                        "clientId": str(doc.get("clientId")),
                        "platforms": doc.get("platform"),
                        "status": future,
                    }
                elif name == "campaigns":
                    query = {
                        "campaignId": str(doc["_id"]),
                        "clientId": str(doc.get("clientId")),
                        "status": future,
                    }
                else:
                    query = {"clientId": str(doc["_id"]), "status": future}
                affected = posts().find(query, {"clientId": 1, "status": 1, "scheduleTime": 1, "queue": 1})
                marked += self.mark(
                    (str(p.get("clientId")), str(p["_id"])) for p in affected if checks.is_candidate(p, now)
                )
                self._handled(key)
        return marked

    def mark_lead_time(self, now: datetime) -> int:
        """Scheduled posts that came within the lead time since the last pass: checked once more."""
        to = now + timedelta(seconds=self.settings.readiness_lead_seconds)
        raw = self.redis.get(LEAD)
        since = datetime.fromisoformat(_str(raw)) if raw else to
        self.redis.set(LEAD, to.isoformat())
        if since >= to:
            return 0
        scheduled = PostStatus.SCHEDULED.value
        fields = {"clientId": 1}
        dated = posts().find(
            {"status": scheduled, EXPANDED_MARKER: None, "scheduleTime": {"$gt": since, "$lte": to}}, fields
        )
        strings = posts().find({SCHEDULE_AT: {"$gt": since, "$lte": to}}, fields)
        return self.mark(
            (str(p.get("clientId")), str(p["_id"])) for source in (dated, strings) for p in source
        )

    # --- checking ----------------------------------------------------------------------------
    def _lane(
        self, client_id: str, deadline: float, cache: AccountCache, stats: PassStats, lock: threading.Lock
    ) -> None:
        """Check up to one share of a client's marked posts; write their verdicts in one bulk write."""
        key = pending_key(client_id)
        ids = [_str(m) for m in self.redis.zrange(key, 0, self.settings.readiness_tenant_share - 1)]
        valid = [ObjectId(i) for i in ids if ObjectId.is_valid(i)]
        # (unhinted: SecantusDB answered this $in in 60 ms, in 2.7 s when hinted to _id_)
        found = {str(d["_id"]): d for d in posts().find({"_id": {"$in": valid}})} if valid else {}
        done: list[str] = [i for i in ids if i not in found]
        writes: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []  # (post, filter, update)
        risks: list[tuple[risk.AccountFacts, risk.Risk]] = []
        now = utcnow()
        for post_id, post in found.items():
            if time.monotonic() > deadline:
                break
            if not checks.is_candidate(post, now):
                done.append(post_id)
                continue
            verdict = checks.check(post, self.settings, cache, now)
            risks += verdict.risks
            basis = post.get("updatedAt")
            update = {"$set": {checks.FIELD: verdict.document(basis)}}
            writes.append((post_id, {"_id": post["_id"], "updatedAt": basis}, update))
            with lock:
                stats.checked += 1
                stats.not_ready += 0 if verdict.ok else 1
        if writes:
            # one bulk write, never touching updatedAt; a post edited meanwhile does not match
            # (its verdict would be stale) and keeps its mark for the next pass
            result = posts().bulk_write(
                [UpdateOne(where, update, hint=BY_ID) for _, where, update in writes], ordered=False
            )
            written = [post_id for post_id, _, _ in writes]
            if result.matched_count < len(writes):
                judged = posts().find(
                    {"_id": {"$in": [where["_id"] for _, where, _ in writes]}},
                    {"updatedAt": 1, "mcmpReadiness": 1},
                )
                current = {
                    str(d["_id"]) for d in judged if checks.judged_version(d) == as_utc(d.get("updatedAt"))
                }
                written = [post_id for post_id in written if post_id in current]
            done += written
            with lock:
                stats.written += len(written)
        if done:
            self.redis.zrem(key, *done)
        self._forget_idle(keys=[key, CLIENTS], args=[client_id])
        self._log_risks(risks)

    def _log_risks(self, risks: list[tuple[risk.AccountFacts, risk.Risk]]) -> None:
        seen: set[str] = set()
        for facts, _ in risks:
            if facts.id in seen:
                continue
            seen.add(facts.id)
            if self.redis.exists(f"mcmp:readiness:risk-logged:{facts.id}:{utcnow():%Y-%m-%d}"):
                continue
            risky = risk.assess(facts)
            if risky is not None:
                risk.log_once_a_day(risky, self.redis)

    def drain(self) -> PassStats:
        stats = PassStats()
        clients = sorted(_str(m) for m in self.redis.smembers(CLIENTS))
        if not clients:
            return stats
        deadline = time.monotonic() + self.settings.readiness_pass_seconds
        cache = AccountCache(self.settings.readiness_pass_seconds)
        lock = threading.Lock()
        offset = int(time.time()) % len(clients)  # a different client goes first each pass
        order = clients[offset:] + clients[:offset]
        with ThreadPoolExecutor(self.settings.readiness_concurrency, thread_name_prefix="readiness") as pool:
            for future in [pool.submit(self._lane, c, deadline, cache, stats, lock) for c in order]:
                try:
                    future.result()
                except Exception:  # one client's trouble must not stop the others' checks
                    log.exception("readiness lane failed; its posts stay marked")
        return stats

    def run(self, now: datetime | None = None) -> PassStats:
        """One pass: mark what changed, then check marked posts. One pass at a time per Redis."""
        token = str(ObjectId())
        if not self.redis.set(LOCK, token, nx=True, ex=int(self.settings.readiness_pass_seconds) + 60):
            return PassStats(skipped=True)
        try:
            now = now or utcnow()
            marked = (
                self.mark_changed_posts(now) + self.mark_changed_dependencies(now) + self.mark_lead_time(now)
            )
            stats = self.drain()
            stats.marked = marked
            if stats.checked:
                log.info(
                    "readiness: %d posts checked (%d not ready), %d marked",
                    stats.checked,
                    stats.not_ready,
                    marked,
                )
            return stats
        finally:
            if self.redis.get(LOCK) == token.encode():
                self.redis.delete(LOCK)


__all__ = ["PassStats", "Readiness", "pending_key"]
