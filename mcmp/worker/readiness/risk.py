"""Accounts at risk: a token that will be dead when a scheduled post needs it, and nobody can revive it.

The publish path refreshes a token just in time (``mcmp.worker.accounts.tokens``); that works
only when a refresh is possible. Known days ahead, it is not when the account has no refresh
token (LinkedIn and Google Business refresh with one), when its last refresh was refused
(``metadata.refreshError``, written by the refresh), or when the platform already said the grant
is gone (``status: expired`` with ``metadata.authError``). Facebook and Instagram exchange the
access token itself, so they refresh while it is still valid; a website secret never expires.

One rule (:func:`risk_at`) serves the posts' readiness, ``GET /v1/accounts?atRisk=true``, the
``mcmp_posts_at_risk`` gauge and the daily log line. Tokens are never read for it: only whether
one is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mcmp.models import AccountStatus, IntegrationAccount, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.models.integration_account import AccountDoc, integration_accounts
from mcmp.models.post import PostDoc, posts
from mcmp.worker.accounts import store as account_store
from mcmp.worker.accounts.tokens import SAFETY_SECONDS

log = logging.getLogger(__name__)

# Platforms whose refresh exchanges the current access token (no refresh token needed) while it is valid.
EXCHANGES_ACCESS_TOKEN = frozenset({"facebook", "instagram"})
# Metadata the token refresh writes when the token endpoint refused for good (cleared on success).
REFRESH_ERROR = "refreshError"

# Why an account is at risk (the ``reason`` label of mcmp_posts_at_risk).
NO_REFRESH_TOKEN = "no_refresh_token"
REFRESH_FAILED = "refresh_failed"
GRANT_REVOKED = "grant_revoked"
NOT_CONNECTED = "not_connected"
NO_TOKEN = "no_token"
REASONS = (NO_REFRESH_TOKEN, REFRESH_FAILED, GRANT_REVOKED, NOT_CONNECTED, NO_TOKEN)

# Everything risk needs from an account, none of it secret.
FIELDS = {"clientId": 1, "platform": 1, "status": 1, "expiresAt": 1, "metadata": 1, "updatedAt": 1}
FUTURE_STATUSES = (PostStatus.SCHEDULED.value, PostStatus.APPROVED.value)


@dataclass(frozen=True)
class AccountFacts:
    """An account as risk sees it: ids, status, expiry and whether tokens are stored."""

    id: str
    client_id: str
    platform: str
    status: str
    expires_at: datetime | None
    has_access: bool
    has_refresh: bool
    auth_error: str | None = None
    refresh_error: str | None = None

    @classmethod
    def of(cls, account: IntegrationAccount) -> AccountFacts:
        meta = account.metadata or {}
        return cls(
            str(account.pk),
            str(account.client_id),
            str(account.platform),
            str(account.status or AccountStatus.CONNECTED.value),
            as_utc(account.expires_at),
            bool(account.access_token),
            bool(account.refresh_token),
            _text(meta.get("authError")),
            _refusal(meta, account.updated_at),
        )

    @classmethod
    def from_doc(cls, doc: AccountDoc, has_access: bool, has_refresh: bool) -> AccountFacts:
        meta: object = doc.get("metadata") or {}
        expires = doc.get("expiresAt")
        return cls(
            str(doc["_id"]),
            str(doc.get("clientId")),
            str(doc.get("platform")),
            str(doc.get("status") or AccountStatus.CONNECTED.value),
            as_utc(expires) if isinstance(expires, datetime) else None,
            has_access,
            has_refresh,
            _text(meta.get("authError")) if isinstance(meta, Mapping) else None,
            _refusal(meta, doc.get("updatedAt")) if isinstance(meta, Mapping) else None,
        )


def _refusal(meta: Mapping[str, Any], updated_at: object) -> str | None:
    """The refused refresh, while it is the account's last change (a reconnect written since,
    by the frontend or the API, moves ``updatedAt`` on and makes it history)."""
    at = meta.get("refreshErrorAt")
    if (
        meta.get(REFRESH_ERROR) is None
        or not isinstance(at, datetime)
        or not isinstance(updated_at, datetime)
    ):
        return None
    return _text(meta.get(REFRESH_ERROR)) if as_utc(at) >= as_utc(updated_at) else None


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:300]


@dataclass(frozen=True)
class Risk:
    """Why a post at ``when`` would fail because of its account, and what to do."""

    reason: str
    message: str
    field: str = "account"


def _fmt(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC"


def not_connected(facts: AccountFacts) -> Risk | None:
    """The account must be reconnected before anything is published with it."""
    if facts.status == AccountStatus.CONNECTED.value:
        return None
    if facts.auth_error:
        return Risk(
            GRANT_REVOKED,
            f"{facts.platform} account is {facts.status}: the platform refused its token "
            f"({facts.auth_error}); reconnect it",
        )
    return Risk(NOT_CONNECTED, f"{facts.platform} account is {facts.status}; reconnect it")


def risk_at(facts: AccountFacts, when: datetime, now: datetime | None = None) -> Risk | None:
    """Why a post due at ``when`` would fail for this account's token, or None if it will not."""
    now = now or utcnow()
    gone = not_connected(facts)
    if gone is not None:
        return gone
    if not facts.has_access:
        return Risk(
            NO_TOKEN, f"{facts.platform} account has no access token; reconnect it", "account.accessToken"
        )
    expires = facts.expires_at
    if expires is None or expires > when + timedelta(seconds=SAFETY_SECONDS):
        return None
    if facts.refresh_error:
        why = f"its last refresh was refused ({facts.refresh_error})"
        reason = REFRESH_FAILED
    elif facts.has_refresh or facts.platform not in _NEEDS_REFRESH_TOKEN:
        if facts.platform not in EXCHANGES_ACCESS_TOKEN or expires > now:
            return None  # refreshed just in time (or by beat before it expires)
        why, reason = "it expired and cannot be exchanged any more", NO_REFRESH_TOKEN
    else:
        why, reason = "it has no refresh token", NO_REFRESH_TOKEN
    return Risk(
        reason,
        f"{facts.platform} token expires {_fmt(expires)}, before this post ({_fmt(when)}), and cannot "
        f"be refreshed: {why}; reconnect the account",
        "account.expiresAt",
    )


# Platforms whose refresh needs a stored refresh token (the connectors refuse without one).
_NEEDS_REFRESH_TOKEN = frozenset({"linkedin", "google-business"})


def may_be_at_risk_query() -> dict[str, Any]:
    """Accounts :func:`risk_at` can flag at all: not connected, or with an expiry."""
    return {"$or": [{"status": {"$ne": AccountStatus.CONNECTED.value}}, {"expiresAt": {"$type": "date"}}]}


def load(query: Mapping[str, Any], limit: int = 0) -> list[AccountFacts]:
    """Facts of the accounts matching ``query``, without reading any token."""
    docs = list(integration_accounts().find(dict(query), FIELDS).sort("_id", -1).limit(limit))
    flags = account_store.token_flags([d["_id"] for d in docs])
    return [AccountFacts.from_doc(d, *flags[d["_id"]]) for d in docs]


@dataclass(frozen=True)
class AtRisk:
    """An account at risk: the first scheduled post it would fail, when, and how many."""

    account: AccountFacts
    risk: Risk
    first_post_id: str
    first_post_at: datetime
    posts: int


def _future_posts(facts: AccountFacts, after: datetime) -> Iterator[PostDoc]:
    yield from (
        posts()
        .find(
            {
                "clientId": facts.client_id,
                "status": {"$in": list(FUTURE_STATUSES)},
                "platforms": facts.platform,
                "scheduleTime": {"$gt": after},
            },
            {"scheduleTime": 1},
        )
        .sort("scheduleTime", 1)
    )


def assess(facts: AccountFacts, now: datetime | None = None) -> AtRisk | None:
    """The account's risk over its client's future posts on its platform (dated ones)."""
    now = now or utcnow()
    if not_connected(facts) is None and facts.has_access and facts.expires_at is None:
        return None
    after = now if facts.expires_at is None or not_connected(facts) else max(now, facts.expires_at)
    first: tuple[str, datetime, Risk] | None = None
    count = 0
    for post in _future_posts(facts, after):
        when = as_utc(post["scheduleTime"])
        risk = risk_at(facts, when, now)
        if risk is None:
            continue
        count += 1
        if first is None:
            first = (str(post["_id"]), when, risk)
    if first is None:
        return None
    return AtRisk(facts, first[2], first[0], first[1], count)


def at_risk(query: Mapping[str, Any], now: datetime | None = None, limit: int = 0) -> list[AtRisk]:
    """Accounts matching ``query`` (a tenant filter) that will fail one of their scheduled posts."""
    now = now or utcnow()
    found = []
    for facts in load({**query, **may_be_at_risk_query()}, limit):
        risky = assess(facts, now)
        if risky is not None:
            found.append(risky)
    return found


def log_once_a_day(risky: AtRisk, redis_client: Any) -> bool:
    """One warning per account per UTC day (a Redis marker); True when this call logged."""
    account = risky.account
    key = f"mcmp:readiness:risk-logged:{account.id}:{utcnow():%Y-%m-%d}"
    try:
        if not redis_client.set(key, 1, nx=True, ex=2 * 86400):
            return False
    except Exception as exc:  # Redis down: better a repeated line than none
        log.debug("risk log marker unavailable (%s)", type(exc).__name__)
    log.warning(
        "account %s (%s) of client %s at risk (%s): %s; first post %s at %s would fail (%d posts)",
        account.id,
        account.platform,
        account.client_id,
        risky.risk.reason,
        risky.risk.message,
        risky.first_post_id,
        risky.first_post_at.isoformat(),
        risky.posts,
        extra={"event": "account_at_risk", "account_id": account.id, "reason": risky.risk.reason},
    )
    return True


__all__ = ["REASONS", "AccountFacts", "AtRisk", "Risk", "assess", "at_risk", "log_once_a_day", "risk_at"]
