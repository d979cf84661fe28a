"""Where a worker process runs its deliveries' attempts: threads that let go of the lane when slow.

A bounded pool (``MCMP_BATCH_CONCURRENCY`` per process) is what keeps a process from starting
hundreds of platform calls at once; but a thread of it spent waiting 8 s on one tenant's site is
a thread another tenant's due post cannot have. So each attempt runs on a thread of its own and
holds one of the lane's slots only while it is quick: ``release_after`` seconds into the attempt
(``MCMP_LONG_DELIVERY_SECONDS``) it gives its slot back and carries on beside the lane, its lease
kept by the worker's liveness, recording its own outcome when it ends. How many can carry on is
bounded by the tenants' in-flight caps, not by the lane.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_running: set[threading.Thread] = set()
_running_lock = threading.Lock()


class Lane:
    """``slots`` attempts at once, each giving its slot back after ``release_after`` seconds."""

    def __init__(self, name: str, slots: int, release_after: float | None) -> None:
        self.name = name
        self.release_after = release_after
        self._slots = threading.BoundedSemaphore(slots)

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        future: Future[T] = Future()

        def body() -> None:
            self._slots.acquire()
            released = threading.Event()
            lock = threading.Lock()

            def release() -> None:
                with lock:
                    if not released.is_set():
                        released.set()
                        self._slots.release()

            timer = None
            if self.release_after is not None:
                timer = threading.Timer(self.release_after, release)
                timer.daemon = True
                timer.start()
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as exc:  # handed to whoever waits on the future
                        future.set_exception(exc)
            finally:
                if timer is not None:
                    timer.cancel()
                release()
                with _running_lock:
                    _running.discard(threading.current_thread())

        thread = threading.Thread(target=body, name=self.name, daemon=True)
        with _running_lock:
            _running.add(thread)
        thread.start()
        return future


def finish_running(timeout: float) -> int:
    """Let the attempts still running end (a worker's warm shutdown); returns how many did not."""
    with _running_lock:
        threads = list(_running)
    if threads:
        log.info("waiting for %d running attempts to end before stopping", len(threads))
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(1 for t in threads if t.is_alive())


__all__ = ["Lane", "finish_running"]
