"""Global rate-limit state in Redis, shared by every worker process and machine.

Three things, each atomic in one Lua script:

* **Blocks.** A regain time (``Retry-After``, Graph's ``estimated_time_to_regain_access`` in
  ``X-Page-Usage`` / ``X-Business-Use-Case-Usage``) blocks its scope for that long. A throttling
  error without one (Graph 4/17/32/613/80001 bare) blocks for a time that *grows on repeats*:
  15 s, 30 s, 60 s … capped at 300 s, per scope (``app`` for 4, ``user`` for 17, the Page for
  32/80001), back to 15 s after a quiet period; throttles answered while the scope is already
  blocked are the same episode and do not escalate. Blocks only ever extend (atomic max).
* **Pacing.** While a usage header says a budget is nearly spent (≥ ``PACE_AT_PCT``), and for a
  while after a block, calls of that scope go out one per ``1 / pace_calls_per_second`` (account)
  and ``1 / pace_app_calls_per_second`` (app) — a GCRA "theoretical arrival time" per scope.
* **Spread.** A delivery that must wait is given its own slot on that pacing timeline (at or after
  the block's end) and keeps it (a reservation per delivery): when a block ends, the deferred
  deliveries come due one slot apart — a window as long as their number over the allowed rate —
  instead of all at the same instant, which would only get the Page throttled again.

Keys: ``mcmp:rl:<platform>:app`` and ``mcmp:rl:<platform>:acct:<account id>`` (hash: scope → block
end, epoch seconds), ``…:strikes:<scope key>`` (escalation count, expires after the quiet
period), ``…:hot:<scope key>`` (pacing on), ``…:tat:<scope key>`` (next free slot),
``mcmp:rl:slot:<delivery id>`` (a deferred delivery's slot). All carry a TTL.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import redis

from mcmp.config import get_settings
from mcmp.connectors.usage import UsageReport, set_sink
from mcmp.connectors.waits import ABSURD_SECONDS, bounded_wait

log = logging.getLogger(__name__)

PACE_AT_PCT = 90.0  # Graph throttles at 100 %: from here calls are paced, not sent in bursts
PACE_HOLD_SECONDS = 60.0  # pacing stays on this long after the last high reading or block
ESCALATE_FIRST_SECONDS = 15.0
ESCALATE_MAX_SECONDS = 300.0
ESCALATE_QUIET_SECONDS = 600.0  # no throttle for this long after a block: start short again
SHORT_WAIT_SECONDS = 1.0  # a slot this close is waited for in the worker instead of deferring

# A stored time that is not a sane epoch second (inf, nan: written before waits were bounded, or
# by hand) counts as no block at all, in every script.
_EXTEND = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if current ~= current or current > 1e11 then current = 0 end
local untilv = tonumber(ARGV[2])
if untilv > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local ttl = math.ceil(untilv - tonumber(ARGV[3])) + 5
if ttl > redis.call('TTL', KEYS[1]) then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('SET', KEYS[2], '1', 'EX', math.max(1, math.ceil(untilv - tonumber(ARGV[3]) + tonumber(ARGV[4]))))
return 1
"""

# KEYS: block hash, strikes, hot. ARGV: scope field, now, first, cap, quiet, hold.
_ESCALATE = """
local now = tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if current ~= current or current > 1e11 then current = 0 end
if current > now then return tostring(current - now) end
local n = redis.call('INCR', KEYS[2])
local secs = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (n - 1))
redis.call('EXPIRE', KEYS[2], math.ceil(secs + tonumber(ARGV[5])))
redis.call('HSET', KEYS[1], ARGV[1], tostring(now + secs))
local ttl = math.ceil(secs) + 5
if ttl > redis.call('TTL', KEYS[1]) then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('SET', KEYS[3], '1', 'EX', ttl + tonumber(ARGV[6]))
return tostring(secs)
"""

# KEYS: app hash, acct hash, app hot, acct hot, app tat, acct tat, then one slot key per delivery
# (all of one account). ARGV: now, acct interval, app interval, short wait.
# Returns {slot, deferred, blocked} per delivery, flattened, in KEYS order; slot "0" = go now.
# The deliveries are admitted one after another at the same instant, exactly as that many calls
# would admit them: blocks and pacing state are read once, each takes the next slot in turn.
_ADMIT = """
local now = tonumber(ARGV[1])
local short = tonumber(ARGV[4])
local function latest(key)
  local m = 0
  for _, v in ipairs(redis.call('HVALS', key)) do
    local x = tonumber(v)
    if x and x == x and x < 1e11 and x > m then m = x end
  end
  return m
end
local function sane(key)
  local x = tonumber(redis.call('GET', key) or '0') or 0
  if x ~= x or x > 1e11 then return 0 end
  return x
end
local app_block = latest(KEYS[1])
local acct_block = latest(KEYS[2])
local block = math.max(app_block, acct_block)
local blocked = block > now and 1 or 0
local app_on = app_block > now or redis.call('EXISTS', KEYS[3]) == 1
local acct_on = acct_block > now or redis.call('EXISTS', KEYS[4]) == 1
local out = {}
for i = 7, #KEYS do
  local r
  local held = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if held ~= held or held > 1e11 then held = 0 end
  if held > 0 and held >= block then
    if held <= now + short then
      redis.call('DEL', KEYS[i])
      r = {tostring(held), 0, 0}
    else
      r = {tostring(held), 1, blocked}
    end
  elseif not app_on and not acct_on then
    r = {'0', 0, 0}
  else
    local slot = math.max(now, block)
    if app_on then slot = math.max(slot, sane(KEYS[5])) end
    if acct_on then slot = math.max(slot, sane(KEYS[6])) end
    local ttl = math.ceil(slot - now) + 60
    if app_on then redis.call('SET', KEYS[5], tostring(slot + tonumber(ARGV[3])), 'EX', ttl) end
    if acct_on then redis.call('SET', KEYS[6], tostring(slot + tonumber(ARGV[2])), 'EX', ttl) end
    if slot <= now + short then
      r = {tostring(slot), 0, 0}
    else
      redis.call('SET', KEYS[i], tostring(slot), 'EX', ttl + 600)
      r = {tostring(slot), 1, blocked}
    end
  end
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
end
return out
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


def _sub(platform: str, kind: str, scope: str, account_id: str | None) -> str:
    """A companion key of a scope: ``strikes`` per budget (app / user / Page …), ``hot``/``tat`` per key."""
    if scope == "app" or not account_id:
        return f"mcmp:rl:{platform}:{kind}:app"
    if kind == "strikes":
        return f"mcmp:rl:{platform}:{kind}:{scope}:{account_id}"
    return f"mcmp:rl:{platform}:{kind}:acct:{account_id}"


def block(platform: str, scope: str, account_id: str | None, seconds: float) -> None:
    """Block the scope for ``seconds`` (the platform said so); pacing follows the block.

    Pacing is held after the block for as long as the block itself, at most
    ``PACE_HOLD_SECONDS``: a one-second ``Retry-After`` marks a burst, not a spent budget, and
    must not slow a Page to the pace for a minute; a regain time of minutes does. ``seconds`` is
    bounded first (:func:`mcmp.connectors.waits.bounded_wait`): a non-finite or absurd value
    blocks nothing, a long one at most ``MCMP_MAX_RETRY_AFTER_SECONDS``.
    """
    bounded = bounded_wait(seconds)
    if bounded is None:
        log.warning("rate limit: %s %s gave an unusable wait; not blocking on it", platform, scope)
        return
    seconds = bounded
    now = time.time()
    hold = min(PACE_HOLD_SECONDS, max(0.0, seconds))
    client().eval(
        _EXTEND,
        2,
        _key(platform, scope, account_id),
        _sub(platform, "hot", scope, account_id),
        scope,
        str(now + max(0.0, seconds)),
        str(now),
        str(int(hold)),
    )
    _episode(platform, scope, account_id, now + max(0.0, seconds))
    log.info("rate limit: %s %s blocked for %.0fs", platform, scope, seconds)


def throttled(platform: str, scope: str, account_id: str | None, hint: float | None) -> float:
    """Record a throttling answer; returns how long the scope is blocked from now.

    With the platform's ``hint`` the block is that long. Without one it escalates per budget
    (``ESCALATE_FIRST_SECONDS`` doubling up to ``ESCALATE_MAX_SECONDS``); a throttle met while the
    scope is still blocked (calls that were in flight together) is the same episode.
    """
    hint = bounded_wait(hint)
    if hint is not None:
        block(platform, scope, account_id, hint)
        return hint
    seconds = float(
        client().eval(
            _ESCALATE,
            3,
            _key(platform, scope, account_id),
            _sub(platform, "strikes", scope, account_id),
            _sub(platform, "hot", scope, account_id),
            scope,
            repr(time.time()),
            repr(ESCALATE_FIRST_SECONDS),
            repr(ESCALATE_MAX_SECONDS),
            repr(ESCALATE_QUIET_SECONDS),
            str(int(PACE_HOLD_SECONDS)),
        )
    )
    _episode(platform, scope, account_id, time.time() + seconds)
    log.info("rate limit: %s %s throttled without a hint; blocked for %.0fs", platform, scope, seconds)
    return seconds


# Throttle episodes, for operators (``mcmp status``, the ``mcmp_throttled_seconds`` gauge): one
# member per blocked scope key ("platform|scope|account id"), the start of its episode in one
# sorted set and the end of its latest block in another. A block starting within
# EPISODE_GAP_SECONDS of the previous one's end continues the episode: a Page blocked again and
# again for an hour reads as throttled for an hour, not for its latest 300 s.
EPISODE_STARTS = "mcmp:rl:episodes:start"
EPISODE_ENDS = "mcmp:rl:episodes:end"
EPISODE_GAP_SECONDS = 120.0

_EPISODE = """
local member, now, untilv, gap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ended = tonumber(redis.call('ZSCORE', KEYS[2], member) or '0')
if ended + gap < now then redis.call('ZADD', KEYS[1], now, member) end
redis.call('ZADD', KEYS[2], 'GT', untilv, member)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], 0, now - gap)
for _, m in ipairs(stale) do redis.call('ZREM', KEYS[1], m); redis.call('ZREM', KEYS[2], m) end
return 1
"""


@dataclass(frozen=True)
class Throttle:
    """A scope blocked now, and since when it has been throttled without a pause."""

    platform: str
    scope: str
    account_id: str | None
    since: datetime
    until: datetime


def _episode(platform: str, scope: str, account_id: str | None, until: float) -> None:
    key = "app" if scope == "app" or not account_id else scope
    member = f"{platform}|{key}|{'' if key == 'app' else account_id}"
    try:
        client().eval(
            _EPISODE,
            2,
            EPISODE_STARTS,
            EPISODE_ENDS,
            member,
            repr(time.time()),
            repr(until),
            repr(EPISODE_GAP_SECONDS),
        )
    except redis.RedisError as exc:  # reporting only: the block itself is recorded
        log.warning("throttle episode not recorded (%s)", type(exc).__name__)


def throttled_now() -> list[Throttle]:
    """Every scope blocked right now with the start of its episode, longest first (Redis errors propagate)."""
    now = time.time()
    ends: list[tuple[bytes, float]] = list(
        client().zrangebyscore(EPISODE_ENDS, now, "+inf", withscores=True)  # type: ignore[arg-type]
    )
    if not ends:
        return []
    starts = client().zmscore(EPISODE_STARTS, [m.decode() for m, _ in ends])
    found = []
    for (member, end), start in zip(ends, starts, strict=True):
        platform, scope, account = member.decode().split("|", 2)
        since = float(start) if start is not None else now
        found.append(
            Throttle(
                platform,
                scope,
                account or None,
                datetime.fromtimestamp(since, UTC),
                datetime.fromtimestamp(float(end), UTC),
            )
        )
    return sorted(found, key=lambda t: t.since)


def blocked_until(platform: str, account_id: str) -> datetime | None:
    """The latest block covering this account (app-wide or its own), or None."""
    pipe = client().pipeline(transaction=False)
    pipe.hvals(_key(platform, "app", None))
    pipe.hvals(_key(platform, "account", account_id))
    values = [float(v) for group in pipe.execute() for v in group]
    latest = max((v for v in values if math.isfinite(v)), default=0.0)
    if latest <= time.time():
        return None
    return datetime.fromtimestamp(latest, UTC)


@dataclass(frozen=True)
class Admission:
    """When a delivery may call the platform: now (``at`` None), shortly (wait), or later (defer)."""

    at: datetime | None
    deferred: bool = False
    blocked: bool = False  # deferred by a block (else by pacing)

    def wait_seconds(self) -> float:
        return 0.0 if self.at is None else max(0.0, self.at.timestamp() - time.time())


def admit(
    platform: str, account_id: str, delivery_id: str, *, per_second: float, app_per_second: float
) -> Admission:
    """Take this delivery's slot on the account's (and app's) pacing timeline.

    No block and no pacing: go now. Otherwise the next free slot at or after the block's end; a
    slot more than ``SHORT_WAIT_SECONDS`` away is reserved for the delivery and returned as
    ``deferred``, and the same delivery coming back gets the same slot (unless a newer block
    covers it).
    """
    return admit_many(
        platform, account_id, [delivery_id], per_second=per_second, app_per_second=app_per_second
    )[delivery_id]


def admit_many(
    platform: str,
    account_id: str,
    delivery_ids: Sequence[str],
    *,
    per_second: float,
    app_per_second: float,
) -> dict[str, Admission]:
    """:func:`admit` for several deliveries of one account in one Redis round trip.

    A batch's members of one account are admitted together, in the order given, as that many
    :func:`admit` calls at the same instant would admit them (one slot each on the timeline).
    """
    return admit_accounts([AccountRequest(platform, account_id, delivery_ids, per_second, app_per_second)])


@dataclass(frozen=True)
class AccountRequest:
    """The deliveries of one account to admit, in due order, at that platform's pace."""

    platform: str
    account_id: str
    delivery_ids: Sequence[str]
    per_second: float
    app_per_second: float


def admit_accounts(requests: Sequence[AccountRequest]) -> dict[str, Admission]:
    """:func:`admit_many` for several accounts in one Redis round trip (a pipeline, one script each).

    Each account's script runs atomically on its own timelines, exactly as separate calls would.
    """
    asked = [(r, list(dict.fromkeys(r.delivery_ids))) for r in requests]
    asked = [(r, ids) for r, ids in asked if ids]
    if not asked:
        return {}
    pipe = client().pipeline(transaction=False)
    for r, ids in asked:
        pipe.eval(
            _ADMIT,
            6 + len(ids),
            _key(r.platform, "app", None),
            _key(r.platform, "account", r.account_id),
            _sub(r.platform, "hot", "app", None),
            _sub(r.platform, "hot", "account", r.account_id),
            _sub(r.platform, "tat", "app", None),
            _sub(r.platform, "tat", "account", r.account_id),
            *(f"mcmp:rl:slot:{d}" for d in ids),
            repr(time.time()),
            repr(1.0 / r.per_second),
            repr(1.0 / r.app_per_second),
            repr(SHORT_WAIT_SECONDS),
        )
    now = time.time()
    found: dict[str, Admission] = {}
    for (r, ids), raw in zip(asked, pipe.execute(), strict=True):
        for i, delivery_id in enumerate(ids):
            slot, deferred, blocked = float(raw[3 * i]), bool(int(raw[3 * i + 1])), bool(int(raw[3 * i + 2]))
            if slot <= 0:
                found[delivery_id] = Admission(None)
            elif not math.isfinite(slot) or slot > now + ABSURD_SECONDS:
                # a block stored before waits were bounded (or by hand): never wait on it
                log.warning(
                    "rate limit: %s account %s has an unusable block; ignoring it", r.platform, r.account_id
                )
                found[delivery_id] = Admission(None)
            else:
                found[delivery_id] = Admission(datetime.fromtimestamp(slot, UTC), deferred, blocked)
    return found


def observe(usage: UsageReport) -> None:
    """Usage sink: a regain time blocks the scope; a nearly spent budget turns pacing on."""
    try:
        regain = bounded_wait(usage.retry_after)
        if regain is not None and regain > 0:
            block(usage.platform, usage.scope, usage.account_id, regain)
        elif usage.used_pct is not None and usage.used_pct >= PACE_AT_PCT:
            client().set(
                _sub(usage.platform, "hot", usage.scope, usage.account_id), "1", ex=int(PACE_HOLD_SECONDS)
            )
    except redis.RedisError as exc:  # the limiter must not break publishing; the platform still throttles
        log.warning("could not record rate limit in Redis: %s", type(exc).__name__)


def install() -> None:
    set_sink(observe)
