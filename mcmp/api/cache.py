"""Figures that cost queries over all tenants, computed at most once per few seconds.

``/metrics`` and ``/v1/health/ready`` need no API key (probes and scrapers have none), so anyone
who reaches the API could otherwise make it count every tenant's deliveries, ping Celery and
open a Redis connection as often as they can send requests. Callers within
``MCMP_HEALTH_CACHE_SECONDS`` of the last computation get its result; one caller at a time
computes (the others wait for it rather than compute too).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class Recent:
    """The last result per key, kept ``seconds``; an exception raised is kept the same way."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[Hashable, threading.Lock] = {}
        self._values: dict[Hashable, tuple[float, bool, Any]] = {}

    def get(self, key: Hashable, seconds: float, compute: Callable[[], Any]) -> Any:
        with self._lock:
            guard = self._keys.setdefault(key, threading.Lock())
        with guard:
            kept = self._values.get(key)
            if kept is None or time.monotonic() - kept[0] >= seconds:
                try:
                    kept = (time.monotonic(), True, compute())
                except Exception as exc:  # a failure is an answer too: not recomputed per caller
                    kept = (time.monotonic(), False, exc)
                if seconds > 0:
                    self._values[key] = kept
        _, ok, value = kept
        if not ok:
            raise value
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
