"""Token handling seam: decrypting stored tokens and registering them for log redaction.

Tokens at rest are Fernet-encrypted (see worker.crypto when configured); a value without the
encryption prefix is a plaintext token written by a frontend and is accepted as is.
"""

from __future__ import annotations

from worker import redaction


def reveal(stored: str) -> str:
    """The plaintext of a stored token (decrypting it when encrypted) — registered for redaction."""
    value = stored
    try:
        from worker import crypto  # optional until keys are configured
    except ImportError:  # pragma: no cover - crypto ships with the package
        crypto = None  # type: ignore[assignment]
    if crypto is not None and crypto.is_encrypted(stored):
        value = crypto.decrypt(stored)
    redaction.register_secret(value)
    return value
