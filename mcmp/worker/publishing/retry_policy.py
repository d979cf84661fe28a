"""How long to wait before the next attempt: exponential backoff with jitter, honouring Retry-After.

Delays are computed with tenacity's ``wait_exponential_jitter`` so the curve is the well-known
one; the wait itself is a ``dueAt`` in MongoDB (not a sleeping worker), so it survives restarts.
"""

from __future__ import annotations

import random

from mcmp.config import Settings
from mcmp.connectors.waits import bounded_wait


def backoff_seconds(attempt: int, settings: Settings, retry_after: float | None = None) -> float:
    """Delay after the ``attempt``-th failed attempt (1-based): base·2^(n-1), jittered, capped.

    ``retry_after`` is bounded (:mod:`mcmp.connectors.waits`): non-finite or absurd counts as absent.
    """
    retry_after = bounded_wait(retry_after)
    exp = settings.retry_base_seconds * float(2 ** max(0, attempt - 1))
    delay = min(settings.retry_max_seconds, exp)
    delay = delay * random.uniform(0.5, 1.0)  # full-ish jitter: spread retries of a burst
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, max(settings.retry_max_seconds, retry_after or 0.0))
