"""Fixtures on real services (started by mcmp.devstack). Factories write documents the way the
NestJS/Mongoose frontend does (``__v``, ``_id`` in nested objects, BSON dates)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from bson import ObjectId
from cryptography.fernet import Fernet

from mcmp.devstack import (
    Proc,
    SimClient,
    simulator_env,
    spawn,
    start_secantus,
    start_simulator,
    stop_all,
    wait_until,
)
from tests import ROOT


def _redis_url() -> str:
    """The tests' Redis DB; under pytest-xdist each worker its own (gw1 the one below gw0's…).

    Celery's queues, liveness and rate-limit keys live in the DB (and kombu prefixes its fanout
    channels with it), so tests running side by side never take each other's messages.
    """
    url = urlsplit(os.environ.get("MCMP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    base = int(url.path.strip("/") or 0)
    return urlunsplit(url._replace(path=f"/{(base - int(worker.removeprefix('gw'))) % 16}"))


REDIS_URL = _redis_url()

# --- tiers -------------------------------------------------------------------------------------
# Fixtures that start processes (workers, dispatchers, beat, simulators as processes, a real
# WordPress). A test using one, or written in a module that starts child processes itself (the
# CLI, ``mcmp dev``, docker-compose, Python under another TZ), or a chaos run, is marked ``e2e``;
# ``pytest -m "not e2e"`` is the fast tier: direct calls on the real SecantusDB and Redis, with
# simulators on in-process threads.
PROCESS_FIXTURES = frozenset(
    {
        "procs",
        "start_worker",
        "start_dispatcher",
        "webhook_sim",
        "make_webhook_account",
        "platform_lab",
        "wordpress",
    }
)
PROCESS_STARTERS = ("Popen(", "subprocess.run(", "spawn(", "start_simulator(", "PrivateRedis(")


@functools.cache
def _module_starts_processes(path: str) -> bool:
    source = Path(path).read_text()
    return any(starter in source for starter in PROCESS_STARTERS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if (
            PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            or item.get_closest_marker("chaos") is not None
            or (module is not None and _module_starts_processes(module.__file__))
        ):
            item.add_marker(pytest.mark.e2e)


# Tests run with encryption on, as production does (one key per test session).
TOKEN_KEY = Fernet.generate_key().decode()
LOOPBACK = "127.0.0.0/8"
# Where platform calls go in a test that starts no simulator for them: a closed loopback port, so
# no test ever calls (nor sends a token to) a real platform. platform_lab aims them at simulators.
NO_PLATFORM = "http://127.0.0.1:9"
PLATFORM_URLS = {
    key: value
    for platform in ("facebook", "instagram", "linkedin", "google-business")
    for key, value in simulator_env(platform, NO_PLATFORM).items()
    if key.endswith("_URL")
}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcmp-run")


@pytest.fixture(scope="session")
def mongo_base_uri(run_dir: Path) -> Iterator[str]:
    """A MongoDB wire server: MCMP_TEST_MONGODB_URI (a real mongod) or an embedded SecantusDB."""
    external = os.environ.get("MCMP_TEST_MONGODB_URI")
    if external:
        yield external
        return
    proc, uri = start_secantus(run_dir / "mongo")
    yield uri
    proc.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is required at {REDIS_URL} ({type(exc).__name__}). Start it with: redis-server --daemonize yes",
            pytrace=False,
        )
    return REDIS_URL


@contextlib.contextmanager
def fresh_env(
    mongo_base_uri: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A fresh database and an empty Redis DB; MCMP_* settings pointing at them (any fixture scope)."""
    from mcmp.config import reset_settings
    from mcmp.connectors import registry
    from mcmp.models.db import connect, ensure_schema, with_database
    from mcmp.worker.publishing import delivery_states

    db_name = f"mcmp_test_{uuid.uuid4().hex[:10]}"
    uri = with_database(mongo_base_uri, db_name)
    redis.Redis.from_url(redis_url).flushdb()
    values = {
        "MCMP_ENV": "test",
        "MCMP_MONGODB_URI": uri,
        "MCMP_REDIS_URL": redis_url,
        "MCMP_LOG_JSON": "true",
        "MCMP_DISPATCH_INTERVAL_SECONDS": "0.2",
        "MCMP_LOOKAHEAD_SECONDS": "1.5",
        "MCMP_REAP_INTERVAL_SECONDS": "1",
        "MCMP_SETTLE_AFTER_SECONDS": "5",
        "MCMP_RETRY_BASE_SECONDS": "0.5",
        "MCMP_RETRY_MAX_SECONDS": "5",
        "MCMP_MAX_ATTEMPTS": "8",
        "MCMP_WEBSITE__TIMEOUT_SECONDS": "2",
        "MCMP_TOKEN_KEYS": TOKEN_KEY,
        # Simulators and media servers listen on loopback; production refuses it.
        "MCMP_FETCH_ALLOWED_NETWORKS": LOOPBACK,
        **PLATFORM_URLS,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    registry.clear_cache()
    db = connect(uri)
    ensure_schema(db)
    delivery_states.register_lease_keeper()  # as bootstrap does: tests run attempts in-process
    full = dict(os.environ)
    full.update(values)
    yield full
    reset_settings()
    registry.clear_cache()
    try:
        db.client.drop_database(db_name)
    except Exception:
        pass


@pytest.fixture
def env(mongo_base_uri: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A fresh database and an empty Redis DB per test; MCMP_* settings pointing at them."""
    with fresh_env(mongo_base_uri, redis_url, monkeypatch) as values:
        yield values


@pytest.fixture
def no_token_keys(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process without MCMP_TOKEN_KEYS (and without permission to store plaintext)."""
    from mcmp.config import reset_settings
    from mcmp.worker.accounts import crypto

    monkeypatch.setenv("MCMP_TOKEN_KEYS", "")
    monkeypatch.delenv("MCMP_ALLOW_PLAINTEXT_TOKENS", raising=False)
    reset_settings()
    assert not crypto.has_keys()
    return dict(env, MCMP_TOKEN_KEYS="")


def allow_plaintext_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Say explicitly that tokens may be stored unencrypted (this process)."""
    from mcmp.config import reset_settings

    monkeypatch.setenv("MCMP_ALLOW_PLAINTEXT_TOKENS", "true")
    reset_settings()


@pytest.fixture
def db(env: dict[str, str]) -> Any:
    from mcmp.models import Post

    return Post._get_collection().database


@pytest.fixture
def procs(run_dir: Path) -> Iterator[Callable[..., Proc]]:
    """Factory of real child processes (workers, dispatchers, simulators); all stopped at the end."""
    started: list[Proc] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = spawn(name, args, env, run_dir / "logs", cwd=ROOT)
        started.append(proc)
        return proc

    yield start
    stop_all(started)


MCMP = [sys.executable, "-m", "mcmp.cli"]


@pytest.fixture
def start_worker(procs: Callable[..., Proc]) -> Callable[..., Proc]:
    def start(
        env: dict[str, str],
        concurrency: int = 2,
        pool: str = "prefork",
        name: str = "worker",
        queues: str | None = None,
    ) -> Proc:
        proc = procs(
            name,
            [
                *MCMP,
                "worker",
                "-c",
                str(concurrency),
                "--pool",
                pool,
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
                *(["-Q", queues] if queues else []),
            ],
            env,
        )
        wait_until(
            lambda: "worker ready" in proc.log_text() or not proc.alive(), 60, 0.2, "worker did not start"
        )
        assert proc.alive(), proc.log_text()[-3000:]
        return proc

    return start


@pytest.fixture
def start_dispatcher(procs: Callable[..., Proc]) -> Callable[..., Proc]:
    def start(env: dict[str, str], name: str = "dispatcher") -> Proc:
        proc = procs(name, [*MCMP, "dispatcher"], env)
        wait_until(
            lambda: "dispatcher started" in proc.log_text() or not proc.alive(),
            60,
            0.2,
            "dispatcher did not start",
        )
        assert proc.alive(), proc.log_text()[-3000:]
        return proc

    return start


@pytest.fixture
def webhook_sim(env: dict[str, str], run_dir: Path) -> Iterator[SimClient]:
    proc, url = start_simulator("website", env, run_dir / "logs")
    client = SimClient(url)
    yield client
    proc.stop()


# --- factories writing documents the way Mongoose does -------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def make_client(db: Any) -> Callable[..., dict[str, Any]]:
    def make(**fields: Any) -> dict[str, Any]:
        slug = fields.pop("slug", f"client-{uuid.uuid4().hex[:8]}")
        doc = {
            "_id": ObjectId(),
            "name": fields.pop("name", slug.title()),
            "slug": slug,
            "timezone": "UTC",
            "brandSettings": {"fonts": []},
            "hashtagBank": [],
            "ctaTemplates": [],
            "defaultPostingWindows": [],
            "createdAt": _now(),
            "updatedAt": _now(),
            "__v": 0,
            **fields,
        }
        db.clients.insert_one(doc)
        return doc

    return make


@pytest.fixture
def make_account(db: Any) -> Callable[..., dict[str, Any]]:
    def make(client: dict[str, Any], platform: str, **fields: Any) -> dict[str, Any]:
        doc = {
            "_id": ObjectId(),
            "clientId": str(client["_id"]),
            "platform": platform,
            "accountName": f"{client['slug']} on {platform}",
            "status": "connected",
            "metadata": {},
            "createdAt": _now(),
            "updatedAt": _now(),
            "__v": 0,
            **fields,
        }
        db.integrationaccounts.insert_one(doc)
        return doc

    return make


@pytest.fixture
def make_webhook_account(
    make_account: Callable[..., dict[str, Any]], webhook_sim: SimClient
) -> Callable[..., dict[str, Any]]:
    def make(client: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return make_account(
            client,
            "website",
            accessToken="dev-webhook-secret",
            metadata={"webhookUrl": f"{webhook_sim.base_url}/hooks/{client['slug']}", "mode": "webhook"},
            **fields,
        )

    return make


@pytest.fixture
def make_post(db: Any) -> Callable[..., dict[str, Any]]:
    def make(
        client: dict[str, Any], platforms: list[str], when: datetime | None = None, **fields: Any
    ) -> dict[str, Any]:
        doc = {
            "_id": ObjectId(),
            "clientId": str(client["_id"]),
            "title": "Hello",
            "body": f"Post {uuid.uuid4().hex[:8]}",
            "platforms": platforms,
            "assetUrls": [],
            "status": "scheduled",
            "scheduleTime": when or _now() + timedelta(seconds=1),
            "platformPostIds": {"_id": ObjectId()},
            "publishedAt": {"_id": ObjectId()},
            "createdById": str(ObjectId()),
            "statusHistory": [
                {
                    "_id": ObjectId(),
                    "at": _now(),
                    "fromStatus": "approved",
                    "toStatus": "scheduled",
                    "byUserId": "u1",
                }
            ],
            "createdAt": _now(),
            "updatedAt": _now(),
            "__v": 0,
            **fields,
        }
        db.posts.insert_one(doc)
        return doc

    return make


@pytest.fixture
def platform_lab(
    env: dict[str, str],
    run_dir: Path,
    make_account: Callable[..., dict[str, Any]],
    request: pytest.FixtureRequest,
) -> Iterator[Any]:
    """Simulators for the platforms named by ``@pytest.mark.platforms(...)`` (default: all with specs)."""
    from tests.platform_lab import ACCOUNT_SPECS, start_lab

    marker = request.node.get_closest_marker("platforms")
    platforms = list(marker.args) if marker else list(ACCOUNT_SPECS)
    yield from start_lab(env, platforms, run_dir / "logs")
