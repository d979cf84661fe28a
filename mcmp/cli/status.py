"""``mcmp status``: the operator's first look, as rich tables (or one JSON document)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from mcmp.worker.ops_status import Report


def _unknown(value: object) -> str:
    return "unknown" if value is None else str(value)


def print_report(report: Report, *, as_json: bool = False) -> None:
    console = Console(soft_wrap=True, width=max(Console().width, 120))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
        return
    tick = report.last_dispatch_tick_age_seconds
    summary = Table(title=f"MCMP status at {report.at:%Y-%m-%d %H:%M:%S} UTC", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for label, value in (
        ("due, not started", report.due_backlog),
        ("oldest due (s)", f"{report.oldest_due_age_seconds:.0f}"),
        ("queued", report.queued),
        ("in flight", report.in_flight),
        ("waiting for a retry", report.retry_waiting),
        ("waiting for a reconnect", report.waiting_auth),
        ("live worker processes", _unknown(report.worker_processes)),
        ("live dispatchers", _unknown(report.dispatchers)),
        ("last dispatcher tick (s ago)", "never" if tick is None else f"{tick:.0f}"),
    ):
        summary.add_row(label, str(value))
    console.print(summary)
    if report.failures:
        table = Table(title="Failures in the last hour")
        for column in ("platform", "reason", "failed", "retrying", "latest error"):
            table.add_column(column)
        for f in report.failures:
            table.add_row(f.platform, f.reason, str(f.failed), str(f.retrying), f.example)
        console.print(table)
    if report.accounts_at_risk:
        table = Table(title="Accounts at risk with scheduled posts")
        for column in ("platform", "tenant", "account", "why", "scheduled posts"):
            table.add_column(column)
        for a in report.accounts_at_risk:
            table.add_row(a.platform, a.client, a.account, a.reason.replace("_", " "), str(a.scheduled_posts))
        console.print(table)
    if report.throttled:
        table = Table(title="Throttled now")
        for column in ("platform", "scope", "tenant", "account", "for (min)"):
            table.add_column(column)
        for t in report.throttled:
            table.add_row(t.platform, t.scope, t.client or "-", t.account or "app", f"{t.seconds / 60:.1f}")
        console.print(table)
    for title, rows in (
        ("Awaiting reconciliation", report.uncertain),
        ("Analytics snapshots due", report.analytics_due),
    ):
        if rows:
            table = Table(title=title)
            for column in ("platform", "count", "oldest (min)"):
                table.add_column(column)
            for row in rows:
                table.add_row(row.platform, str(row.count), f"{row.oldest_age_seconds / 60:.1f}")
            console.print(table)
    if report.attention:
        console.print("[bold red]Needs attention:[/]")
        for note in report.attention:
            console.print(f"  - {note}", markup=False, highlight=False)
    else:
        console.print("[green]Nothing needs attention.[/]")
