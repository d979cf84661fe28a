"""What happens once a platform definitely rejected an account's token — decided here only.

"Definitely" is the connector's call (``AuthError``: Graph 190, a 401 that a forced refresh did
not cure, ``invalid_grant``, a refused webhook secret or application password), or a refresh
that cannot be done at all. Every such path (publish, just-in-time refresh, the refresh task)
ends in :func:`token_rejected`: the account becomes ``expired`` with the reason in
``metadata.authError``, its pending and queued deliveries wait (``waiting_auth``, no attempt
spent) instead of each meeting the same refusal, and one log line says so. A reconnect (new
token written by the frontend or ``PUT /v1/accounts/{id}/token``) releases them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from mcmp.models import AccountStatus, IntegrationAccount
from mcmp.worker.accounts import store as accounts
from mcmp.worker.accounts.store import Expiry
from mcmp.worker.publishing import delivery_states

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejection:
    """The outcome: ``expiry`` says whether this call expired the account; ``parked`` how many
    other deliveries it moved to ``waiting_auth``."""

    expiry: Expiry
    parked: int = 0

    @property
    def reconnected(self) -> bool:
        """A new token was written meanwhile: try again with it instead of waiting."""
        return self.expiry is Expiry.RECONNECTED


def token_rejected(account: IntegrationAccount, reason: str, *, holding: int = 0) -> Rejection:
    """The platform rejected ``account``'s token: expire it and park its open deliveries.

    ``reason`` is platform error text (connectors redact tokens from it). ``holding`` counts
    the deliveries the caller parks itself (the attempt that met the refusal), for the log.
    """
    expiry = accounts.expire(account, reason)
    if expiry is Expiry.RECONNECTED:
        log.info(
            "account %s (%s) was reconnected meanwhile; using the new token", account.pk, account.platform
        )
        return Rejection(expiry)
    parked = delivery_states.park_for_auth(
        str(account.client_id), str(account.platform), waiting_note(str(account.platform), reason)
    )
    if parked and connected_now(account):  # reconnected between the two writes: release them now
        delivery_states.resume_waiting(platform=str(account.platform), client_id=str(account.client_id))
        return Rejection(Expiry.RECONNECTED)
    if expiry is Expiry.NOW or parked:
        log.warning(
            "account %s (%s): token rejected by the platform (%s); %s; %d deliveries wait for re-authorisation",
            account.pk,
            account.platform,
            reason,
            "marked expired" if expiry is Expiry.NOW else "already expired",
            parked + holding,
            extra={"account_id": str(account.pk)},
        )
    return Rejection(expiry, parked)


def connected_now(account: IntegrationAccount) -> bool:
    """Is the account connected in the database now (whatever the copy in hand says)?"""
    current = IntegrationAccount.objects(pk=account.pk).only("status").first()
    return current is not None and current.status == AccountStatus.CONNECTED.value


def rejecter(forget_account: Callable[[], None]) -> Callable[[IntegrationAccount, str], bool]:
    """``tokens.ensure_fresh``'s ``on_revoked`` for an attempt (the refresh grant was refused):
    True when the account now waits for a reconnect, False when it was reconnected meanwhile."""

    def reject(account: IntegrationAccount, reason: str) -> bool:
        forget_account()
        return not token_rejected(account, reason, holding=1).reconnected

    return reject


def waiting_note(platform: str, reason: str) -> str:
    """A waiting delivery's ``lastError`` (and the post's), whichever way it came to wait."""
    return f"{platform}: account must be reconnected ({reason})"


__all__ = ["Rejection", "connected_now", "rejecter", "token_rejected", "waiting_note"]
