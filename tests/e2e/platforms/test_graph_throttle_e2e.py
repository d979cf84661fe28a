"""A Page that throttles above N posts per window, through real workers: blocks that grow, and
deferred deliveries that come due spread out instead of all at once (bench.graph_throttle drains
600 posts the same way)."""

from __future__ import annotations

import statistics

import pytest

from bench.graph_throttle import PAGE, TOKEN, facebook_posts, measure, throttle
from mcmp.worker import rate_limit

POSTS = 40
LIMIT = 20  # posts in any 20 s
WINDOW = 20.0
PACE = 1.0  # the pace we are told: posts per second per Page after a block


@pytest.mark.platforms("facebook")
@pytest.mark.timeout(300)
def test_a_throttling_page_is_drained_with_growing_blocks_and_spread_retries(
    env, db, platform_lab, make_client, make_account, start_worker, start_dispatcher
) -> None:
    sim_url = platform_lab.sims["facebook"].base_url
    throttle(sim_url, LIMIT, regain=False, window_seconds=WINDOW)  # bare code 32: our own blocks
    client = make_client()
    make_account(client, "facebook", accessToken=TOKEN, externalAccountId=PAGE, metadata={})
    run_env = dict(platform_lab.env, MCMP_FACEBOOK__PACE_CALLS_PER_SECOND=str(PACE))
    start_worker(run_env, concurrency=4, pool="threads")
    start_dispatcher(run_env)
    ids = facebook_posts(db, str(client["_id"]), POSTS, "Throttled")
    drain = measure(sim_url, POSTS, LIMIT, db, ids, timeout=240, window=WINDOW)
    print(f"graph throttle e2e: {drain.line()}")

    assert drain.published == POSTS and drain.duplicates == 0
    # The burst fills the window, a 15 s block is too short for a 20 s window, the next is longer.
    first, *later = drain.episodes
    blocks = [rate_limit.ESCALATE_FIRST_SECONDS * 2**i for i in range(len(drain.episodes))]
    assert later, f"expected a second throttle episode: {drain.line()}"
    for (_, wait, _), block in zip(drain.episodes, blocks, strict=True):
        assert wait <= block + 3.0, f"stalled {wait:.1f} s after a {block:.0f} s block: {drain.line()}"
    assert later[0][1] > first[1] + 5, f"the second block did not grow: {drain.line()}"
    # After the last block the deferred posts went out about 1/PACE apart, not at one instant.
    state = platform_lab.sims["facebook"].state()
    after = sorted(p["created_time"] for p in state["posts"] if p["created_time"] > later[-1][0])
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    assert len(after) >= 10 and statistics.median(gaps) >= 0.7 / PACE, gaps
