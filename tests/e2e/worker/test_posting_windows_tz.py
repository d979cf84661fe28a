"""Slots do not depend on the process ``TZ``: the same random cases computed in child processes
running under other zones give the same instants."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import ROOT
from tests.unit.worker.test_posting_windows import _queue, case_st

_SUBPROCESS = """
import json, sys
from tests.unit.worker.test_posting_windows import _queue
print(json.dumps([[s.at.isoformat() for s in _queue(c)] for c in json.load(sys.stdin)]))
"""


def _queue_in_process_with_tz(cases: list[dict], tz: str) -> list[list[str]]:
    env = {**os.environ, "TZ": tz}
    done = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(case_st(), min_size=25, max_size=25))
def test_slots_do_not_depend_on_the_process_tz(cases: list[dict]) -> None:
    here = [[s.at.isoformat() for s in _queue(c)] for c in cases]
    assert _queue_in_process_with_tz(cases, "America/New_York") == here
    assert _queue_in_process_with_tz(cases, "Asia/Kolkata") == here
