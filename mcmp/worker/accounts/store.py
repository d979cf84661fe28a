"""The client's account for a platform, its credentials, and the writes to ``integrationaccounts``.

Which account a (client, platform) publishes with is decided here and only here
(:func:`choose_account`): the publish path, the batch path, the dispatcher's resumption of
deliveries waiting for a reconnect and the API's checks all ask :func:`find_account` or
:func:`find_accounts`, so they can never disagree about which token a post goes out with.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId

from mcmp.connectors.types import Credentials
from mcmp.models import AccountStatus, IntegrationAccount
from mcmp.models.base import as_utc, utcnow
from mcmp.models.integration_account import AccountDoc, AccountField, integration_accounts
from mcmp.worker.accounts import secrets

_NEVER = datetime.min.replace(tzinfo=UTC)


def _recency(account: IntegrationAccount) -> tuple[datetime, str]:
    changed = as_utc(account.updated_at) or as_utc(account.created_at) or _NEVER
    return changed, str(account.pk)


def choose_account(accounts: Iterable[IntegrationAccount]) -> IntegrationAccount | None:
    """The one rule for picking a client's account for a platform among its candidates.

    A connected account wins over any other; among the winners the most recently changed
    (``updatedAt``, else ``createdAt``) is taken, and an exact tie goes to the newer ``_id``,
    so every process picks the same account. When none is connected the most recent other one
    is returned: publishing with it parks the delivery as waiting for a reconnect, naming it.
    """
    pool = list(accounts)
    connected = [a for a in pool if a.status == AccountStatus.CONNECTED.value]
    candidates = connected or pool
    return max(candidates, key=_recency) if candidates else None


def find_account(client_id: str, platform: str) -> IntegrationAccount | None:
    """The client's account for ``platform`` by :func:`choose_account`; None when it has none."""
    return choose_account(IntegrationAccount.objects(client_id=client_id, platform=platform))


def find_accounts(keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], IntegrationAccount]:
    """:func:`find_account` for many (client id, platform) pairs in one query; absent pairs left out.

    The query asks for every platform of every client named (the product of the two lists); only
    the documents of pairs asked for become ``IntegrationAccount`` objects (~50 µs of CPU each).
    """
    if not keys:
        return {}
    candidates: dict[tuple[str, str], list[IntegrationAccount]] = {}
    query = {
        AccountField.CLIENT_ID: {"$in": list({c for c, _ in keys})},
        AccountField.PLATFORM: {"$in": list({p for _, p in keys})},
    }
    for doc in integration_accounts().find(query):
        key = (str(doc.get(AccountField.CLIENT_ID)), str(doc.get(AccountField.PLATFORM)))
        if key in keys:
            candidates.setdefault(key, []).append(IntegrationAccount._from_son(doc))
    chosen = {key: choose_account(pool) for key, pool in candidates.items()}
    return {key: account for key, account in chosen.items() if account is not None}


def token_flags(ids: Sequence[ObjectId]) -> dict[ObjectId, tuple[bool, bool]]:
    """Which accounts hold an access and a refresh token, without reading any token."""
    coll = integration_accounts()
    present = {"$nin": [None, ""]}
    has_access = {
        d[AccountField.ID]
        for d in coll.find(
            {AccountField.ID: {"$in": list(ids)}, AccountField.ACCESS_TOKEN: present}, {AccountField.ID: 1}
        )
    }
    has_refresh = {
        d[AccountField.ID]
        for d in coll.find(
            {AccountField.ID: {"$in": list(ids)}, AccountField.REFRESH_TOKEN: present}, {AccountField.ID: 1}
        )
    }
    return {i: (i in has_access, i in has_refresh) for i in ids}


def credentials_for(account: IntegrationAccount) -> Credentials:
    """Decrypted credentials for one call; the secrets are registered for log redaction."""
    access = secrets.reveal(account.access_token, str(account.pk)) if account.access_token else ""
    refresh = secrets.reveal(account.refresh_token, str(account.pk)) if account.refresh_token else None
    return Credentials(
        account_id=str(account.pk),
        platform=account.platform,
        access_token=access,
        refresh_token=refresh,
        expires_at=as_utc(account.expires_at),
        external_account_id=account.external_account_id,
        account_name=account.account_name,
        metadata=dict(account.metadata or {}),
    )


class Expiry(StrEnum):
    """What marking an account expired did."""

    NOW = "now"  # this call moved it from connected to expired
    ALREADY = "already"  # it was expired (or otherwise not connected) already
    RECONNECTED = "reconnected"  # a new token was written meanwhile: not expired


def expire(account: IntegrationAccount, reason: str) -> Expiry:
    """Account needs reconnecting: status ``expired`` with the reason in ``metadata``.

    Conditional on the access token that failed, so a reconnect written meanwhile is never
    marked expired (``RECONNECTED``: the caller should try again with the new token).
    """
    now = utcnow()
    update: dict[str, Any] = {
        "$set": {
            AccountField.STATUS: AccountStatus.EXPIRED.value,
            AccountField.AUTH_ERROR: reason,
            AccountField.AUTH_ERROR_AT: now,
            AccountField.UPDATED_AT: now,
        }
    }
    coll = integration_accounts()
    result = coll.update_one(
        {
            AccountField.ID: account.pk,
            AccountField.STATUS: {"$ne": AccountStatus.EXPIRED.value},
            AccountField.ACCESS_TOKEN: account.access_token,
        },
        update,
    )
    if result.modified_count == 1:
        return Expiry.NOW
    doc = coll.find_one({AccountField.ID: account.pk}, {AccountField.STATUS: 1, AccountField.ACCESS_TOKEN: 1})
    if (
        doc is None
        or doc.get("status") != AccountStatus.CONNECTED.value
        or doc.get("accessToken") == account.access_token
    ):
        return Expiry.ALREADY
    return Expiry.RECONNECTED


def mark_expired(account: IntegrationAccount, reason: str) -> bool:
    """:func:`expire`; False exactly when the account was reconnected meanwhile."""
    return expire(account, reason) is not Expiry.RECONNECTED


def credentials_without_secrets(account: IntegrationAccount) -> Credentials:
    """The account's ids and metadata for validation only: no token is decrypted or carried."""
    return Credentials(
        account_id=str(account.pk),
        platform=account.platform,
        access_token="",
        expires_at=as_utc(account.expires_at),
        external_account_id=account.external_account_id,
        account_name=account.account_name,
        metadata=dict(account.metadata or {}),
        secrets_withheld=True,
    )


def store_token(
    account_id: str,
    scope: Mapping[str, Any],
    access_token: str,
    refresh_token: str | None = None,
    expires_at: datetime | None = None,
) -> AccountDoc | None:
    """Seal and store a new token on an account inside ``scope`` (status ``connected``).

    Returns the account as written, or None when there is no such account in ``scope``.
    An existing refresh token is kept unless a new one is given; ``expiresAt`` always describes
    the new access token (absent when unknown); the auth and refresh errors of the old token
    are cleared. Raises ``crypto.TokenKeyError`` (no key to seal with) or
    ``crypto.TokenBindingError`` before anything is written.
    """
    access = secrets.seal(access_token, account_id)
    refresh = None if refresh_token is None else secrets.seal(refresh_token, account_id)
    return integration_accounts().find_one_and_update(
        {AccountField.ID: ObjectId(account_id), **scope},
        new_token_update(access, refresh, expires_at, utcnow()),
        return_document=True,
    )


def new_token_update(
    access_sealed: str,
    refresh_sealed: str | None,
    expires_at: datetime | None,
    now: datetime,
    **also: object,
) -> dict[str, dict[str, object]]:
    """The update that installs a new (sealed) token: connected, old auth/refresh errors cleared.

    A refresh token is only replaced when a new one is given (never dropped); ``expiresAt``
    always describes the new access token (unset when unknown). ``also`` adds fields to ``$set``.
    """
    to_set: dict[str, object] = {
        AccountField.ACCESS_TOKEN: access_sealed,
        AccountField.STATUS: AccountStatus.CONNECTED.value,
        AccountField.UPDATED_AT: now,
        **also,
    }
    to_unset: dict[str, object] = dict.fromkeys(
        (
            AccountField.AUTH_ERROR,
            AccountField.AUTH_ERROR_AT,
            AccountField.REFRESH_ERROR,
            AccountField.REFRESH_ERROR_AT,
        ),
        "",
    )
    if refresh_sealed is not None:
        to_set[AccountField.REFRESH_TOKEN] = refresh_sealed
    if expires_at is not None:
        to_set[AccountField.EXPIRES_AT] = as_utc(expires_at)
    else:
        to_unset[AccountField.EXPIRES_AT] = ""
    return {"$set": to_set, "$unset": to_unset}
