"""Finding a post's IntegrationAccount and turning it into connector ``Credentials``."""

from __future__ import annotations

from typing import Any

from connectors.types import Credentials
from models import AccountStatus, IntegrationAccount
from models.base import as_utc, utcnow
from worker import secrets


def find_account(client_id: str, platform: str) -> IntegrationAccount | None:
    """The client's account for ``platform``: a connected one first, else the newest other one."""
    accounts = list(IntegrationAccount.objects(client_id=client_id, platform=platform))
    if not accounts:
        return None
    connected = [a for a in accounts if a.status == AccountStatus.CONNECTED.value]
    pool = connected or accounts
    return max(pool, key=lambda a: as_utc(a.updated_at) or as_utc(a.created_at) or utcnow())


def credentials_for(account: IntegrationAccount) -> Credentials:
    """Decrypted credentials for one call; the secrets are registered for log redaction."""
    access = secrets.reveal(account.access_token) if account.access_token else ""
    refresh = secrets.reveal(account.refresh_token) if account.refresh_token else None
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


def mark_expired(account: IntegrationAccount, reason: str) -> None:
    """Account needs reconnecting: status ``expired`` with the reason in ``metadata``."""
    now = utcnow()
    update: dict[str, Any] = {
        "$set": {
            "status": AccountStatus.EXPIRED.value,
            "metadata.authError": reason,
            "metadata.authErrorAt": now,
            "updatedAt": now,
        }
    }
    IntegrationAccount._get_collection().update_one(
        {"_id": account.pk, "status": {"$ne": AccountStatus.EXPIRED.value}}, update
    )
