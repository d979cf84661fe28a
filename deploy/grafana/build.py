"""The Grafana dashboard of MCMP Publisher, built with Grafana's foundation SDK.

``python -m deploy.grafana.build`` writes ``deploy/grafana/mcmp-publisher.json`` (committed;
``--check`` exits 1 when the file differs from what this module builds). Import it in Grafana, or
let compose's Grafana provision it (deploy/grafana/provisioning). Every query reads metrics the
service exports (docs/operations.md#metrics); tests/e2e/deploy evaluates each on a real Prometheus.
The SDK is the ``dashboards`` extra (``pip install -e '.[dashboards]'``), not a runtime dependency.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

OUTPUT = Path(__file__).with_name("mcmp-publisher.json")
UID = "mcmp-publisher"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
_ids = itertools.count(1)  # panel ids: unique within the dashboard, stable from build to build


def query(expr: str, legend: str = "") -> Dataquery:
    q = Dataquery().expr(expr).datasource(DATASOURCE)
    return q.legend_format(legend) if legend else q


def series(title: str, unit: str, *queries: Dataquery, description: str = "") -> Timeseries:
    panel = (
        Timeseries().id(next(_ids)).title(title).unit(unit).datasource(DATASOURCE).height(8).span(12).min(0)
    )
    for ref, q in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(q.ref_id(ref))
    return panel.description(description) if description else panel


def stat(title: str, expr: str, unit: str, red_at: float, *, red_below: bool = False) -> Stat:
    """A single figure, green or red; ``red_below``: red when the value is under ``red_at``."""
    steps = (
        [Threshold(value=None, color="red"), Threshold(value=red_at, color="green")]
        if red_below
        else [Threshold(value=None, color="green"), Threshold(value=red_at, color="red")]
    )
    return (
        Stat()
        .id(next(_ids))
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(4)
        .with_target(query(expr).instant().ref_id("A"))
        .thresholds(ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps))
    )


def row(title: str) -> Row:
    return Row(title).id(next(_ids))


def build() -> Dashboard:
    global _ids
    _ids = itertools.count(1)
    rate = "$__rate_interval"
    return (
        Dashboard("MCMP Publisher")
        .uid(UID)
        .tags(["mcmp", "celery", "generated"])
        .description(
            "Publishing, platforms, tokens, throttling and analytics of MCMP Publisher (generated: deploy/grafana/build.py)"
        )
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("utc")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_row(row("Right now"))
        .with_panel(
            stat("Live worker processes", "max(mcmp_worker_processes_live)", "none", 1, red_below=True)
        )
        .with_panel(stat("Live dispatchers", "max(mcmp_dispatchers_live)", "none", 1, red_below=True))
        .with_panel(
            stat(
                "Since the last dispatcher tick",
                "time() - max(mcmp_dispatcher_last_tick_timestamp_seconds)",
                "s",
                30,
            )
        )
        .with_panel(stat("Due, not started", 'sum(mcmp_delivery_backlog{position="due"})', "none", 100))
        .with_panel(stat("Oldest due delivery", "max(mcmp_delivery_oldest_due_age_seconds)", "s", 120))
        .with_panel(
            stat(
                "Expired accounts with scheduled posts",
                "sum(mcmp_accounts_expired_with_scheduled_posts)",
                "none",
                1,
            )
        )
        .with_row(row("Publishing"))
        .with_panel(
            series(
                "Deliveries per minute by platform and outcome",
                "none",
                query(
                    f"sum by (platform, outcome) (rate(mcmp_deliveries_total[{rate}])) * 60",
                    "{{platform}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            series(
                "Lateness (call start − scheduleTime), p50 and p95 by platform",
                "s",
                query(
                    f"histogram_quantile(0.5, sum by (platform, le) (rate(mcmp_publish_lateness_seconds_bucket[{rate}])))",
                    "{{platform}} p50",
                ),
                query(
                    f"histogram_quantile(0.95, sum by (platform, le) (rate(mcmp_publish_lateness_seconds_bucket[{rate}])))",
                    "{{platform}} p95",
                ),
            )
        )
        .with_panel(
            series(
                "Backlog by queue position",
                "none",
                query("sum by (position) (mcmp_delivery_backlog)", "{{position}}"),
            )
        )
        .with_panel(
            series(
                "Oldest due delivery not started",
                "s",
                query("max(mcmp_delivery_oldest_due_age_seconds)", "oldest due"),
            )
        )
        .with_row(row("Platforms"))
        .with_panel(
            series(
                "Publish calls per minute by platform and result",
                "none",
                query(
                    f"sum by (platform, result) (rate(mcmp_publish_calls_total[{rate}])) * 60",
                    "{{platform}} {{result}}",
                ),
                description="unavailable/ambiguous/error: the platform failed; rejected: it refused the post",
            )
        )
        .with_panel(
            series(
                "Failure ratio by platform (what MCMPPlatformFailing watches)",
                "percentunit",
                query(
                    f'sum by (platform) (rate(mcmp_publish_calls_total{{result=~"unavailable|ambiguous|error"}}[{rate}]))'
                    f" / sum by (platform) (rate(mcmp_publish_calls_total[{rate}]))",
                    "{{platform}}",
                ),
            )
        )
        .with_panel(
            series(
                "Deliveries failed or retried per minute, by platform and reason",
                "none",
                query(
                    f'sum by (platform, result) (rate(mcmp_publish_calls_total{{result!="ok"}}[{rate}])) * 60',
                    "{{platform}} {{result}}",
                ),
                query(
                    f'sum by (platform, outcome) (rate(mcmp_deliveries_total{{outcome=~"failed|retry|waiting_auth"}}[{rate}])) * 60',
                    "{{platform}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            series(
                "Platform HTTP latency p95 by platform",
                "s",
                query(
                    f"histogram_quantile(0.95, sum by (platform, le) (rate(mcmp_platform_request_seconds_bucket[{rate}])))",
                    "{{platform}}",
                ),
            )
        )
        .with_row(row("Throttling and tokens"))
        .with_panel(
            series(
                "Throttled without a pause, by platform and scope",
                "s",
                query("max by (platform, scope) (mcmp_throttled_seconds)", "{{platform}} {{scope}}"),
            )
        )
        .with_panel(
            series(
                "Accounts by platform and status",
                "none",
                query("sum by (platform, status) (mcmp_accounts)", "{{platform}} {{status}}"),
                query(
                    "sum by (platform) (mcmp_accounts_expired_with_scheduled_posts)",
                    "{{platform}} expired with scheduled posts",
                ),
            )
        )
        .with_panel(
            series(
                "Scheduled posts at risk (token will not last), by platform and reason",
                "none",
                query("sum by (platform, reason) (mcmp_posts_at_risk)", "{{platform}} {{reason}}"),
            )
        )
        .with_panel(
            series(
                "Token refreshes per hour by platform and outcome",
                "none",
                query(
                    f"sum by (platform, outcome) (rate(mcmp_token_refresh_total[{rate}])) * 3600",
                    "{{platform}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            series(
                "Awaiting reconciliation",
                "none",
                query("sum by (platform) (mcmp_deliveries_uncertain)", "{{platform}}"),
                query(
                    "max by (platform) (mcmp_delivery_oldest_uncertain_age_seconds) / 60",
                    "{{platform}} oldest (min)",
                ),
            )
        )
        .with_row(row("Workers, dispatchers, analytics"))
        .with_panel(
            series(
                "Live worker processes and dispatchers",
                "none",
                query("max(mcmp_worker_processes_live)", "worker processes"),
                query("max(mcmp_dispatchers_live)", "dispatchers"),
                query('sum(up{job="mcmp-worker"})', "worker metrics targets up"),
            )
        )
        .with_panel(
            series(
                "Dispatcher ticks and claims per second",
                "none",
                query(f"sum(rate(mcmp_dispatcher_ticks_total[{rate}]))", "ticks"),
                query(f"sum(rate(mcmp_dispatcher_claimed_total[{rate}]))", "claimed"),
            )
        )
        .with_panel(
            series(
                "Analytics snapshots due, by platform",
                "none",
                query("sum by (platform) (mcmp_analytics_snapshots_due)", "{{platform}}"),
            )
        )
        .with_panel(
            series(
                "Analytics freshness: oldest due slot by platform",
                "s",
                query("max by (platform) (mcmp_analytics_oldest_due_age_seconds)", "{{platform}}"),
            )
        )
    )


def render() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of a dashboard's JSON."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets") or []
        if "expr" in target
    ]


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python -m deploy.grafana.build", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
