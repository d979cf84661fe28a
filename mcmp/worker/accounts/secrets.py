"""Token handling seam: sealing and opening stored tokens, registering them for log redaction.

Tokens at rest are Fernet-encrypted (:mod:`mcmp.worker.accounts.crypto`, keys from ``MCMP_TOKEN_KEYS``); a
value without the encryption prefix is a plaintext token written by a frontend and is accepted
as is (the worker seals it on first touch). Without any key configured (allowed outside
``MCMP_ENV=prod`` only, which refuses to start) tokens are kept as given and a warning is logged
once; an encrypted value then cannot be opened and raises ``crypto.TokenKeyError``.
"""

from __future__ import annotations

import logging

from mcmp.worker import redaction
from mcmp.worker.accounts import crypto

log = logging.getLogger(__name__)
_warned = False


def reveal(stored: str) -> str:
    """The plaintext of a stored token (decrypting it when encrypted) — registered for redaction."""
    value = stored
    if crypto.is_encrypted(stored):
        redaction.register_secret(stored)
        value = crypto.decrypt(stored)
    redaction.register_secret(value)
    return value


def seal(plain: str) -> str:
    """The value to store for ``plain``: encrypted with the newest key, or as is without keys."""
    redaction.register_secret(plain)
    if crypto.is_encrypted(plain):
        return plain  # already sealed
    if not crypto.has_keys():
        _warn_unencrypted()
        return plain
    stored = crypto.encrypt(plain)
    redaction.register_secret(stored)
    return stored


def needs_sealing(stored: str | None) -> bool:
    """A plaintext token that this process could encrypt now (keys are configured)."""
    return bool(stored) and not crypto.is_encrypted(stored) and crypto.has_keys()


def _warn_unencrypted() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("MCMP_TOKEN_KEYS is not set: tokens are stored unencrypted (refused when MCMP_ENV=prod)")
