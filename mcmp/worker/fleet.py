"""Which processes are working now, as operators and Prometheus see it: worker processes and dispatchers.

Worker processes are the liveness members (:mod:`mcmp.worker.liveness`: renewed every quarter
TTL). A dispatcher records the time of its last completed tick in one Redis sorted set, so a
dispatcher that is alive but stuck (a hung query) reads as stalled, not as running; the set lives
in Redis because that is the state every dispatcher, the API and ``mcmp status`` share.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

import redis

from mcmp.config import get_settings
from mcmp.worker import liveness, metrics

log = logging.getLogger(__name__)

TICKS = "mcmp:dispatch:ticks"
TICKS_KEPT_SECONDS = 86400.0
# A dispatcher ticks every MCMP_DISPATCH_INTERVAL_SECONDS (0.25 s): Redis hears of it once a second.
RECORD_EVERY_SECONDS = 1.0
# A dispatcher counts as live when it ticked this recently (its tick interval is a fraction of it).
LIVE_WITHIN_SECONDS = 15.0


def dispatcher_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class TickRecorder:
    """Counts a dispatcher's ticks (Prometheus) and records the latest one in Redis, at most once a second."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or dispatcher_id()
        self._recorded = 0.0

    def ticked(self, claimed: int) -> None:
        metrics.DISPATCH_TICKS.inc()
        if claimed:
            metrics.DISPATCH_CLAIMED.inc(claimed)
        now = time.time()
        if now - self._recorded < RECORD_EVERY_SECONDS:
            return
        try:
            pipe = _redis().pipeline(transaction=False)
            pipe.zadd(TICKS, {self.name: now})
            pipe.zremrangebyscore(TICKS, 0, now - TICKS_KEPT_SECONDS)
            pipe.execute()
            self._recorded = now
        except redis.RedisError as exc:  # the dispatcher keeps dispatching; the gap shows as a stall
            log.warning("dispatcher tick not recorded (%s)", type(exc).__name__)


@dataclass(frozen=True)
class Fleet:
    worker_processes: int
    dispatchers: int
    last_tick: float | None  # epoch seconds of the newest tick of any dispatcher

    def last_tick_age(self, now: float | None = None) -> float | None:
        return None if self.last_tick is None else max(0.0, (now or time.time()) - self.last_tick)


def fleet() -> Fleet:
    """Live worker processes and dispatchers now (Redis errors propagate: the caller says "unknown")."""
    client = _redis()
    now = time.time()
    ttl = get_settings().liveness_ttl_seconds
    pipe = client.pipeline(transaction=False)
    pipe.zcount(liveness.MEMBERS, now - ttl, "+inf")
    pipe.zcount(TICKS, now - LIVE_WITHIN_SECONDS, "+inf")
    pipe.zrevrange(TICKS, 0, 0, withscores=True)
    workers, dispatchers, newest = pipe.execute()
    return Fleet(int(workers), int(dispatchers), float(newest[0][1]) if newest else None)


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)


def _redis() -> redis.Redis:
    return _client(get_settings().redis_url)


__all__ = ["Fleet", "TickRecorder", "fleet"]
