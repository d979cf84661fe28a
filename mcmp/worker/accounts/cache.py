"""A short-lived, per-process memory of the accounts deliveries are published with.

Every delivery needs its client's account for the platform. At 100 deliveries/s over a handful
of accounts that was one database round trip per delivery re-reading the same few documents
(on SecantusDB, about a tenth of the database's single core). Only an account that was
connected, sealed and not due for a token refresh is remembered, and only for
``account_cache_seconds``: a reconnect, a disconnect or a refresh made by another process is
seen at most that late. Any trouble with an account (refused token, expired, refresh needed)
forgets it at once, so the next attempt reads the database. Entries are never mutated: the
token refresh path always works on a freshly read document.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

from mcmp.models import IntegrationAccount


class AccountCache:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, IntegrationAccount]] = {}

    def get(self, client_id: str, platform: str) -> IntegrationAccount | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get((client_id, platform))
            if entry is None:
                return None
            if self._clock() - entry[0] > self.ttl:
                del self._entries[(client_id, platform)]
                return None
            return entry[1]

    def put(self, client_id: str, platform: str, account: IntegrationAccount) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[(client_id, platform)] = (self._clock(), account)

    def forget(self, client_id: str, platform: str) -> None:
        with self._lock:
            self._entries.pop((client_id, platform), None)


@functools.cache
def for_ttl(ttl_seconds: float) -> AccountCache:
    """The process's cache (one per configured TTL, i.e. one in practice)."""
    return AccountCache(ttl_seconds)
