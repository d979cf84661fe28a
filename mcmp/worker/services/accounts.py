"""Operator actions on integration accounts: a new token, and the deliveries waiting for it.

The write itself is :func:`mcmp.worker.accounts.store.store_token` (``mcmp.worker.accounts``
owns every write to ``integrationaccounts``); this module maps its refusals to operation errors
and resumes the deliveries the reconnect unblocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mcmp.models.integration_account import AccountDoc
from mcmp.worker.accounts import crypto
from mcmp.worker.accounts import store as account_store
from mcmp.worker.publishing import delivery_states
from mcmp.worker.services.errors import InvalidRequest, NotFound, Unavailable, canonical


def store_token(
    account_id: str,
    scope: Mapping[str, Any],
    access_token: str,
    refresh_token: str | None = None,
    expires_at: datetime | None = None,
) -> AccountDoc:
    """Store a new token on an account (status ``connected``) and resume deliveries waiting for it.

    An existing refresh token is kept unless a new one is given; ``expiresAt`` always describes
    the new access token (absent when unknown). Tokens are sealed (encrypted) before they are
    written; without a key :class:`Unavailable` is raised and nothing is written, unless
    ``MCMP_ALLOW_PLAINTEXT_TOKENS`` allows storing them unencrypted.
    """
    account_id = canonical(account_id, "account")
    try:
        account = account_store.store_token(account_id, scope, access_token, refresh_token, expires_at)
    except crypto.TokenBindingError as exc:
        raise InvalidRequest(str(exc), field="accessToken") from None
    except crypto.TokenKeyError as exc:
        raise Unavailable(str(exc)) from None
    if account is None:
        raise NotFound(f"account {account_id} not found")
    delivery_states.resume_waiting(platform=account["platform"], client_id=account["clientId"])
    return account
