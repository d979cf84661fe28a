"""Global rate-limit state in Redis, shared by every worker process and machine.

A connector's usage report (``mcmp.connectors.usage``) or a throttling error blocks a scope until a
time; ``blocked_until`` is checked before each platform call so throttled deliveries are
deferred without consuming an attempt. The block is written with a Lua script that only ever
extends it (atomic max), so concurrent reports cannot shorten a block.
Keys: ``mcmp:rl:<platform>:app`` and ``mcmp:rl:<platform>:acct:<account id>`` (a hash of
scope → epoch seconds).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from functools import lru_cache

import redis

from mcmp.config import get_settings
from mcmp.connectors.usage import UsageReport, set_sink

log = logging.getLogger(__name__)

BLOCK_AT_PCT = 95.0  # Graph starts throttling at 100%; stop a little before it
DEFAULT_BLOCK_SECONDS = 60.0

_EXTEND = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local untilv = tonumber(ARGV[2])
if untilv > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local ttl = math.ceil(untilv - tonumber(ARGV[3])) + 5
if ttl > redis.call('TTL', KEYS[1]) then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


def client() -> redis.Redis:
    return _client(get_settings().redis_url)


def _key(platform: str, scope: str, account_id: str | None) -> str:
    if scope == "app" or not account_id:
        return f"mcmp:rl:{platform}:app"
    return f"mcmp:rl:{platform}:acct:{account_id}"


def block(platform: str, scope: str, account_id: str | None, seconds: float) -> None:
    now = time.time()
    client().eval(
        _EXTEND, 1, _key(platform, scope, account_id), scope, str(now + max(0.0, seconds)), str(now)
    )
    log.info("rate limit: %s %s blocked for %.0fs", platform, scope, seconds)


def blocked_until(platform: str, account_id: str) -> datetime | None:
    """The latest block covering this account (app-wide or its own), or None."""
    pipe = client().pipeline(transaction=False)
    pipe.hvals(_key(platform, "app", None))
    pipe.hvals(_key(platform, "account", account_id))
    values = [float(v) for group in pipe.execute() for v in group]
    latest = max(values, default=0.0)
    if latest <= time.time():
        return None
    return datetime.fromtimestamp(latest, UTC)


def observe(usage: UsageReport) -> None:
    """Usage sink: block a scope that is (nearly) exhausted according to the platform."""
    exhausted = usage.used_pct is not None and usage.used_pct >= BLOCK_AT_PCT
    if exhausted or (usage.used_pct is None and usage.retry_after is not None):
        seconds = usage.retry_after if usage.retry_after is not None else DEFAULT_BLOCK_SECONDS
        try:
            block(usage.platform, usage.scope, usage.account_id, seconds)
        except redis.RedisError as exc:  # the limiter must not break publishing; the platform still throttles
            log.warning("could not record rate limit in Redis: %s", type(exc).__name__)


def install() -> None:
    set_sink(observe)
