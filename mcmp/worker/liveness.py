"""Which worker processes are alive: one short-TTL Redis key per process, renewed by a thread.

A delivery taken for an attempt records its ``owner`` (this process's id). The reaper hands on
the deliveries of owners whose key has expired — a ``kill -9``'d worker costs seconds, not an
in-flight lease. A live owner's attempt that is still running keeps its lease extended by the
same thread, so a long call (Instagram video processing takes minutes) is never taken over,
while an attempt that ended without recording (an exception) is recovered when its lease
expires. When liveness cannot be judged (Redis unreachable, or restarted so recently that live
workers may not have renewed their keys yet) only expired leases are reclaimed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import redis

from mcmp.config import get_settings
from mcmp.errors import PublisherError

log = logging.getLogger(__name__)

KEY_PREFIX = "mcmp:live:"
# One key per started attempt of a delivery born taken (``mcmp:start:<attempt id>:<delivery id>``,
# the owner as value): the start that makes copies of one message exclusive (see ``claim_starts``).
START_PREFIX = "mcmp:start:"
# The value of a start key held for a cancel, not a worker (see ``hold_starts``): no worker may
# start that attempt, nor take it over as if its holder had died.
CANCEL_MARK = "cancel:"
# Every process that renews a key is listed here with the time of its last renewal; one listed
# longer ago than the TTL has died (or stopped), and its death is moved to LOSSES: the moments
# up to which a message a worker had prefetched may be gone (see :func:`last_loss`).
MEMBERS = "mcmp:live:members"
LOSSES = "mcmp:live:losses"
LOSSES_KEPT_SECONDS = 86400.0
# When this Redis's data began, as first seen by our processes (Unix time in milliseconds): set
# when missing before a delivery is born taken and before any start key, so after a restart or a
# flush that lost start keys it is later than the birth of every delivery they may have started.
DATA_SINCE = "mcmp:live:data-since"


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)


def _redis() -> redis.Redis:
    return _client(get_settings().redis_url)


class _Heartbeat:
    """This process's key, renewed by a daemon thread (started lazily, again after a fork)."""

    def __init__(self) -> None:
        self.pid = 0
        self.owner = ""
        self.lock = threading.Lock()
        self.stop = threading.Event()
        # attempt id:delivery id → (delivery id, monotonic time of the last lease extension)
        self.running: dict[str, tuple[Any, float]] = {}
        self.keeper: Callable[[Sequence[Any], str], None] | None = None
        # running key → monotonic time of its start key's last (re)set, for the start keys this
        # process holds
        self.starts: dict[str, float] = {}

    def ensure(self, *, keep_trying: bool = False) -> str | None:
        with self.lock:
            if self.pid != os.getpid():  # first use in this process (or a prefork child)
                self.pid = os.getpid()
                self.owner = f"{socket.gethostname()}:{self.pid}:{uuid.uuid4().hex[:8]}"
                self.stop = threading.Event()
                if not self._beat() and not keep_trying:
                    self.pid = 0
                    return None
                threading.Thread(target=self._run, args=(self.stop,), name="liveness", daemon=True).start()
            return self.owner

    def _beat(self) -> bool:
        ttl = get_settings().liveness_ttl_seconds
        try:
            pipe = _redis().pipeline(transaction=False)
            pipe.set(KEY_PREFIX + self.owner, "1", px=int(ttl * 1000))
            pipe.zadd(MEMBERS, {self.owner: time.time()})
            pipe.execute()
            return True
        except redis.RedisError as exc:
            log.warning("liveness key not renewed (%s)", type(exc).__name__)
            return False

    def _run(self, stop: threading.Event) -> None:
        interval = get_settings().liveness_ttl_seconds / 4
        while not stop.wait(interval):
            try:
                self._beat()
                self._keep_starts()
                self._keep_leases()
            except Exception:  # the thread must outlive any surprise: a silent death reads as "dead"
                log.exception("liveness renewal failed")

    def _keep_starts(self) -> None:
        """Keep the start keys of running attempts: re-set (NX) within a renewal when a Redis
        restart or flush lost any, and extended as their leases are, so a long call's key outlives
        its lease and every copy of its message.

        One ``EXISTS`` of them all per renewal finds a loss; otherwise a key is rewritten only once
        it is a third of a lease old (as leases are extended), with a TTL one liveness TTL longer
        than a lease, so it outlives the lease extended in the same renewal. Rewriting every key
        every renewal (two commands per running attempt per second) cost a tenth of a worker's
        CPU under load.
        """
        settings = get_settings()
        every = settings.inflight_lease_seconds / 3
        now = time.monotonic()
        with self.lock:
            held = {k: at for k, at in self.starts.items() if k in self.running}
        if not held:
            return
        client = _redis()
        lost = client.exists(*[START_PREFIX + key for key in held]) < len(held)
        renew = list(held) if lost else [key for key, at in held.items() if now - at >= every]
        if not renew:
            return
        ttl_ms = int((settings.inflight_lease_seconds + settings.liveness_ttl_seconds) * 1000)
        pipe = client.pipeline(transaction=False)
        for key in renew:
            pipe.set(START_PREFIX + key, self.owner, nx=True, px=ttl_ms)
            pipe.pexpire(START_PREFIX + key, ttl_ms)
        pipe.execute()
        with self.lock:
            for key in renew:
                if key in self.starts:
                    self.starts[key] = now

    def _keep_leases(self) -> None:
        """Extend the leases of attempts running longer than a third of the in-flight lease."""
        every = get_settings().inflight_lease_seconds / 3
        now = time.monotonic()
        with self.lock:
            due = [(a, d) for a, (d, last) in self.running.items() if now - last >= every]
            for attempt_id, delivery_id in due:
                self.running[attempt_id] = (delivery_id, now)
        if due and self.keeper is not None:
            self.keeper([d for _, d in due], self.owner)


_heartbeat = _Heartbeat()


def owner() -> str | None:
    """This process's owner id with its key set, or None when Redis cannot be reached now.

    A delivery taken with no owner is recovered by its lease alone, as before liveness.
    """
    return _heartbeat.ensure()


def announce() -> None:
    """Register this worker process at start, and keep renewing even while Redis is away.

    A worker fetches messages (ETA ones at once) long before it takes a delivery, the lazy first
    use of :func:`owner`; killed before that, it would be listed nowhere and the messages it
    held never counted as lost (:func:`last_loss`).
    """
    _heartbeat.ensure(keep_trying=True)


@contextmanager
def running(attempt_id: str, delivery_ids: Iterable[Any]) -> Iterator[None]:
    """Mark attempts of this process as running: their leases are kept while they run."""
    keys = [(f"{attempt_id}:{d}", d) for d in delivery_ids]
    with _heartbeat.lock:
        for key, delivery_id in keys:
            _heartbeat.running[key] = (delivery_id, time.monotonic())
    try:
        yield
    finally:
        with _heartbeat.lock:
            for key, _ in keys:
                _heartbeat.running.pop(key, None)
                _heartbeat.starts.pop(key, None)


def keep_leases_with(keeper: Callable[[Sequence[Any], str], None]) -> None:
    """How running attempts' leases are extended (the state machine's writer registers it)."""
    _heartbeat.keeper = keeper


class Starts(NamedTuple):
    """Who holds the start of each attempt :func:`claim_starts` was asked for."""

    holders: dict[str, str | None]  # delivery id → None when this process won the start, else its holder
    # When Redis's data began (:data:`DATA_SINCE`): a delivery born before it may have been
    # started on data since lost, by a worker killed since and unable to set its key again.
    data_since: datetime


def claim_starts(attempt_id: str, delivery_ids: Sequence[Any], ttl_seconds: float) -> Starts | None:
    """Start these attempts of deliveries born taken: who holds each start (:class:`Starts`).
    None when that cannot be judged (Redis unreachable, or restarted and still not up for a TTL
    after waiting the rest of it), and nothing may start.

    A delivery born ``in_flight`` with its attempt id is not written again when a worker starts
    it, so two copies of its message (a re-sent one, a redelivered one) both find it takeable in
    MongoDB: ``SET NX`` on the (attempt, delivery) key lets exactly one of them call the platform.
    Right after a Redis restart the keys of running attempts are missing until their live workers
    re-set them (within a quarter of a TTL), so a start waits until Redis has been up for a TTL:
    a message that came due then is started seconds late, not dropped for the re-send of lost
    messages to find many seconds later.
    """
    owner = _heartbeat.ensure()
    if owner is None:
        return None
    keys = [f"{attempt_id}:{d}" for d in delivery_ids]
    ttl_ms = max(1000, int(ttl_seconds * 1000))
    started = time.monotonic()  # no later than the keys' TTL starts
    try:
        client = _redis()
        if not _settled(client):
            return None
        pipe = client.pipeline(transaction=False)
        pipe.set(DATA_SINCE, _now_ms(), nx=True)  # before any start key of this data
        for key in keys:
            pipe.set(START_PREFIX + key, owner, nx=True, px=ttl_ms)
        pipe.get(DATA_SINCE)
        _, *won, since = pipe.execute()
        lost = [k for k, ok in zip(keys, won, strict=True) if not ok]
        holders = dict(zip(lost, client.mget([START_PREFIX + k for k in lost]), strict=True)) if lost else {}
    except redis.RedisError as exc:
        log.warning("attempts not started: Redis unavailable (%s)", type(exc).__name__)
        return None
    with _heartbeat.lock:
        _heartbeat.starts.update((k, started) for k, ok in zip(keys, won, strict=True) if ok)
    result: dict[str, str | None] = {}
    for delivery_id, key, ok in zip(delivery_ids, keys, won, strict=True):
        holder = holders.get(key)
        result[str(delivery_id)] = (
            None if ok else (holder.decode() if isinstance(holder, bytes) else str(holder or ""))
        )
    began = int(since) if since is not None else _now_ms()  # deleted meanwhile: as if just now
    return Starts(result, datetime.fromtimestamp(began / 1000, UTC))


# How often a start waiting for Redis to settle after a restart looks at its uptime again.
SETTLE_POLL_SECONDS = 0.2


def _settled(client: redis.Redis) -> bool:
    """Has Redis been up for a liveness TTL? After a restart the rest of it is waited out (at
    most a TTL): a restart is rare, and a worker that waits starts its message instead of leaving
    it to the re-send. False if it restarted again meanwhile and is still not settled.
    """
    ttl = get_settings().liveness_ttl_seconds
    deadline = time.monotonic() + ttl + 1.0
    while int(client.info("server").get("uptime_in_seconds", 0)) < ttl:
        if time.monotonic() >= deadline:
            return False
        time.sleep(SETTLE_POLL_SECONDS)
    return True


def _now_ms() -> int:
    """Now in whole milliseconds, rounded down as MongoDB stores a delivery's birth."""
    return time.time_ns() // 1_000_000


def mark_data_since() -> None:
    """Note when this Redis's data began, if nobody has yet: before deliveries are born taken.

    Best effort: when Redis cannot be reached the first start of such a delivery notes it, later
    than its birth, and that start looks the post up on the platform first (never a duplicate).
    """
    try:
        _redis().set(DATA_SINCE, _now_ms(), nx=True)
    except redis.RedisError as exc:
        log.warning("when Redis's data began not noted (%s)", type(exc).__name__)


def data_since() -> datetime:
    """When this Redis's data began (:data:`DATA_SINCE`; noted now if nobody has yet).

    A delivery born taken before it may have been started on data since lost, by a worker that
    died since and left no start key. Raises :class:`StartsUnknown` when Redis cannot answer.
    """
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.set(DATA_SINCE, _now_ms(), nx=True)
        pipe.get(DATA_SINCE)
        _, since = pipe.execute()
    except redis.RedisError as exc:
        raise StartsUnknown(f"Redis unavailable ({type(exc).__name__})") from None
    began = int(since) if since is not None else _now_ms()
    return datetime.fromtimestamp(began / 1000, UTC)


def start_holders(attempts: Sequence[tuple[str, Any]]) -> dict[str, str]:
    """Who started these (attempt id, delivery id): delivery id → owner, for the started ones.

    Empty when Redis cannot say, or was restarted less than a TTL ago (keys not yet re-set).
    """
    if not attempts:
        return {}
    try:
        client = _redis()
        if int(client.info("server").get("uptime_in_seconds", 0)) < get_settings().liveness_ttl_seconds:
            return {}
        found = client.mget([f"{START_PREFIX}{a}:{d}" for a, d in attempts])
    except redis.RedisError as exc:
        log.warning("start keys unavailable (%s)", type(exc).__name__)
        return {}
    return {
        str(d): (v.decode() if isinstance(v, bytes) else str(v))
        for (_, d), v in zip(attempts, found, strict=True)
        if v is not None
    }


class StartsUnknown(PublisherError):
    """Redis cannot say whether a worker started these attempts (unreachable, or just restarted)."""


def held_by_cancel(holder: str) -> bool:
    """Is this start key's value a cancel's sentinel rather than a worker's owner id?"""
    return holder.startswith(CANCEL_MARK)


def hold_starts(attempts: Sequence[tuple[str, Any]], ttl_seconds: float) -> tuple[str, set[str]]:
    """Take the start keys of these (attempt id, delivery id) for a cancel, before any worker does.

    The same ``SET NX`` as :func:`claim_starts`, with a sentinel value (``cancel:<uuid>``) instead
    of an owner: a worker that loses the start to it neither starts the attempt nor takes it over
    (:func:`held_by_cancel`), so the delivery can then be cancelled knowing no platform call was
    made. Returns the sentinel and the delivery ids whose start it now holds (the others a worker
    or another cancel holds). Raises :class:`StartsUnknown` when Redis cannot answer or restarted
    less than a liveness TTL ago: a running attempt's key lost in the restart may not be re-set yet.
    """
    sentinel = f"{CANCEL_MARK}{uuid.uuid4().hex}"
    ttl_ms = max(1000, int(ttl_seconds * 1000))
    try:
        client = _redis()
        if int(client.info("server").get("uptime_in_seconds", 0)) < get_settings().liveness_ttl_seconds:
            raise StartsUnknown("Redis restarted moments ago")
        pipe = client.pipeline(transaction=False)
        for attempt_id, delivery_id in attempts:
            pipe.set(f"{START_PREFIX}{attempt_id}:{delivery_id}", sentinel, nx=True, px=ttl_ms)
        won = pipe.execute()
    except redis.RedisError as exc:
        raise StartsUnknown(f"Redis unavailable ({type(exc).__name__})") from None
    return sentinel, {str(d) for (_, d), ok in zip(attempts, won, strict=True) if ok}


# Delete a key only while it still holds this value: a sentinel that expired and was taken by a
# worker meanwhile is that worker's start, never deleted.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def release_starts(attempts: Sequence[tuple[str, Any]], sentinel: str) -> None:
    """Give back start keys :func:`hold_starts` took for a cancel that did not happen.

    Best effort: a key left behind only delays its delivery to the reaper (its lease), never
    starts it twice.
    """
    try:
        release = _redis().register_script(_RELEASE)
        for attempt_id, delivery_id in attempts:
            release(keys=[f"{START_PREFIX}{attempt_id}:{delivery_id}"], args=[sentinel])
    except redis.RedisError as exc:
        log.warning("cancel's start keys not released; they expire (%s)", type(exc).__name__)


def forget_starts(attempt_id: str, delivery_ids: Iterable[Any]) -> None:
    """Stop keeping the start keys of attempts this process won but will not run."""
    with _heartbeat.lock:
        for d in delivery_ids:
            _heartbeat.starts.pop(f"{attempt_id}:{d}", None)


def alive(owners: Iterable[str]) -> set[str] | None:
    """The subset of ``owners`` whose process is alive, or None when that cannot be judged.

    An owner whose key is missing is looked at again one renewal later before it is called
    dead: a live process re-sets a key that was lost (Redis restarted or flushed) by then.
    """
    wanted = sorted(set(owners))
    settings = get_settings()
    try:
        client = _redis()
        uptime = int(client.info("server").get("uptime_in_seconds", 0))
        if uptime < settings.liveness_ttl_seconds:
            return None  # keys lost in a restart are being renewed right now
        live = _present(client, wanted)
        missing = [o for o in wanted if o not in live]
        if missing:
            time.sleep(settings.liveness_ttl_seconds / 4 + 0.25)
            live |= _present(client, missing)
    except redis.RedisError as exc:
        log.warning("liveness unavailable (%s); only expired leases are reaped", type(exc).__name__)
        return None
    return live


def last_loss() -> datetime | None:
    """The latest moment a Celery message may have been lost, or None when that cannot be judged.

    Messages are lost in two ways only: a worker process dies holding prefetched ones, or Redis
    restarts and drops its queues. A worker's death is known only to within a TTL after its last
    renewal, and it may have prefetched a message sent in that time, so the moment is the last
    renewal plus the TTL. A restart also drops the list of workers: one that fetched a message
    after it and died before renewing again is listed nowhere, so that moment is the restart plus
    the TTL (a live worker renews within a quarter of it). A ``queued`` delivery whose message was
    sent after both is waiting in the queue or in a live worker's prefetch buffer, so it is never
    sent again — under a backlog that would double the work exactly when there is least capacity.
    """
    settings = get_settings()
    try:
        client = _redis()
        seconds, micros = client.time()
        now = seconds + micros / 1e6
        ttl = settings.liveness_ttl_seconds
        restarted = now - int(client.info("server").get("uptime_in_seconds", 0))
        gone: list[tuple[bytes, float]] = list(
            client.zrangebyscore(MEMBERS, 0, now - ttl, withscores=True)  # type: ignore[arg-type]
        )
        if gone:
            pipe = client.pipeline(transaction=False)
            pipe.zadd(LOSSES, {owner: score + ttl for owner, score in gone}, gt=True)
            pipe.zrem(MEMBERS, *[owner for owner, _ in gone])
            pipe.zremrangebyscore(LOSSES, 0, now - LOSSES_KEPT_SECONDS)
            pipe.execute()
        latest: list[tuple[bytes, float]] = list(client.zrevrange(LOSSES, 0, 0, withscores=True))  # type: ignore[arg-type]
    except redis.RedisError as exc:
        log.warning("liveness unavailable (%s); no message is taken as lost", type(exc).__name__)
        return None
    moment = min(now, max([restarted + ttl] + [score for _, score in latest]))
    return datetime.fromtimestamp(moment, UTC)


def _present(client: redis.Redis, owners: list[str]) -> set[str]:
    if not owners:
        return set()
    found = client.mget([KEY_PREFIX + o for o in owners])
    return {o for o, value in zip(owners, found, strict=True) if value is not None}


__all__ = [
    "Starts",
    "StartsUnknown",
    "alive",
    "announce",
    "claim_starts",
    "forget_starts",
    "held_by_cancel",
    "hold_starts",
    "keep_leases_with",
    "last_loss",
    "data_since",
    "mark_data_since",
    "owner",
    "release_starts",
    "running",
    "start_holders",
]
