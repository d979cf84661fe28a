"""A lane's slot is held only while an attempt is quick: a slow one gives it back and carries on."""

from __future__ import annotations

import threading
import time

from mcmp.worker.publishing import runners


def test_a_slow_attempt_gives_its_slot_back_and_still_finishes():
    lane = runners.Lane("test", slots=1, release_after=0.2)
    gate = threading.Event()
    slow = lane.submit(lambda: gate.wait(5) and "slow done")
    started = time.monotonic()
    quick = lane.submit(lambda: "quick done")
    assert quick.result(timeout=2) == "quick done"
    assert time.monotonic() - started < 1.0  # it waited for the slow one's share, not its end
    assert not slow.done()
    gate.set()
    assert slow.result(timeout=2) == "slow done"
    assert runners.finish_running(2) == 0


def test_without_release_the_slot_is_held_to_the_end():
    lane = runners.Lane("test", slots=1, release_after=None)
    gate = threading.Event()
    lane.submit(gate.wait, 5)
    quick = lane.submit(lambda: "quick")
    time.sleep(0.5)
    assert not quick.done()
    gate.set()
    assert quick.result(timeout=2) == "quick"


def test_attempts_one_after_another_reuse_the_lanes_threads():
    lane = runners.Lane("reuse", slots=4, release_after=5.0)
    before = {t.ident for t in threading.enumerate()}
    for i in range(50):
        assert lane.submit(lambda n=i: n * 2).result(timeout=2) == i * 2
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert len(started) <= 3  # an attempt's thread, the next waiting for it to go idle, the slot watcher
    assert runners.finish_running(2) == 0


def test_a_warm_shutdown_counts_the_attempts_still_running():
    lane = runners.Lane("shutdown", slots=2, release_after=None)
    gate = threading.Event()
    lane.submit(gate.wait, 5)
    lane.submit(lambda: None).result(timeout=2)
    assert runners.finish_running(0.3) == 1
    gate.set()
    assert runners.finish_running(2) == 0
