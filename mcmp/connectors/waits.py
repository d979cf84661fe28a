"""How long a platform may tell us to wait: ``Retry-After`` and regain times, bounded.

A platform's (or a hostile webhook's) number is input like any other: ``inf``, ``nan``, a negative
value or ``1e300`` would overflow date arithmetic (the attempt then ended with no outcome and came
back after its lease, for ever) or store an infinite block in Redis. Such values, and anything
beyond :data:`ABSURD_SECONDS`, are treated as absent (the caller's own backoff decides); a sane one
is honoured up to ``MCMP_MAX_RETRY_AFTER_SECONDS`` (default one day, :data:`DEFAULT_MAX_SECONDS`:
a daily quota such as LinkedIn's resets at midnight UTC).
"""

from __future__ import annotations

import math

DEFAULT_MAX_SECONDS = 86400.0
ABSURD_SECONDS = 30 * 86400.0  # no platform regains access a month later: that is garbage


_max_seconds = DEFAULT_MAX_SECONDS


def configure(max_seconds: float) -> None:
    """Set the maximum honoured wait (the worker's bootstrap passes ``MCMP_MAX_RETRY_AFTER_SECONDS``)."""
    global _max_seconds
    _max_seconds = float(max_seconds)


def max_wait_seconds() -> float:
    return _max_seconds


def bounded_wait(seconds: object) -> float | None:
    """``seconds`` as a wait we honour: None when absent, non-finite, negative or absurd; else clamped."""
    if seconds is None or isinstance(seconds, bool):
        return None
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(value) or value < 0 or value > ABSURD_SECONDS:
        return None
    return min(value, max_wait_seconds())


__all__ = ["ABSURD_SECONDS", "DEFAULT_MAX_SECONDS", "bounded_wait", "configure", "max_wait_seconds"]
