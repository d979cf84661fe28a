"""The ``mcmp`` command: run the worker, dispatcher, beat, simulators and the dev stack."""

from __future__ import annotations

import os
import signal
import threading
from typing import Annotated

import typer

app = typer.Typer(help="MCMP Publisher: exactly-once scheduled publishing.", no_args_is_help=True)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Worker processes/threads")] = 2,
    pool: Annotated[str, typer.Option(help="prefork | threads | solo")] = "prefork",
    queues: Annotated[str, typer.Option("--queues", "-Q")] = "publish,analytics,maintenance",
    hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
) -> None:
    """Run a Celery worker (waits for MongoDB and Redis first)."""
    from worker.runtime import bootstrap

    settings = bootstrap(wait=True)
    from worker.app import app as celery_app

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
def dispatcher() -> None:
    """Run a dispatcher loop (any number may run; claims are atomic)."""
    from worker.dispatcher import Dispatcher
    from worker.runtime import bootstrap

    bootstrap(wait=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Dispatcher().run_forever(stop)


@app.command()
def beat() -> None:
    """Run Celery beat for the periodic maintenance, token and analytics tasks."""
    from worker.runtime import bootstrap

    settings = bootstrap(wait=True)
    from worker.app import app as celery_app

    schedule = os.path.join(os.environ.get("MCMP_STATE_DIR", "."), "celerybeat-schedule")
    celery_app.start(["beat", "--loglevel", settings.log_level, "-s", schedule])


@app.command()
def simulate(
    platform: Annotated[str, typer.Argument(help="Platform name, e.g. website, google-business")],
    port: int = 0,
    latency_ms: float = 0.0,
) -> None:
    """Serve one platform simulator on a local port (prints its URL)."""
    from simulators import serve_forever, simulator_class

    serve_forever(simulator_class(platform)(latency_ms=latency_ms), "127.0.0.1", port)


@app.command()
def dev(
    data_dir: Annotated[str, typer.Option(help="Where the embedded MongoDB keeps its data")] = ".mcmp",
    demo_posts: Annotated[int, typer.Option(help="Demo posts to schedule in the next minute")] = 6,
    api: Annotated[bool, typer.Option(help="Also start the admin API")] = True,
) -> None:
    """Start everything locally: embedded MongoDB, Redis, simulators, worker, dispatcher, API."""
    from worker.dev import run_dev

    run_dev(data_dir=data_dir, demo_posts=demo_posts, with_api=api)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
