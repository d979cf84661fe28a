"""The ``mcmp`` command: run the worker, dispatcher, beat, simulators and the dev stack."""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

app = typer.Typer(
    help="MCMP Publisher: exactly-once scheduled publishing.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens; a traceback must not print them
)
# Commands that start or serve things of their own and must not read a dev stack's config file.
_OWN_CONFIG = {"dev", "simulate"}


@app.callback()
def _read_dev_config(ctx: typer.Context) -> None:
    """Settings come from MCMP_* variables; beside a running `mcmp dev`, from its .mcmp/mcmp.env too."""
    if ctx.invoked_subcommand not in _OWN_CONFIG:
        from mcmp.cli.common import load_config

        load_config()


# Where a process's metrics port listens: loopback unless told (worker and dispatcher alike).
MetricsAddress = Annotated[
    str, typer.Option(help="Address the metrics port listens on (default loopback; 0.0.0.0 for all)")
]


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Worker processes/threads")] = 2,
    pool: Annotated[str, typer.Option(help="prefork | threads | solo")] = "prefork",
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="publish-long is the long lane (run it apart in production)")
    ] = "publish,publish-long,analytics,maintenance",
    hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics of all pool processes on this port")
    ] = None,
    metrics_address: MetricsAddress = "127.0.0.1",
) -> None:
    """Run a Celery worker (waits for MongoDB and Redis first)."""
    if metrics_port is not None:
        _serve_multiprocess_metrics(metrics_port, metrics_address)
    from mcmp.worker.runtime import bootstrap

    settings = bootstrap(wait=True)
    from mcmp.connectors.registry import available_platforms
    from mcmp.worker import metrics
    from mcmp.worker.app import app as celery_app

    metrics.initialise(available_platforms())  # every platform's series from the start, at 0
    argv = [
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-P",
        pool,
        "--loglevel",
        settings.log_level,
        "-E",
    ]
    if hostname:
        argv += ["-n", hostname]
    celery_app.worker_main(argv)


@app.command()
def dispatcher(
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this dispatcher's Prometheus metrics on this port")
    ] = None,
    metrics_address: MetricsAddress = "127.0.0.1",
) -> None:
    """Run a dispatcher loop (any number may run; claims are atomic)."""
    from mcmp.worker.runtime import bootstrap, settle_heap
    from mcmp.worker.scheduling.dispatcher import Dispatcher

    bootstrap(wait=True)
    if metrics_port is not None:
        from prometheus_client import REGISTRY

        from mcmp.cli import metrics_server

        metrics_server.serve(REGISTRY, metrics_address, metrics_port)  # the token, as the worker's
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    dispatcher = Dispatcher()
    settle_heap()
    dispatcher.run_forever(stop)


@app.command()
def beat() -> None:
    """Run Celery beat for the periodic maintenance, token and analytics tasks."""
    from mcmp.worker.runtime import bootstrap

    settings = bootstrap(wait=True)
    from mcmp.worker.app import app as celery_app

    # Beat sends only periodic maintenance, whose tasks send no events either: a "sent" event
    # for each would fill Flower's task list with entries that never complete.
    celery_app.conf.task_send_sent_event = False
    schedule = os.path.join(os.environ.get("MCMP_STATE_DIR", "."), "celerybeat-schedule")
    celery_app.start(["beat", "--loglevel", settings.log_level, "-s", schedule])


@app.command()
def simulate(
    platform: Annotated[str, typer.Argument(help="Platform name, e.g. website, google-business")],
    port: int = 0,
    latency_ms: float = 0.0,
) -> None:
    """Serve one platform simulator on a local port (prints its URL)."""
    from mcmp.simulators import serve_forever, simulator_class

    serve_forever(simulator_class(platform)(latency_ms=latency_ms), "127.0.0.1", port)


@app.command()
def connectors(
    platform: Annotated[str | None, typer.Argument(help="Only this platform (e.g. linkedin).")] = None,
) -> None:
    """Print each installed connector's media rules: kinds, counts, sizes, durations, aspect ratios.

    These are the rules checked before any platform call (a post that breaks one fails on that
    platform with a lastError naming the item and the rule). Limits that depend on settings
    (e.g. MCMP_LINKEDIN__VIDEO_MAX_BYTES) are shown as this process's configuration sets them.
    """
    from rich.console import Console
    from rich.table import Table

    from mcmp.connectors.media import REFERENCE_LIMITS, MediaLimits, describe_limits
    from mcmp.connectors.registry import available_platforms, get_connector

    table = Table(title="Media rules by platform", show_lines=True)
    table.add_column("platform")
    table.add_column("media")
    table.add_column("rules")
    names = [platform] if platform else available_platforms()
    for name in names:
        try:
            connector = get_connector(name)
        except Exception as exc:  # a broken third-party connector: say so, list the others
            table.add_row(name, "-", f"not loadable: {exc}")
            continue
        variants: dict[str, MediaLimits | None] = dict(connector.media_limits_by_mode)
        if not variants:
            own = connector.media_limits
            variants = {"": own if own is not None else REFERENCE_LIMITS.get(name)}
        for mode, limits in variants.items():
            label = f"{name} ({mode})" if mode else name
            if limits is None:
                table.add_row(label, "any", "no media rules: the receiver decides")
                continue
            for kind, rules in describe_limits(limits):
                table.add_row(label, kind, rules)
    Console().print(table)


@app.command()
def dev(
    data_dir: Annotated[
        str, typer.Option(help="Where the dev stack keeps its data, keys and config file")
    ] = ".mcmp",
    demo_posts: Annotated[int, typer.Option(help="Demo posts to schedule in the next minute")] = 6,
) -> None:
    """Start everything locally: MongoDB, Redis, simulators, worker, dispatcher, beat, API, Flower.

    Prints the URLs, a demo API key and Flower's credentials, and writes DATA_DIR/mcmp.env,
    which every other mcmp command run here reads. Ctrl-C stops everything; data is kept.
    """
    from mcmp.cli.dev import run_dev

    run_dev(data_dir=data_dir, demo_posts=demo_posts)


def _serve_multiprocess_metrics(port: int, address: str = "127.0.0.1") -> WSGIServer:
    """Prefork children count in their own processes: aggregate them through PROMETHEUS_MULTIPROC_DIR.

    Must run before prometheus_client is imported (it picks its value store at import time).
    Without the variable, a fresh private directory is used. Listens on loopback unless
    ``address`` says otherwise; asks for ``MCMP_METRICS_TOKEN`` as a bearer token when it is set.
    """
    import tempfile

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="mcmp-metrics-")
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from mcmp.cli.metrics_server import serve

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
    return serve(registry, address, port)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Default: MCMP_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: MCMP_API_PORT")] = None,
) -> None:
    """Run the admin API (uvicorn; waits for MongoDB and Redis first)."""
    import uvicorn

    from mcmp.api.app import create_app
    from mcmp.worker.runtime import bootstrap

    settings = bootstrap(wait=True)
    uvicorn.run(
        create_app(),
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_config=None,  # keep the structured JSON logging installed by bootstrap
        proxy_headers=True,
    )


apikey_app = typer.Typer(
    help="Admin API keys (stored hashed; the key is printed once).", no_args_is_help=True
)
app.add_typer(apikey_app, name="apikey")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="A name to recognise the key by")],
    client: Annotated[
        list[str] | None, typer.Option("--client", help="Tenant (clientId); repeatable")
    ] = None,
    all_tenants: Annotated[bool, typer.Option("--all-tenants", help="Every tenant (operators)")] = False,
    user_id: Annotated[str | None, typer.Option(help="Recorded as byUserId on status changes")] = None,
) -> None:
    """Create a key scoped to some tenants (or all) and print it once."""
    from mcmp.api.keys import create_key
    from mcmp.cli.common import connect

    connect(redis_needed=False)
    try:
        created = create_key(name, client or [], all_tenants=all_tenants, user_id=user_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(created.key)
    scope = "all tenants" if all_tenants else ", ".join(client or [])
    typer.echo(f"key {created.api_key.prefix}… for {scope}; store it now, it is not shown again", err=True)


@apikey_app.command("revoke")
def apikey_revoke(name_or_prefix: Annotated[str, typer.Argument(help="Key name or prefix")]) -> None:
    """Revoke active keys with this name or prefix."""
    from mcmp.api.keys import revoke_key
    from mcmp.cli.common import connect

    connect(redis_needed=False)
    count = revoke_key(name_or_prefix)
    typer.echo(f"revoked {count} key(s)")
    if not count:
        raise typer.Exit(1)


@app.command()
def flower(
    port: Annotated[int, typer.Option(help="Flower web port")] = 5555,
    address: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
) -> None:
    """Run Flower, the operator's UI, on the workers' broker; basic auth required.

    Set MCMP_FLOWER_BASIC_AUTH=user:password (several: comma-separated). Flower shows every
    tenant's task history and can apply tasks (mcmp.retry_post), so it never starts open, and
    its unauthenticated-API switch (FLOWER_UNAUTHENTICATED_API) is removed from its environment.
    """
    from mcmp.cli.common import fail

    credentials = [c.strip() for c in os.environ.get("MCMP_FLOWER_BASIC_AUTH", "").split(",") if c.strip()]
    if not credentials or any(":" not in c or c.startswith(":") or c.endswith(":") for c in credentials):
        raise fail(
            "Flower needs basic auth: set MCMP_FLOWER_BASIC_AUTH=user:password "
            "(a long random password; `mcmp dev` generates one)"
        )
    if os.environ.pop("FLOWER_UNAUTHENTICATED_API", None) is not None:
        typer.echo("ignoring FLOWER_UNAUTHENTICATED_API: Flower's API needs the basic auth", err=True)
    import mcmp.worker.tasks  # noqa: F401 - registers the tasks Flower can apply (mcmp.retry_post)
    from mcmp.worker.app import app as celery_app

    # Through Flower's own environment variable, not argv: a command line is visible to every
    # local user in the process list.
    os.environ["FLOWER_BASIC_AUTH"] = ",".join(credentials)
    celery_app.start(["flower", f"--port={port}", f"--address={address}"])


analytics_app = typer.Typer(help="Analytics snapshots and backfills.", no_args_is_help=True)
app.add_typer(analytics_app, name="analytics")

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]


@analytics_app.command("backfill")
def analytics_backfill(
    client: Annotated[str, typer.Option("--client", help="Client slug (or id)")],
    since: Annotated[
        datetime | None, typer.Option(formats=_DATE_FORMATS, help="Published on/after (UTC)")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=_DATE_FORMATS, help="Published on/before (UTC)")
    ] = None,
    platform: Annotated[str | None, typer.Option(help="Only this platform")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the work, make no request")] = False,
    concurrency: Annotated[int | None, typer.Option(help="Parallel requests (default from settings)")] = None,
) -> None:
    """Snapshot every published post of a client (latest slot reached); resumable, rate-limited.

    Interrupt it at any time (Ctrl-C, kill): the same command continues where it stopped.
    """
    from mcmp.cli.analytics import backfill_command

    backfill_command(client, since, until, platform, dry_run, concurrency)


tokens_app = typer.Typer(help="Tokens at rest: Fernet keys and re-encryption.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("genkey")
def tokens_genkey() -> None:
    """Print a new Fernet key (prepend it to MCMP_TOKEN_KEYS, then run `mcmp tokens rotate`)."""
    from mcmp.worker.accounts.crypto import generate_key

    typer.echo(generate_key())


@tokens_app.command("rotate")
def tokens_rotate(
    batch_size: Annotated[int, typer.Option(min=1, help="Accounts read per batch")] = 200,
) -> None:
    """Re-encrypt every account's tokens with the newest key; safe to interrupt and run again."""
    from rich.console import Console
    from rich.progress import Progress

    from mcmp.cli.common import connect
    from mcmp.worker.accounts.crypto import TokenKeyError
    from mcmp.worker.accounts.rotation import RotationReport, rotate_all

    connect(redis_needed=False)
    console = Console(soft_wrap=True)
    with Progress(console=console, disable=not console.is_terminal) as progress:
        bar = progress.add_task("re-encrypting tokens", total=None)

        def on_batch(report: RotationReport) -> None:
            done = report.rotated + report.current + len(report.unreadable) + len(report.busy)
            progress.update(bar, total=report.total, completed=done)
            if not console.is_terminal:  # logs and pipes get one line per batch
                typer.echo(f"progress {done}/{report.total} {report.line()}", err=True)

        try:
            report = rotate_all(batch_size, on_batch)
        except TokenKeyError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"done: {report.line()}")
    for account_id in report.unreadable:
        typer.echo(f"unreadable with the configured keys (left untouched): account {account_id}", err=True)
    if report.busy:
        typer.echo(f"{len(report.busy)} accounts changed during the run; run it again", err=True)
    if report.unreadable or report.busy:
        raise typer.Exit(1)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of tables")] = False,
) -> None:
    """What needs attention now: backlog, oldest due, failures by platform and reason, accounts at
    risk, throttles, live workers and dispatchers. Exits 1 when something needs attention."""
    from mcmp.cli.common import connect
    from mcmp.cli.status import print_report
    from mcmp.worker.ops_status import report

    connect(redis_needed=False)
    found = report()
    print_report(found, as_json=as_json)
    if found.attention:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
