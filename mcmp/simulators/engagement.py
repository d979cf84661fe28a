"""How engagement grows in the simulators: fast in the first hours, flattening after a day or two.

Real posts collect most of their views and reactions early, then level off; each post also has
its own reach. :func:`effective_age` turns a post's age into the "age-equivalent" that the
simulators' metric formulas multiply (views ≈ 10 × it, reach ≈ 7 ×, likes ≈ ½ ×, …), so every
metric keeps growing, never decreases, saturates like a real post and differs per post. Early
on it equals the age times a per-post factor in [1.05, 2.0] (so short tests see linear growth).
"""

from __future__ import annotations

import hashlib
import math

TAU_SECONDS = 36 * 3600.0  # most of a post's engagement arrives within its first ~2 days


def virality(key: str) -> float:
    """A stable per-post factor in [1.05, 2.0] (same post id → same curve)."""
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return 1.05 + 0.95 * (int.from_bytes(digest, "big") / 2**32)


def effective_age(key: str, age_seconds: float, tau: float = TAU_SECONDS) -> float:
    age = max(0.0, age_seconds)
    return virality(key) * tau * (1.0 - math.exp(-age / tau))
