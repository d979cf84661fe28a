"""Request pacing for analytics: a shared (Redis) budget per platform app and per account.

Why a pacer and not only the blocks of ``mcmp.worker.rate_limit``: those react to what a platform
said (usage headers, a 429), i.e. after a request may already have been refused. A backfill of
thousands of posts must stay *under* the limits, so every analytics call first takes tokens from
two GCRA buckets — ``mcmp:an:pace:<platform>:app`` and ``…:acct:<account id>`` — in one Lua
script, atomically across all workers and the CLI. Rates come from the platform's settings
(``MCMP_<PLATFORM>__ANALYTICS_APP_CALLS_PER_SECOND``, ``…_ACCOUNT_CALLS_PER_SECOND``,
``…_BURST``); in any window of ``W`` seconds at most ``burst + rate × W`` calls go out, so
settings below a platform's fixed-window limit can never exceed it. The costs are platform calls
(a Graph batch of 50 sub-requests costs 50, as Meta counts it). Publishing does not take tokens
(analytics must never delay it): the analytics budget is set below the platform's limits to
leave it headroom, and both obey the blocks recorded from usage headers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mcmp.config import Settings
from mcmp.worker import rate_limit

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local wait = 0
local new = {}
for i = 1, 2 do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local newtat = tat + cost * interval
  local allow_at = newtat - tolerance
  if allow_at - now > wait then wait = allow_at - now end
  new[i] = newtat
end
if wait > 0 then return tostring(wait) end
for i = 1, 2 do
  redis.call('SET', KEYS[i], tostring(new[i]), 'PX', math.ceil((new[i] - now) * 1000) + 1000)
end
return '0'
"""


@dataclass(frozen=True)
class Budget:
    app_per_second: float
    account_per_second: float
    burst: int


def budget(settings: Settings, platform: str) -> Budget:
    cfg = settings.platform(platform)
    if cfg is None:  # a third-party platform: the generic defaults
        from mcmp.config.settings import PlatformSettings

        cfg = PlatformSettings()
    return Budget(
        cfg.analytics_app_calls_per_second, cfg.analytics_account_calls_per_second, cfg.analytics_burst
    )


def try_acquire(platform: str, account_id: str, cost: int, limits: Budget) -> float:
    """Take ``cost`` calls from both buckets now (→ 0.0), or take nothing and say how long to wait."""
    if cost <= 0:
        return 0.0
    app_interval = 1.0 / limits.app_per_second
    acct_interval = 1.0 / limits.account_per_second
    # A request costing more than the burst is let through once the bucket is full.
    burst = max(limits.burst, cost)
    wait = rate_limit.client().eval(
        _ACQUIRE,
        2,
        f"mcmp:an:pace:{platform}:app",
        f"mcmp:an:pace:{platform}:acct:{account_id}",
        str(cost),
        repr(app_interval),
        repr(app_interval * burst),
        repr(acct_interval),
        repr(acct_interval * burst),
    )
    return float(wait)


def acquire(platform: str, account_id: str, cost: int, limits: Budget, max_wait: float) -> bool:
    """Wait (up to ``max_wait`` seconds) for the budget and for any recorded platform block.

    False means the budget is not there within ``max_wait``: the caller gives the work back.
    """
    deadline = time.monotonic() + max_wait
    while True:
        blocked = rate_limit.blocked_until(platform, account_id)
        wait = max(0.0, blocked.timestamp() - time.time()) if blocked is not None else 0.0
        if wait == 0.0:
            wait = try_acquire(platform, account_id, cost, limits)
            if wait == 0.0:
                return True
        if time.monotonic() + wait > deadline:
            return False
        time.sleep(min(wait, 1.0) + 0.001)


__all__ = ["Budget", "acquire", "budget", "try_acquire"]
