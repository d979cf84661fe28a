"""Finding a post's IntegrationAccount and turning it into connector ``Credentials``."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from mcmp.connectors.types import Credentials
from mcmp.models import AccountStatus, IntegrationAccount
from mcmp.models.base import as_utc, utcnow
from mcmp.worker.accounts import secrets


def find_account(client_id: str, platform: str) -> IntegrationAccount | None:
    """The client's account for ``platform``: a connected one first, else the newest other one."""
    accounts: list[IntegrationAccount] = list(
        IntegrationAccount.objects(client_id=client_id, platform=platform)
    )
    if not accounts:
        return None
    connected = [a for a in accounts if a.status == AccountStatus.CONNECTED.value]
    pool = connected or accounts
    return max(pool, key=lambda a: as_utc(a.updated_at) or as_utc(a.created_at) or utcnow())


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
            "status": AccountStatus.EXPIRED.value,
            "metadata.authError": reason,
            "metadata.authErrorAt": now,
            "updatedAt": now,
        }
    }
    coll = IntegrationAccount._get_collection()
    result = coll.update_one(
        {
            "_id": account.pk,
            "status": {"$ne": AccountStatus.EXPIRED.value},
            "accessToken": account.access_token,
        },
        update,
    )
    if result.modified_count == 1:
        return Expiry.NOW
    doc = coll.find_one({"_id": account.pk}, {"status": 1, "accessToken": 1})
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
