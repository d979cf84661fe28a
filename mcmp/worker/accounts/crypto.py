"""Tokens at rest: Fernet encryption with key rotation (MultiFernet over ``MCMP_TOKEN_KEYS``).

A stored value is ``mcmpenc:v1:<fernet token>``; anything without that prefix is a plaintext
token written by a frontend (accepted, and sealed by the worker on first touch). Keys are listed
newest first: the first encrypts, all of them decrypt, so a new key can be prepended, every
account re-encrypted (``mcmp tokens rotate``) and the old key dropped afterwards.

Errors name the problem (no key, a malformed key, a value no configured key opens) and never
contain the token or the ciphertext.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from mcmp.config import get_settings

PREFIX = "mcmpenc:v1:"


class TokenKeyError(RuntimeError):
    """The token keys cannot do what was asked; the message is safe to log and show."""


def is_encrypted(stored: str | None) -> bool:
    return bool(stored) and str(stored).startswith(PREFIX)


def generate_key() -> str:
    """A new Fernet key (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


def configured_keys() -> tuple[str, ...]:
    """The raw keys from settings, newest first (empty when none are configured)."""
    return tuple(k.get_secret_value() for k in get_settings().token_keys)


def has_keys() -> bool:
    return bool(configured_keys())


@lru_cache(maxsize=4)
def _fernets(keys: tuple[str, ...]) -> tuple[Fernet, ...]:
    fernets = []
    for index, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise TokenKeyError(
                f"MCMP_TOKEN_KEYS entry {index} of {len(keys)} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes; `mcmp tokens genkey` makes one)"
            ) from None
    return tuple(fernets)


def _multi() -> tuple[MultiFernet, Fernet]:
    keys = configured_keys()
    if not keys:
        raise TokenKeyError("no token keys configured (MCMP_TOKEN_KEYS): cannot encrypt or decrypt tokens")
    fernets = _fernets(keys)
    return MultiFernet(list(fernets)), fernets[0]


def encrypt(plain: str) -> str:
    """Seal ``plain`` with the newest key."""
    multi, _ = _multi()
    return PREFIX + multi.encrypt(plain.encode()).decode()


def decrypt(stored: str) -> str:
    """Open a sealed value with any configured key; ``TokenKeyError`` when none opens it."""
    multi, _ = _multi()
    try:
        return multi.decrypt(stored[len(PREFIX) :].encode()).decode()
    except (InvalidToken, ValueError, TypeError):
        raise TokenKeyError(
            "a stored token cannot be decrypted with any configured key (MCMP_TOKEN_KEYS is missing "
            "the key it was sealed with, or the value is corrupt)"
        ) from None


def uses_newest_key(stored: str) -> bool:
    """Is this sealed value readable with the newest key alone (nothing left to rotate)?"""
    _, newest = _multi()
    try:
        newest.decrypt(stored[len(PREFIX) :].encode())
        return True
    except (InvalidToken, ValueError, TypeError):
        return False


def reseal(stored: str) -> str:
    """``stored`` (sealed with any configured key, or plaintext) sealed with the newest key."""
    return encrypt(decrypt(stored) if is_encrypted(stored) else stored)
