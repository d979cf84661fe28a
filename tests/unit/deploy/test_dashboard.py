"""The Grafana dashboard: generated from code, current, and well-formed for Grafana.

Whether its queries name exported metrics and evaluate on a real Prometheus is checked by
tests/e2e/deploy/test_prometheus_e2e.py, which has the running stack.
"""

from __future__ import annotations

import json

from deploy.grafana import build


def test_the_committed_dashboard_is_what_the_generator_builds() -> None:
    assert build.OUTPUT.read_text() == build.render(), "stale: run python -m deploy.grafana.build"
    assert build.main(["--check"]) == 0


def test_every_panel_queries_the_chosen_prometheus_with_unique_ids() -> None:
    dashboard = json.loads(build.render())
    assert dashboard["uid"] == "mcmp-publisher"
    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(refs), panel["title"]
        assert all("mcmp_" in t["expr"] or 'job="mcmp-' in t["expr"] for t in panel["targets"]), panel[
            "title"
        ]
    titles = " | ".join(p["title"] for p in panels).lower()
    for topic in (
        "lateness",
        "backlog",
        "oldest due",
        "failure",
        "throttled",
        "accounts",
        "worker",
        "analytics",
    ):
        assert topic in titles, topic
