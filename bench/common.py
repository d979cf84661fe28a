"""Shared scaffolding of the benchmarks: real processes on loopback, always stopped at the end.

Every benchmark runs against real services: SecantusDB as a subprocess (or a real ``mongod``
given with ``--mongodb-uri`` / ``MCMP_BENCH_MONGODB_URI``), a private ``redis-server`` (its own,
so its CPU can be read and nothing else is disturbed), the webhook simulator answering after
``--latency-ms``, and ``mcmp worker`` / ``mcmp dispatcher`` subprocesses. CPU and memory are
read from ``/proc`` so figures do not depend on the processes' own instrumentation.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from bson import ObjectId
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcmp.devstack import (  # noqa: E402
    EMBEDDED_SWITCH_INTERVAL,
    PrivateRedis,
    Proc,
    SimClient,
    find_in,
    scheduled_post,
    spawn,
    start_secantus,
    start_simulator,
    still_scheduled,
)
from mcmp.models.db import with_database  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Threads per publishing worker, as docker-compose.yml runs them: a publish waits on the
# platform and the database most of the time, and with 8 threads per worker the waiting, not
# the CPU, capped throughput (bench.embedded_server: p99 1.70 s with 8, 0.95 s with 16).
WORKER_THREADS = 16


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def add_worker_args(parser: argparse.ArgumentParser) -> None:
    """How many publishing workers, and threads in each (as docker-compose.yml runs them)."""
    parser.add_argument("--workers", type=int, default=2, help="worker processes (Celery parents)")
    parser.add_argument("--concurrency", type=int, default=WORKER_THREADS, help="threads per worker")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options every benchmark takes: which MongoDB, and how slow the platform is."""
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("MCMP_BENCH_MONGODB_URI"),
        help="a real mongod (e.g. mongodb://host:27017/); default: an embedded SecantusDB subprocess",
    )
    parser.add_argument("--latency-ms", type=float, default=50.0, help="webhook simulator answer delay")


# --- /proc accounting ---------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a Celery parent and its prefork children)."""
    found = [pid]
    i = 0
    while i < len(found):
        try:
            for task in os.listdir(f"/proc/{found[i]}/task"):
                with open(f"/proc/{found[i]}/task/{task}/children") as fh:
                    found.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
        i += 1
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of each process in ``pids`` and its descendants (alive ones)."""
    total = 0
    for root in pids:
        for pid in process_tree(root):
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            except OSError:
                pass
    return total / CLOCK_TICKS


def rss_mib(pids: Iterable[int]) -> float:
    """Resident memory of the processes and their descendants, MiB (shared pages counted per process)."""
    total = 0
    for root in pids:
        for pid in process_tree(root):
            try:
                with open(f"/proc/{pid}/statm") as fh:
                    total += int(fh.read().split()[1]) * PAGE_SIZE
            except OSError:
                pass
    return total / 2**20


def load_avg() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


# --- servers ------------------------------------------------------------------------------------


def describe_mongo(base_uri: str, embedded: bool) -> str:
    """Which server answered: serverStatus.process/host and buildInfo.version."""
    client = MongoClient(base_uri, serverSelectionTimeoutMS=5000)
    build = client.admin.command("buildInfo")
    try:
        status = client.admin.command("serverStatus")
        process, host = status.get("process", "?"), status.get("host", "?")
    except Exception as exc:  # some servers restrict serverStatus
        process, host = f"serverStatus unavailable ({type(exc).__name__})", "?"
    where = "embedded subprocess" if embedded else base_uri.split("@")[-1].split("?")[0]
    options = base_uri.partition("?")[2] or "driver defaults"
    return f"{process} (buildInfo {build.get('version')}, host {host}, {where}; {options})"


def describe_embedded(standalone: bool = True, switch_interval: float = EMBEDDED_SWITCH_INTERVAL) -> str:
    return f"{'standalone' if standalone else 'replica set'}, GIL switch {switch_interval * 1000:g} ms"


def describe_redis(url: str) -> str:
    info = redis.Redis.from_url(url).info("server")
    return f"redis-server {info.get('redis_version')} (private, pid {info.get('process_id')}, {url.split('@')[-1]})"


@dataclass
class Stack:
    """MongoDB + private Redis + webhook simulator + workers + dispatcher for one benchmark."""

    workdir: Path
    mongo_uri: str
    redis: PrivateRedis
    sim: SimClient
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    server_info: str = ""
    redis_info: str = ""
    mongo_pid: int | None = None  # None for an external mongod (its CPU is not on this machine)
    sim_pid: int | None = None

    @property
    def db(self) -> Any:
        return MongoClient(self.mongo_uri, tz_aware=True).get_default_database()

    @property
    def redis_pid(self) -> int:
        assert self.redis.proc is not None
        return self.redis.proc.pid

    def start(self, name: str, *args: str) -> Proc:
        proc = spawn(
            name, [sys.executable, "-m", "mcmp.cli", *args], self.env, self.workdir / "logs", cwd=ROOT
        )
        self.procs.append(proc)
        return proc

    def start_publishing(
        self, workers: int, concurrency: int, pool: str = "threads", tag: str = "bench"
    ) -> tuple[list[Proc], Proc]:
        """``workers`` Celery workers and one dispatcher, given the few seconds they need to be up."""
        started = [
            self.start(f"worker{i}", "worker", "-c", str(concurrency), "--pool", pool, "-n", f"{tag}{i}@%h")
            for i in range(workers)
        ]
        dispatcher = self.start("dispatcher", "dispatcher")
        time.sleep(6)
        return started, dispatcher

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = spawn(name, argv, env or self.env, self.workdir / "logs", cwd=ROOT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def describe(self) -> str:
        return (
            f"MongoDB: {self.server_info} | Redis: {self.redis_info} | "
            f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()} | "
            f"{load_avg()} (1/5 min) at start"
        )


@contextmanager
def stack(
    workdir: Path,
    latency_ms: float,
    extra_env: dict[str, str] | None = None,
    mongodb_uri: str | None = None,
    embedded: dict[str, Any] | None = None,
) -> Iterator[Stack]:
    """The servers of one benchmark; ``embedded`` options start SecantusDB differently."""
    # SIGTERM (timeout, run_all stopped) must still run the cleanup below: no orphaned servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir.mkdir(parents=True, exist_ok=True)
    external = mongodb_uri or os.environ.get("MCMP_BENCH_MONGODB_URI")
    mongo_proc = None
    if external:
        base = external
    else:
        mongo_proc, base = start_secantus(workdir / "mongo", **(embedded or {}))
    uri = with_database(base, f"bench_{uuid.uuid4().hex[:8]}")
    server_info = describe_mongo(base, embedded=mongo_proc is not None)
    if mongo_proc is not None:
        server_info += f" [{describe_embedded(**(embedded or {}))}]"
    private = PrivateRedis(workdir / "redis")
    private.start()
    env = dict(
        os.environ,
        MCMP_MONGODB_URI=uri,
        MCMP_REDIS_URL=private.url,
        MCMP_LOG_LEVEL="WARNING",
        MCMP_WEBSITE__TIMEOUT_SECONDS="10",
        MCMP_FETCH_ALLOWED_NETWORKS="127.0.0.0/8",  # the webhook simulator listens on loopback
    )
    env.pop("MCMP_BROKER_URL", None)
    env.update(extra_env or {})
    sim_proc, sim_url = start_simulator("website", env, workdir / "logs", latency_ms=latency_ms)
    s = Stack(
        workdir,
        uri,
        private,
        SimClient(sim_url),
        env,
        [sim_proc],
        server_info,
        describe_redis(private.url),
        mongo_proc.popen.pid if mongo_proc else None,
        sim_proc.popen.pid,
    )
    from mcmp.models.db import connect, ensure_schema

    ensure_schema(connect(uri))
    try:
        yield s
    finally:
        for proc in reversed(s.procs):
            proc.stop()
        private.stop()
        if mongo_proc:
            mongo_proc.stop()
        elif external:
            MongoClient(base).drop_database(MongoClient(uri).get_default_database().name)


def seed_client(db: Any, sim_url: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    client = {
        "_id": ObjectId(),
        "name": "Bench",
        "slug": f"bench-{uuid.uuid4().hex[:6]}",
        "timezone": "UTC",
        "createdAt": now,
        "updatedAt": now,
    }
    db.clients.insert_one(client)
    db.integrationaccounts.insert_one(
        {
            "clientId": str(client["_id"]),
            "platform": "website",
            "status": "connected",
            "accessToken": "dev-webhook-secret",
            "createdAt": now,
            "updatedAt": now,
            "metadata": {"mode": "webhook", "webhookUrl": f"{sim_url}/hooks/{client['slug']}"},
        }
    )
    return client


def post_docs(
    client: dict[str, Any], start: datetime, count: int, seconds: float, label: str = "Bench"
) -> list[dict[str, Any]]:
    """``count`` scheduled posts (as the frontend writes them) spread evenly over ``seconds``."""
    now = datetime.now(UTC)
    return [
        scheduled_post(
            str(client["_id"]),
            ["website"],
            start + timedelta(seconds=seconds * i / max(1, count)),
            title=f"{label} {i}",
            body=f"bench post {i}",
            now=now,
            _id=ObjectId(),
        )
        for i in range(count)
    ]


def insert_docs(collection: Any, docs: list[dict[str, Any]], batch: int = 5000) -> list[ObjectId]:
    for i in range(0, len(docs), batch):
        collection.insert_many(docs[i : i + batch], ordered=False)
    return [d["_id"] for d in docs]


def insert_spread(
    db: Any, client: dict[str, Any], start: datetime, count: int, seconds: float
) -> list[ObjectId]:
    """``count`` scheduled posts spread evenly over ``seconds`` from ``start`` (insert_many batches)."""
    return insert_docs(db.posts, post_docs(client, start, count, seconds))


def wait_settled(db: Any, ids: list[ObjectId], timeout: float, collection: str = "posts") -> bool:
    """Wait until none of these posts is still ``scheduled``, at little cost to the database.

    Polls the batch's last-scheduled post by ``_id`` until it leaves ``scheduled``, then only
    the posts still scheduled at the previous look (``find_in``: linear). Asking for the whole
    batch every half second through the run would load the database under test.
    """
    coll = db[collection]
    times = {d["_id"]: d["scheduleTime"] for d in find_in(coll, "_id", ids, projection={"scheduleTime": 1})}
    if not times:
        return True
    last = max(times, key=lambda i: times[i])
    pending = list(times)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if coll.find_one({"_id": last, "status": "scheduled"}, {"_id": 1}) is None:
            pending = still_scheduled(coll, pending)
            if not pending:
                return True
        time.sleep(0.5)
    return False


@dataclass
class Lateness:
    """Lateness and throughput of one batch, from (scheduleTime, call start) pairs."""

    count: int
    late: list[float]
    span: float

    @classmethod
    def of(cls, count: int, pairs: list[tuple[datetime, datetime]]) -> Lateness:
        late = [(started - due).total_seconds() for due, started in pairs]
        starts = [started for _, started in pairs]
        span = (max(starts) - min(starts)).total_seconds() if len(starts) > 1 else 0.0
        return cls(count, late, span)

    @property
    def achieved(self) -> float:
        return len(self.late) / self.span if self.span else float("nan")

    @property
    def lost(self) -> int:
        return self.count - len(self.late)

    def cells(self) -> str:
        p = [percentile(self.late, q) for q in (50, 95, 99)]
        top = max(self.late, default=float("nan"))
        return f"{p[0]:>7.3f} {p[1]:>7.3f} {p[2]:>7.3f} {top:>7.3f} {self.achieved:>10.1f}"


def warm_up(s: Stack, client: dict[str, Any], rate: float, seconds: float) -> int:
    """An unmeasured batch: every worker thread opens its database and HTTP connections."""
    if seconds <= 0:
        return 0
    db = s.db
    warm = insert_spread(db, client, datetime.now(UTC) + timedelta(seconds=2), int(rate * seconds), seconds)
    wait_settled(db, warm, timeout=120)
    s.sim.reset()
    return len(warm)


@dataclass
class Offered:
    """One window of posts spread evenly at an offered rate, measured once all settled."""

    rate: float
    lateness: Lateness
    duplicates: int
    settled: bool
    load: str

    def row(self) -> str:
        return (
            f"{self.rate:>9.0f} {self.lateness.count:>6} {self.lateness.cells()} {self.duplicates:>5} "
            f"{self.lateness.lost:>5}  {self.load}{'' if self.settled else '  (not drained in time)'}"
        )


OFFERED_HEADER = (
    f"{'offered/s':>9} {'posts':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7} "
    f"{'achieved/s':>10} {'dups':>5} {'lost':>5}  load"
)


def offer(s: Stack, client: dict[str, Any], rate: float, seconds: float) -> tuple[Offered, list[ObjectId]]:
    """Schedule ``rate × seconds`` posts from 4 s from now, wait for them, read their lateness."""
    db = s.db
    load = load_avg()
    ids = insert_spread(db, client, datetime.now(UTC) + timedelta(seconds=4), int(rate * seconds), seconds)
    settled = wait_settled(db, ids, timeout=seconds * 10 + 120)
    result = Offered(rate, our_lateness(db, ids), s.sim.state()["duplicates"], settled, load)
    s.sim.reset()
    return result, ids


def our_lateness(db: Any, ids: list[ObjectId]) -> Lateness:
    """Read each published delivery's (scheduledFor, callStartedAt)."""
    # The state is checked here, not in the query: with a state condition SecantusDB plans over
    # the (state, dueAt) index and reads every published delivery for each chunk.
    rows = find_in(db.deliveries, "postId", [str(i) for i in ids], projection=LATENESS_FIELDS)
    pairs = [
        (r["scheduledFor"], r["callStartedAt"])
        for r in rows
        if r.get("state") == "published" and r.get("callStartedAt")
    ]
    return Lateness.of(len(ids), pairs)


LATENESS_FIELDS = {"state": 1, "callStartedAt": 1, "scheduledFor": 1}


def git_rev() -> str:
    """HEAD, marked ``+dirty`` when the code the processes import has uncommitted changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "mcmp"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "?"
