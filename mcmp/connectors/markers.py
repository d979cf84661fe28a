"""An invisible, per-delivery marker (shared by every connector whose platform has no idempotency key) appended to the post text, so reconciliation can find the
post a timed-out attempt created without relying on the text alone.

Choice (documented here because the platforms offer no idempotency key): the marker is a
sentinel U+2063 (INVISIBLE SEPARATOR) followed by 24 zero-width characters that encode the first
48 bits of ``sha256(idempotency_key)``, two bits per character. It renders as nothing, costs 25
characters of the platform's limit, and is derived only from the delivery id (no secret). If a
platform ever strips these characters, ``find_published`` falls back to an exact text match
inside the attempt window (see the connectors).
"""

from __future__ import annotations

import hashlib

SENTINEL = "\u2063"
_DIGITS = ("\u200b", "\u200c", "\u200d", "\u2060")
_INVISIBLE = frozenset((SENTINEL, *_DIGITS))
MARKER_LENGTH = 25


def marker_for(idempotency_key: str) -> str:
    bits = int(hashlib.sha256(idempotency_key.encode()).hexdigest()[:12], 16)
    symbols = [_DIGITS[(bits >> shift) & 0b11] for shift in range(46, -1, -2)]
    return SENTINEL + "".join(symbols)


def strip_markers(text: str) -> str:
    """The text without any marker characters (for the fallback comparison)."""
    return "".join(ch for ch in text if ch not in _INVISIBLE)
