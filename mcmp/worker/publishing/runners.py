"""Where a worker process runs its deliveries' attempts: threads that let go of the lane when slow.

A bounded pool (``MCMP_BATCH_CONCURRENCY`` per process) is what keeps a process from starting
hundreds of platform calls at once; but a thread of it spent waiting 8 s on one tenant's site is
a thread another tenant's due post cannot have. So each attempt runs on a thread of its own and
holds one of the lane's slots only while it is quick: ``release_after`` seconds into the attempt
(``MCMP_LONG_DELIVERY_SECONDS``) it gives its slot back and carries on beside the lane, its lease
kept by the worker's liveness, recording its own outcome when it ends. How many can carry on is
bounded by the tenants' in-flight caps, not by the lane.

Per attempt this costs no thread start: a thread that finished an attempt waits a while for the
next one (``IDLE_SECONDS``), and one watcher thread per process gives back the slots of attempts
past their share (a timer thread per attempt cost about 0.4 ms of CPU per delivery).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
# A thread with no attempt to run for this long ends.
IDLE_SECONDS = 30.0


class _Running:
    """Attempts running in this process (a warm shutdown waits for them)."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def add(self, n: int) -> None:
        with self.changed:
            self.count += n
            self.changed.notify_all()


class _Deadlines:
    """One thread that runs each action at its time (the slots of slow attempts given back)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def at(self, when: float, action: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._heap, (when, next(self._order), action))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lane-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is action:  # earlier than what the thread sleeps for
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, action = heapq.heappop(self._heap)
            try:
                action()
            except Exception:  # never lose the thread: the other slots still need it
                log.exception("giving a lane slot back failed")


class _Threads:
    """Threads that run one function after another; a new one starts only when none is idle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._work.put(fn)
                return
        threading.Thread(target=self._loop, args=(fn,), name=self.name, daemon=True).start()

    def _loop(self, fn: Callable[[], None]) -> None:
        while True:
            fn()
            with self._lock:
                self._idle += 1
            try:
                fn = self._work.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:  # work handed over while the wait timed out is still run
                    try:
                        fn = self._work.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return


_running = _Running()
_deadlines = _Deadlines()


def _reset_after_fork() -> None:
    global _running, _deadlines
    _running, _deadlines = _Running(), _Deadlines()


os.register_at_fork(after_in_child=_reset_after_fork)


class Lane:
    """``slots`` attempts at once, each giving its slot back after ``release_after`` seconds."""

    def __init__(self, name: str, slots: int, release_after: float | None) -> None:
        self.name = name
        self.release_after = release_after
        self._slots = threading.BoundedSemaphore(slots)
        self._threads = _Threads(name)

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        future: Future[T] = Future()
        _running.add(1)

        def body() -> None:
            try:
                self._slots.acquire()
                released = [False]
                lock = threading.Lock()

                def release() -> None:
                    with lock:
                        if not released[0]:
                            released[0] = True
                            self._slots.release()

                if self.release_after is not None:
                    _deadlines.at(time.monotonic() + self.release_after, release)
                try:
                    if future.set_running_or_notify_cancel():
                        try:
                            future.set_result(fn(*args))
                        except BaseException as exc:  # handed to whoever waits on the future
                            future.set_exception(exc)
                finally:
                    release()
            finally:
                _running.add(-1)

        self._threads.run(body)
        return future


def finish_running(timeout: float) -> int:
    """Let the attempts still running end (a worker's warm shutdown); returns how many did not."""
    deadline = time.monotonic() + timeout
    with _running.changed:
        if _running.count:
            log.info("waiting for %d running attempts to end before stopping", _running.count)
        while _running.count and time.monotonic() < deadline:
            _running.changed.wait(deadline - time.monotonic())
        return _running.count


__all__ = ["Lane", "finish_running"]
