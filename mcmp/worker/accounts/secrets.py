"""Token handling seam: sealing and opening stored tokens, registering them for log redaction.

Tokens at rest are Fernet-encrypted and bound to their account (:mod:`mcmp.worker.accounts.crypto`,
keys from ``MCMP_TOKEN_KEYS``): every call names the account the value belongs to. A value
without the encryption prefix is a plaintext token written by a frontend and is accepted
as is (the worker seals it on first touch). Without any key configured (``MCMP_ENV=prod``
refuses to start), no process *writes* a token: :func:`seal` raises ``crypto.TokenKeyError``
unless ``MCMP_ALLOW_PLAINTEXT_TOKENS=true`` says to store tokens unencrypted (a warning is
logged once). An encrypted value cannot be opened without keys either.
"""

from __future__ import annotations

import logging

from mcmp.config import get_settings
from mcmp.worker import redaction
from mcmp.worker.accounts import crypto

log = logging.getLogger(__name__)
_warned = False
NO_KEYS = (
    "refusing to store a token unencrypted: MCMP_TOKEN_KEYS is not set (`mcmp tokens genkey` makes a "
    "key; MCMP_ALLOW_PLAINTEXT_TOKENS=true stores tokens unencrypted instead)"
)


def reveal(stored: str, account_id: str) -> str:
    """The plaintext of ``account_id``'s stored token (decrypting it when encrypted; one sealed for
    another account raises ``crypto.TokenBindingError``) — registered for redaction."""
    value = stored
    if crypto.is_encrypted(stored):
        redaction.register_secret(stored)
        value = crypto.decrypt(stored, account_id)
    redaction.register_secret(value)
    return value


def plaintext_allowed() -> bool:
    """Has the operator said to store tokens unencrypted when no key is configured?"""
    return bool(get_settings().allow_plaintext_tokens)


def can_seal() -> bool:
    """Can this process write a token now (keys configured, or plaintext explicitly allowed)?"""
    return crypto.has_keys() or plaintext_allowed()


def seal(plain: str, account_id: str) -> str:
    """The value to store on ``account_id`` for ``plain``: encrypted for it with the newest key.

    A value already sealed is kept as is once it opens for this account (one sealed for another
    raises ``crypto.TokenBindingError``). Without keys, ``crypto.TokenKeyError`` — unless
    ``MCMP_ALLOW_PLAINTEXT_TOKENS`` is set, when ``plain`` is stored as is (the message never
    contains the token).
    """
    redaction.register_secret(plain)
    if crypto.is_encrypted(plain):
        reveal(plain, account_id)  # already sealed: only if it is this account's
        return plain
    if not crypto.has_keys():
        if not plaintext_allowed():
            raise crypto.TokenKeyError(NO_KEYS)
        _warn_unencrypted()
        return plain
    stored = crypto.encrypt(plain, account_id)
    redaction.register_secret(stored)
    return stored


def needs_sealing(stored: str | None) -> bool:
    """A plaintext token that this process could encrypt now (keys are configured)."""
    return bool(stored) and not crypto.is_encrypted(stored) and crypto.has_keys()


def _warn_unencrypted() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "MCMP_TOKEN_KEYS is not set and MCMP_ALLOW_PLAINTEXT_TOKENS is: tokens are stored unencrypted"
        )
