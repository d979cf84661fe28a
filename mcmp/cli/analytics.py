"""``mcmp analytics backfill``: resolve the client, resume or start the job, show progress.

On a terminal a rich progress bar shows rows done/total, rows per second and the ETA; when the
output is not a terminal (CI logs, a test's pipe) one plain progress line is printed every two
seconds instead, so the throughput is visible in logs too. The summary line ends every run.

Rate and ETA are taken over the whole run (rows done this run / time since the plan), never over
a sliding window: Facebook rows arrive 25 at a time (one Graph batch) with long waits for the
rate budget between batches, and a windowed speed then shows "51 rows/s, eta 0:00:01" for
minutes while the real throughput is 1 row/s.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import typer
from bson import ObjectId
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from mcmp.models import Client
from mcmp.worker.analytics.backfill import Summary, dry_run, open_job, run_job


class RowsPerSecond(ProgressColumn):
    """The run's rate from its summary (whole run), not rich's windowed speed."""

    def render(self, task: Task) -> Text:
        summary: Summary | None = task.fields.get("summary")
        rate = summary.rate if summary else 0.0
        return Text(f"{rate:,.1f} rows/s" if rate else "– rows/s", style="progress.data.speed")


class RunEta(ProgressColumn):
    """Time left at the whole run's rate."""

    def render(self, task: Task) -> Text:
        summary: Summary | None = task.fields.get("summary")
        eta = summary.eta_seconds if summary else None
        return Text(_clock(eta), style="progress.remaining")


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _client_id(slug_or_id: str) -> str:
    coll = Client._get_collection()
    doc = coll.find_one({"slug": slug_or_id}, {"_id": 1})
    if doc is None and ObjectId.is_valid(slug_or_id):
        doc = coll.find_one({"_id": ObjectId(slug_or_id)}, {"_id": 1})
    if doc is None:
        raise typer.BadParameter(f"no client with slug or id {slug_or_id!r}", param_hint="--client")
    return str(doc["_id"])


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def backfill_command(
    client: str,
    since: datetime | None,
    until: datetime | None,
    platform: str | None,
    dry: bool,
    concurrency: int | None,
) -> None:
    from mcmp.cli.common import connect
    from mcmp.cli.common import console as make_console

    connect(redis_needed=True)
    console = make_console()
    client_id = _client_id(client)
    since, until = _utc(since), _utc(until)
    if dry:
        work, calls = dry_run({"clientId": client_id, "since": since, "until": until, "platform": platform})
        console.print(
            f"dry run: {work.total} rows eligible, {work.done_before} already recorded, "
            f"{len(work.todo)} to fetch, {work.not_due} not due yet"
        )
        for name, count in sorted(work.by_platform.items()):
            console.print(f"  {name}: {count} rows, ≈{calls.get(name, '?')} platform calls")
        return
    job, resumed = open_job(client_id, since, until, platform)
    console.print(f"{'resuming' if resumed else 'starting'} backfill {job['_id']} for client {client}")
    if sys.stdout.isatty():
        _run_with_bar(str(job["_id"]), concurrency, console)
    else:
        _run_plain(str(job["_id"]), concurrency)


def _finish(summary: Summary) -> None:
    print(summary.line(), flush=True)
    print(f"throughput: {summary.rate:.1f} rows/s ({summary.calls} platform calls)", flush=True)
    for problem in summary.problems:
        print(f"  ! {problem}", flush=True)
    if summary.status != "done":
        raise typer.Exit(1)


def _run_with_bar(job_id: str, concurrency: int | None, console: Console) -> None:
    columns = (
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        RowsPerSecond(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        RunEta(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("backfill", total=None, summary=None)

        def on_plan(s: Summary) -> None:
            bar.reset(task, total=s.total, completed=s.done, summary=s)

        def on_progress(s: Summary) -> None:
            bar.update(task, completed=s.done, summary=s)

        try:
            summary = run_job(job_id, concurrency, progress=on_progress, on_plan=on_plan)
        except KeyboardInterrupt:
            console.print("interrupted: run the same command again to continue")
            raise typer.Exit(130) from None
    _finish(summary)


def _run_plain(job_id: str, concurrency: int | None) -> None:
    last = [0.0]

    def on_plan(s: Summary) -> None:
        print(f"plan: {s.total} rows, {s.done} done before, {s.total - s.done} to fetch", flush=True)

    def on_progress(s: Summary) -> None:
        now = time.monotonic()
        if now - last[0] < 2.0:
            return
        last[0] = now
        print(
            f"progress: {s.done}/{s.total} rows in {s.seconds:.0f} s, {s.rate:.1f} rows/s, "
            f"eta {_clock(s.eta_seconds)}",
            flush=True,
        )

    try:
        summary = run_job(job_id, concurrency, progress=on_progress, on_plan=on_plan)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue", flush=True)
        raise typer.Exit(130) from None
    _finish(summary)
