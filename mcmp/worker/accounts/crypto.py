"""Tokens at rest: Fernet encryption with key rotation (MultiFernet over ``MCMP_TOKEN_KEYS``).

A stored value is ``mcmpenc:v2:<fernet token of {"account": <account id>, "token": <token>}>``:
the account id is sealed with the token and checked on open, so a value copied to another
account (by a bug, or by someone with write access to one document) is refused instead of
publishing as the first account. ``mcmpenc:v1:<fernet token of the bare token>`` values, sealed
before binding, still open (``mcmp tokens rotate`` re-seals them bound). Anything without a prefix
is a plaintext token written by a frontend (accepted, and sealed by the worker on first touch).
Keys are listed newest first: the first encrypts, all of them decrypt, so a new key can be
prepended, every account re-encrypted (``mcmp tokens rotate``) and the old key dropped afterwards.

Errors name the problem (no key, a malformed key, a value no configured key opens, a value bound
to another account) and never contain the token or the ciphertext.
"""

from __future__ import annotations

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from mcmp.config import get_settings
from mcmp.errors import PublisherError

PREFIX = "mcmpenc:v2:"  # bound to the account
UNBOUND_PREFIX = "mcmpenc:v1:"  # sealed before binding: opens for any account until rotated
_PREFIX_CHARS = len(PREFIX)
assert len(UNBOUND_PREFIX) == _PREFIX_CHARS


class TokenKeyError(PublisherError, RuntimeError):
    """The token keys cannot do what was asked; the message is safe to log and show."""


class TokenBindingError(TokenKeyError):
    """A sealed value opens, but for another account (copied); the message names no secret."""


def is_encrypted(stored: str | None) -> bool:
    return bool(stored) and str(stored).startswith((PREFIX, UNBOUND_PREFIX))


def is_bound(stored: str | None) -> bool:
    """Sealed with its account id (anything else is re-sealed by ``mcmp tokens rotate``)."""
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


def bound_payload(plain: str, account_id: str) -> bytes:
    """What is sealed: the token with its account id (the frontend's Node snippet writes the same)."""
    return json.dumps({"account": str(account_id), "token": plain}, separators=(",", ":")).encode()


def encrypt(plain: str, account_id: str) -> str:
    """Seal ``plain`` for ``account_id`` with the newest key."""
    multi, _ = _multi()
    return PREFIX + multi.encrypt(bound_payload(plain, account_id)).decode()


def _unbound_token(payload: bytes, account_id: str) -> str:
    """The token inside a bound payload, after checking it was sealed for ``account_id``."""
    try:
        doc = json.loads(payload)
        owner, token = doc["account"], doc["token"]
        if not isinstance(owner, str) or not isinstance(token, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise TokenKeyError(
            "a stored token opens but its content is malformed (the value is corrupt)"
        ) from None
    if owner != str(account_id):
        raise TokenBindingError(
            f"the token stored on account {account_id} was sealed for another account (copied between "
            "accounts?); it is not used: reconnect this account"
        )
    return token


def _open(fernet: Fernet | MultiFernet, stored: str) -> bytes:
    return fernet.decrypt(stored[_PREFIX_CHARS:].encode())


def decrypt(stored: str, account_id: str) -> str:
    """Open a sealed value of ``account_id`` with any configured key.

    ``TokenKeyError`` when no key opens it; ``TokenBindingError`` when it was sealed for another
    account. An unbound (``v1``) value opens for any account until it is rotated.
    """
    multi, _ = _multi()
    try:
        payload = _open(multi, stored)
    except (InvalidToken, ValueError, TypeError):
        raise TokenKeyError(
            "a stored token cannot be decrypted with any configured key (MCMP_TOKEN_KEYS is missing "
            "the key it was sealed with, or the value is corrupt)"
        ) from None
    if not is_bound(stored):
        return payload.decode()
    return _unbound_token(payload, account_id)


def is_current(stored: str, account_id: str) -> bool:
    """Bound to ``account_id`` and readable with the newest key alone (nothing left to rotate)?"""
    if not is_bound(stored):
        return False
    _, newest = _multi()
    try:
        _unbound_token(_open(newest, stored), account_id)
        return True
    except (InvalidToken, ValueError, TypeError, TokenKeyError):
        return False


def reseal(stored: str, account_id: str) -> str:
    """``stored`` (sealed with any configured key, bound or not, or plaintext) sealed for
    ``account_id`` with the newest key; ``TokenBindingError`` when bound to another account."""
    return encrypt(decrypt(stored, account_id) if is_encrypted(stored) else stored, account_id)
