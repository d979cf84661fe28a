"""Token refresh: ahead of expiry (beat), just in time before a publish, one at a time per account.

Single-flight: a refresh holds ``mcmp:token:lock:<account id>`` in Redis (redis-py ``Lock``:
owner token + TTL, so a killed holder frees it by itself). Anyone else who needs the same
account waits by re-reading the account, and uses the token the holder saved instead of
refreshing again. Saving is a conditional update on the ``accessToken`` value that was
refreshed, so a reconnect written meanwhile (frontend or admin API) is never overwritten, and
the refresh token is only replaced when the platform replaced it.

Only a definite revocation (the connector's ``AuthError``: ``invalid_grant``, Graph 190,
LinkedIn 401 on refresh) marks the account ``expired`` (through the caller's ``on_revoked``: the
publish path's also parks the account's deliveries). A refusal for another reason (our app's
client credentials) is ``failed``: logged as an error, never "temporary". Network errors, 5xx and 429 are retried
(tenacity) and then reported as ``unavailable``: the caller publishes with the old token while
it is still valid, or defers without consuming an attempt. Tokens never leave this module in
logs, exceptions or return values other than :class:`Credentials` (whose ``repr`` hides them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import redis
from bson import ObjectId
from redis.exceptions import LockError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from mcmp.config import PlatformSettings, Settings, get_settings
from mcmp.connectors.errors import AuthError, PermanentError, RateLimitedError, RetryableError
from mcmp.connectors.protocol import Connector
from mcmp.connectors.registry import UnknownPlatformError, available_platforms, get_connector
from mcmp.connectors.types import Credentials, TokenGrant
from mcmp.models import AccountStatus, IntegrationAccount
from mcmp.models.base import as_utc, utcnow
from mcmp.models.integration_account import AUTH_ERROR_KEY, AccountField, integration_accounts
from mcmp.worker import metrics
from mcmp.worker.accounts import crypto, secrets
from mcmp.worker.accounts import store as accounts

log = logging.getLogger(__name__)

LOCK_PREFIX = "mcmp:token:lock:"
QUEUED_PREFIX = "mcmp:token:queued:"
BACKOFF_PREFIX = "mcmp:token:backoff:"
POLL_SECONDS = 0.05
# A token this close to expiry is not used for a publish: the call itself takes time.
SAFETY_SECONDS = 5.0
REFRESH_ATTEMPTS = 3
# After a transient refresh failure, other callers use the old token (or defer) for this long
# instead of hammering the token endpoint again.
BACKOFF_SECONDS = 15
QUEUED_TTL_SECONDS = 300
CONNECTED = AccountStatus.CONNECTED.value
# Called when the platform refuses the refresh grant itself: expires the account; False when it
# was reconnected meanwhile. The publish path passes its own (it also parks the deliveries).
OnRevoked = Callable[[IntegrationAccount, str], bool]


class Outcome(StrEnum):
    NOT_DUE = "not_due"  # token valid beyond the margin (or never expires)
    REFRESHED = "refreshed"
    ALREADY_REFRESHED = "already_refreshed"  # another worker refreshed (or a reconnect) meanwhile
    REVOKED = "revoked"  # the account is expired: must be reconnected
    UNAVAILABLE = "unavailable"  # transient: refresh endpoint, lock or Redis unavailable
    FAILED = "failed"  # the token endpoint refused for another reason than the grant (our app's credentials)
    KEY_ERROR = "key_error"  # the stored token cannot be decrypted with the configured keys
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Fresh:
    """What a caller may do now. ``credentials`` is None when there is no usable token."""

    outcome: Outcome
    account: IntegrationAccount | None = None
    credentials: Credentials | None = None
    reason: str = ""

    @property
    def account_id(self) -> str:
        return str(self.account.pk) if self.account is not None else ""


# --- settings and small helpers ------------------------------------------------------------


def margin_seconds(platform: str, settings: Settings) -> float:
    """How long before ``expiresAt`` a platform's token is refreshed (``MCMP_<P>__REFRESH_MARGIN_SECONDS``)."""
    cfg = settings.platform(platform) or PlatformSettings()
    return float(cfg.refresh_margin_seconds)


def _lock_ttl(platform: str, settings: Settings) -> float:
    cfg = settings.platform(platform) or PlatformSettings()
    return REFRESH_ATTEMPTS * cfg.timeout_seconds + 15.0


def is_due(account: IntegrationAccount, settings: Settings, now: datetime | None = None) -> bool:
    expires: datetime | None = as_utc(account.expires_at)
    if expires is None:
        return False
    return expires <= (now or utcnow()) + timedelta(seconds=margin_seconds(account.platform, settings))


def usable(account: IntegrationAccount, now: datetime | None = None) -> bool:
    """Can the stored access token still be used for a call starting now?"""
    expires = as_utc(account.expires_at)
    return bool(account.access_token) and (
        expires is None or expires > (now or utcnow()) + timedelta(seconds=SAFETY_SECONDS)
    )


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


def _r(settings: Settings) -> redis.Redis:
    return _redis(settings.redis_url)


def _reload(account_id: ObjectId | str) -> IntegrationAccount | None:
    account: IntegrationAccount | None = IntegrationAccount.objects(pk=account_id).first()
    return account


# --- encrypt on first touch ----------------------------------------------------------------


def seal_plaintext(account: IntegrationAccount) -> IntegrationAccount:
    """Encrypt plaintext tokens written by a frontend, once, with a conditional update.

    The filter names the exact values read, so a token written meanwhile is never replaced; the
    in-memory document is updated only when the write happened.
    """
    access, refresh = account.access_token, account.refresh_token
    if not (secrets.needs_sealing(access) or secrets.needs_sealing(refresh)):
        return account
    update: dict[str, str] = {}
    if secrets.needs_sealing(access):
        update[AccountField.ACCESS_TOKEN] = secrets.seal(access, str(account.pk))
    if secrets.needs_sealing(refresh):
        update[AccountField.REFRESH_TOKEN] = secrets.seal(refresh, str(account.pk))
    result = integration_accounts().update_one(
        {AccountField.ID: account.pk, AccountField.ACCESS_TOKEN: access, AccountField.REFRESH_TOKEN: refresh},
        {"$set": update},
    )
    if result.modified_count == 1:
        account.access_token = update.get(AccountField.ACCESS_TOKEN, access)
        account.refresh_token = update.get(AccountField.REFRESH_TOKEN, refresh)
        log.info("sealed plaintext tokens of account %s", account.pk)
        return account
    return _reload(account.pk) or account  # sealed (or changed) by someone else: use theirs


def _changed(current: IntegrationAccount, seen: str | None) -> bool:
    """Did the access token itself change (not merely get sealed) since ``seen`` was read?"""
    if current.access_token == seen:
        return False
    if not current.access_token or not seen:
        return True
    try:
        return secrets.reveal(current.access_token, str(current.pk)) != secrets.reveal(seen, str(current.pk))
    except crypto.TokenKeyError:
        return True


# --- the single-flight refresh ---------------------------------------------------------------


def ensure_fresh(
    account: IntegrationAccount,
    settings: Settings | None = None,
    *,
    force: bool = False,
    budget_seconds: float | None = None,
    on_revoked: OnRevoked | None = None,
) -> Fresh:
    """Credentials with a token that is not about to expire, refreshing it at most once at a time.

    ``force`` refreshes even when the token is not due (the admin API's refresh action).
    ``budget_seconds`` bounds the time spent waiting for another refresher and retrying (a
    publish keeps it well inside its in-flight lease); then the old token or nothing is returned.
    ``on_revoked`` expires the account when the grant is refused (default: ``mark_expired``).
    """
    settings = settings or get_settings()
    budget = budget_seconds if budget_seconds is not None else _lock_ttl(account.platform, settings)
    try:
        account = seal_plaintext(account)
        if not force and not is_due(account, settings):
            return _ready(account, Outcome.NOT_DUE)
    except crypto.TokenKeyError as exc:
        return _key_error(account, exc)
    seen = account.access_token
    try:
        if _r(settings).exists(BACKOFF_PREFIX + str(account.pk)):
            current = _reload(account.pk)  # the failure may have expired it meanwhile
            if current is None or current.status != CONNECTED:
                return _settled(current)
            return _fallback(current, "token refresh failed moments ago; retrying later")
        lock = _r(settings).lock(
            LOCK_PREFIX + str(account.pk), timeout=_lock_ttl(account.platform, settings), thread_local=False
        )
        deadline = time.monotonic() + budget
        while not lock.acquire(blocking=False):
            time.sleep(POLL_SECONDS)
            current = _reload(account.pk)
            if current is None:
                return Fresh(Outcome.NOT_FOUND, reason="account was deleted")
            if _changed(current, seen) or current.status != CONNECTED:
                return _settled(current)
            if time.monotonic() > deadline:
                return _fallback(current, "token refresh still in progress elsewhere")
    except redis.RedisError as exc:
        log.warning("token refresh lock unavailable (%s)", type(exc).__name__)
        return _fallback(account, "token refresh lock unavailable (Redis)")
    try:
        current = _reload(account.pk)
        if current is None:
            return Fresh(Outcome.NOT_FOUND, reason="account was deleted")
        if _changed(current, seen) or current.status != CONNECTED:
            return _settled(current)
        return _refresh_locked(current, settings, budget, on_revoked or accounts.mark_expired)
    finally:
        try:
            lock.release()
        except (LockError, redis.RedisError):  # expired meanwhile: the save was conditional anyway
            pass


def _refresh_locked(
    account: IntegrationAccount, settings: Settings, budget: float, on_revoked: OnRevoked
) -> Fresh:
    platform = account.platform
    if not secrets.can_seal():
        # A token the platform issued but that cannot be stored would be lost (and some platforms
        # retire the old refresh token): do not ask for one.
        metrics.token_refresh(platform, Outcome.KEY_ERROR)
        log.error("account %s: %s", account.pk, secrets.NO_KEYS)
        return _fallback(account, secrets.NO_KEYS)
    try:
        credentials = accounts.credentials_for(account)
        connector = get_connector(platform)
    except crypto.TokenKeyError as exc:
        return _key_error(account, exc)
    except UnknownPlatformError as exc:
        return _fallback(account, str(exc))
    try:
        grant = _call_with_retries(connector, credentials, budget)
    except AuthError as exc:
        metrics.token_refresh(platform, Outcome.REVOKED)
        log.warning("token refresh refused for account %s: %s", account.pk, exc.message)
        if not on_revoked(account, exc.message):
            return _settled(_reload(account.pk))
        return Fresh(Outcome.REVOKED, account, None, exc.message)
    except (RetryableError, RateLimitedError) as exc:
        return _transient(account, settings, exc.message)
    except PermanentError as exc:  # e.g. our app's credentials refused: no token from this endpoint
        metrics.token_refresh(platform, Outcome.FAILED)
        log.error("token refresh of account %s (%s) refused: %s", account.pk, platform, exc.message)
        _back_off(account, settings)
        _remember_refusal(account, exc.message)
        failed = _fallback(account, f"token refresh failed: {exc.message}")
        return Fresh(Outcome.FAILED, account, failed.credentials, failed.reason)
    except Exception as exc:  # a connector bug: not a revocation
        log.exception("token refresh of account %s failed unexpectedly", account.pk)
        return _transient(account, settings, f"token refresh failed ({type(exc).__name__})")
    return _save(account, grant)


def _call_with_retries(connector: Connector, credentials: Credentials, budget: float) -> TokenGrant:
    """The refresh call, retried on transient errors only (repeating a refresh is harmless)."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type((RetryableError, RateLimitedError)),
            stop=stop_after_attempt(REFRESH_ATTEMPTS) | stop_after_delay(budget),
            wait=wait_exponential_jitter(initial=0.5, max=4.0),
            reraise=True,
        ):
            with attempt:
                return connector.refresh_token(credentials)
    except RetryError as exc:  # pragma: no cover - reraise=True re-raises the last error
        raise exc.last_attempt.exception() from None  # type: ignore[misc]
    raise AssertionError("unreachable")  # pragma: no cover


def _remember_refusal(account: IntegrationAccount, reason: str) -> None:
    """Record a refused refresh on the account (``metadata.refreshError``): readiness then warns,
    days ahead, about the posts its token will not live to see. Cleared by the next refresh."""
    now = utcnow()
    integration_accounts().update_one(
        {AccountField.ID: account.pk},
        {
            "$set": {
                AccountField.REFRESH_ERROR: reason,
                AccountField.REFRESH_ERROR_AT: now,
                AccountField.UPDATED_AT: now,
            }
        },
    )


def _save(account: IntegrationAccount, grant: TokenGrant) -> Fresh:
    """Write the new token if the account still holds the one that was refreshed."""
    now = utcnow()
    refresh = None if grant.refresh_token is None else secrets.seal(grant.refresh_token, str(account.pk))
    update = accounts.new_token_update(
        secrets.seal(grant.access_token, str(account.pk)),
        refresh,  # never drops a refresh token that was not replaced
        grant.expires_at,
        now,
        **{AccountField.TOKEN_REFRESHED_AT: now},
    )
    result = integration_accounts().update_one(
        {
            AccountField.ID: account.pk,
            AccountField.ACCESS_TOKEN: account.access_token,
            AccountField.STATUS: CONNECTED,
        },
        update,
    )
    if result.modified_count != 1:
        log.info("account %s changed during its token refresh; keeping the newer token", account.pk)
        metrics.token_refresh(account.platform, "superseded")
        return _settled(_reload(account.pk))
    metrics.token_refresh(account.platform, Outcome.REFRESHED)
    log.info(
        "refreshed the token of account %s (%s), valid until %s",
        account.pk,
        account.platform,
        grant.expires_at.isoformat() if grant.expires_at else "it is revoked (no expiry)",
    )
    fresh = _reload(account.pk)
    return _ready(fresh, Outcome.REFRESHED) if fresh is not None else Fresh(Outcome.NOT_FOUND)


# --- outcomes -----------------------------------------------------------------------------


def _ready(account: IntegrationAccount, outcome: Outcome) -> Fresh:
    try:
        return Fresh(outcome, account, accounts.credentials_for(account))
    except crypto.TokenKeyError as exc:
        return _key_error(account, exc)


def _settled(current: IntegrationAccount | None) -> Fresh:
    """Someone else changed the account while we waited: use what they wrote."""
    if current is None:
        return Fresh(Outcome.NOT_FOUND, reason="account was deleted")
    if current.status != CONNECTED:
        reason = (current.metadata or {}).get(AUTH_ERROR_KEY) or f"account status is {current.status}"
        return Fresh(Outcome.REVOKED, current, None, str(reason))
    try:
        current = seal_plaintext(current)
    except crypto.TokenKeyError as exc:
        return _key_error(current, exc)
    return _ready(current, Outcome.ALREADY_REFRESHED)


def _transient(account: IntegrationAccount, settings: Settings, reason: str) -> Fresh:
    metrics.token_refresh(account.platform, "failed_retryable")
    log.warning("token refresh of account %s failed transiently: %s", account.pk, reason)
    _back_off(account, settings)
    return _fallback(account, f"token refresh temporarily failed: {reason}")


def _back_off(account: IntegrationAccount, settings: Settings) -> None:
    try:
        _r(settings).set(BACKOFF_PREFIX + str(account.pk), 1, ex=BACKOFF_SECONDS)
    except redis.RedisError:
        pass


def _fallback(account: IntegrationAccount, reason: str) -> Fresh:
    """No refresh now: the old token if it is still valid, else nothing (the caller defers)."""
    if usable(account):
        fresh = _ready(account, Outcome.UNAVAILABLE)
        return Fresh(Outcome.UNAVAILABLE, account, fresh.credentials, reason)
    return Fresh(Outcome.UNAVAILABLE, account, None, reason)


def _key_error(account: IntegrationAccount, exc: crypto.TokenKeyError) -> Fresh:
    metrics.token_refresh(account.platform, Outcome.KEY_ERROR)
    log.error("account %s: %s", account.pk, exc)
    return Fresh(Outcome.KEY_ERROR, account, None, str(exc))


# --- entry points of the Celery tasks -------------------------------------------------------


def refresh_account(account_id: str, *, force: bool = True, on_revoked: OnRevoked | None = None) -> str:
    """Refresh one account now (admin API, beat); returns the outcome, never a token."""
    if not ObjectId.is_valid(account_id):
        return Outcome.NOT_FOUND.value
    settings = get_settings()
    try:
        account = _reload(ObjectId(account_id))
        if account is None:
            return Outcome.NOT_FOUND.value
        if account.status != CONNECTED:
            return Outcome.REVOKED.value
        return ensure_fresh(account, settings, force=force, on_revoked=on_revoked).outcome.value
    finally:
        try:
            _r(settings).delete(QUEUED_PREFIX + account_id)
        except redis.RedisError:
            pass


def enqueue_due(send: Callable[[str], object], settings: Settings | None = None, limit: int = 500) -> int:
    """Send ``mcmp.tokens.refresh_account`` for connected accounts inside their refresh margin.

    A Redis marker per account (cleared when the task ran, else expiring) keeps a slow or
    backlogged refresh from being queued again at every beat tick.
    """
    settings = settings or get_settings()
    now = utcnow()
    clauses = [
        {
            AccountField.PLATFORM: p,
            AccountField.EXPIRES_AT: {"$lte": now + timedelta(seconds=margin_seconds(p, settings))},
        }
        for p in available_platforms()
    ]
    if not clauses:
        return 0
    due = integration_accounts().find({AccountField.STATUS: CONNECTED, "$or": clauses}, {AccountField.ID: 1})
    due = due.limit(limit)
    sent = 0
    r = _r(settings)
    for doc in due:
        account_id = str(doc["_id"])
        if r.set(QUEUED_PREFIX + account_id, 1, nx=True, ex=QUEUED_TTL_SECONDS):
            send(account_id)
            sent += 1
    if sent:
        log.info("queued %d token refreshes", sent)
    return sent


__all__ = ["Fresh", "Outcome", "enqueue_due", "ensure_fresh", "refresh_account", "seal_plaintext"]
