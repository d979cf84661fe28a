"""One tenant cannot delay another, on the dev stack's worker layout and default settings.

Tenant A has 150 posts due together on a website whose webhook answers after 8 s, each with 4
images on a host that answers after 2.5 s; tenant B has 10 Facebook posts due 3 to 7.5 s later.
Before fair share B was 42–46 s late (A's batches held both publish processes); now A's slow
work moves to the long lane and A is capped in flight, so B goes out on time, and every post of
A is still published exactly once. (Figures at 0/150/500 posts: ``python -m bench.fairness``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fairness import QUIET_POSTS, run, start

pytestmark = pytest.mark.e2e


def test_a_quiet_tenant_is_on_time_beside_a_noisy_tenants_slow_backlog(tmp_path: Path) -> None:
    with start(tmp_path, site_latency_ms=8000) as fleet:
        outcome = run(fleet, noisy=150, media_delay=2.5)
    print(f"tenant B lateness max {max(outcome.quiet_late):.3f} s; {outcome.row()}")  # seen with -s
    assert outcome.settled, "not every post settled in time"
    assert outcome.quiet_published == QUIET_POSTS
    assert max(outcome.quiet_late) <= 2.0, f"tenant B was up to {max(outcome.quiet_late):.1f} s late"
    assert outcome.noisy_published == 150
    assert outcome.duplicates == 0
