"""Simulator support for analytics: seeded posts, Graph batch requests, budgets and the count of
calls refused for being over a budget (what the backfill test asserts to be 0)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import requests

from mcmp.simulators.core import start_in_thread
from mcmp.simulators.engagement import effective_age
from mcmp.simulators.facebook import FacebookSimulator
from mcmp.simulators.google_business import GoogleBusinessSimulator
from mcmp.simulators.linkedin import LinkedInSimulator

T = {"access_token": "EAAB-test"}


def test_graph_batch_counts_each_item_and_refusals_are_counted() -> None:
    sim = FacebookSimulator()
    server, url = start_in_thread(sim)
    try:
        seeded = [{"id": f"1000001_{i}", "owner": "1000001", "age_seconds": 3600 * (i + 1)} for i in range(3)]
        assert requests.post(f"{url}/_sim/seed", json={"posts": seeded}, timeout=5).json()["seeded"] == 3
        requests.post(f"{url}/_sim/budget", json={"owner_call_limit": 5, "window_seconds": 60}, timeout=5)
        batch = [
            {"method": "GET", "relative_url": f"1000001_{i}/insights?metric=post_media_view"}
            for i in range(3)
        ]
        batch += [{"method": "GET", "relative_url": "1000001_0?fields=reactions.summary(true)"}] * 3
        items = requests.post(f"{url}/v21.0/", data={**T, "batch": json.dumps(batch)}, timeout=5).json()
        assert [i["code"] for i in items] == [200] * 5 + [400]  # the 6th item is over the Page budget
        views = [json.loads(i["body"])["data"][0]["values"][0]["value"] for i in items[:3]]
        assert views[0] < views[1] < views[2]  # older posts have more views
        assert json.loads(items[5]["body"])["error"]["code"] == 80001
        assert sim.state()["over_limit_refused"] == 1 and sim.state()["owner_calls"]["1000001"] == 6
    finally:
        server.shutdown()


def test_linkedin_and_google_budgets_count_refusals() -> None:
    li, gbp = LinkedInSimulator(), GoogleBusinessSimulator()
    (li_server, li_url), (g_server, g_url) = start_in_thread(li), start_in_thread(gbp)
    try:
        org, urn = "urn:li:organization:2414183", "urn:li:share:1"
        requests.post(f"{li_url}/_sim/seed", json={"posts": [{"id": urn, "owner": org, "age_seconds": 60}]})
        requests.post(f"{li_url}/_sim/budget", json={"member_daily_limit": 1}, timeout=5)
        h = {
            "Authorization": "Bearer li-test-x",
            "LinkedIn-Version": datetime.now(UTC).strftime("%Y%m"),
            "X-Restli-Protocol-Version": "2.0.0",
        }
        q = f"q=organizationalEntity&organizationalEntity={org}&shares=List({urn})"
        first = requests.get(f"{li_url}/rest/organizationalEntityShareStatistics?{q}", headers=h, timeout=5)
        assert first.json()["elements"][0]["totalShareStatistics"]["impressionCount"] >= 600
        second = requests.get(f"{li_url}/rest/organizationalEntityShareStatistics?{q}", headers=h, timeout=5)
        assert second.status_code == 429 and li.state()["over_limit_refused"] == 1

        name = "accounts/1/locations/2/localPosts/p1"
        requests.post(f"{g_url}/_sim/seed", json={"posts": [{"id": name, "age_seconds": 60}]}, timeout=5)
        requests.post(f"{g_url}/_sim/budget", json={"quota_per_minute": 1}, timeout=5)
        body = {"localPostNames": [name], "basicRequest": {"metricRequests": [{"metric": "ALL"}]}}
        report = f"{g_url}/v4/accounts/1/locations/2/localPosts:reportInsights"
        auth = {"Authorization": "Bearer gbp-test-x"}
        assert requests.post(report, json=body, headers=auth, timeout=5).json()["localPostMetrics"]
        assert requests.post(report, json=body, headers=auth, timeout=5).status_code == 429
        assert gbp.state()["over_limit_refused"] == 1
    finally:
        li_server.shutdown()
        g_server.shutdown()


def test_engagement_grows_fast_then_levels_off() -> None:
    hour = [effective_age("p", h * 3600) for h in (1, 6, 24, 72, 168, 720)]
    assert hour == sorted(hour)
    assert hour[1] - hour[0] > hour[5] - hour[4]  # hours 1→6 add more than days 7→30
    assert 1.05 <= effective_age("p", 1.0) <= 2.0 and effective_age("p", 1) != effective_age("q", 1)
