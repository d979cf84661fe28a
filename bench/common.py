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
import random
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
import requests
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
    simulator_env,
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
# The portal's platforms a post goes to (Instagram needs media: not in the default mix), in the
# order a post of k platforms takes them when --platform-mix is 1-1 (website only).
MIX_PLATFORMS = ("website", "facebook", "linkedin", "google-business")
DEFAULT_MIX = "1-4"
DEFAULT_LATENCY_MIX = "website=50,facebook=80,linkedin=150,google-business=100"
# What each simulator accepts as an account (as tests/platform_lab.py); {url} and {slug} filled in.
MIX_ACCOUNTS: dict[str, dict[str, Any]] = {
    "website": {
        "accessToken": "dev-webhook-secret",
        "metadata": {"mode": "webhook", "webhookUrl": "{url}/hooks/{slug}"},
    },
    "facebook": {"accessToken": "EAAB-test-page", "externalAccountId": "{page}", "metadata": {}},
    "linkedin": {
        "accessToken": "li-test-access",
        "refreshToken": "li-test-refresh-1",
        "externalAccountId": "urn:li:organization:{page}",
        "metadata": {},
    },
    "google-business": {
        "accessToken": "gbp-test-access",
        "refreshToken": "gbp-test-refresh-1",
        "externalAccountId": "accounts/100/locations/{page}",
        "metadata": {},
    },
}
# Budgets a bench must not hit (its subject is cost, not throttling): each simulator's control.
MIX_BUDGETS: dict[str, dict[str, int]] = {
    "linkedin": {"app_daily_limit": 10**9, "member_daily_limit": 10**9},
    "google-business": {"quota_per_minute": 10**9},
}


@dataclass(frozen=True)
class Mix:
    """Platforms per post (uniform in lo..hi, a random choice of that many) and each one's latency."""

    lo: int = 1
    hi: int = 1
    latency_ms: dict[str, float] = field(default_factory=lambda: {"website": 50.0})
    tenants: int = 1
    seed: int = 28

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Mix:
        lo, _, hi = str(args.platform_mix).partition("-")
        low, high = int(lo), int(hi or lo)
        if not 1 <= low <= high <= len(MIX_PLATFORMS):
            raise SystemExit(
                f"--platform-mix: LO-HI within 1-{len(MIX_PLATFORMS)}, got {args.platform_mix!r}"
            )
        latency = {"website": float(args.latency_ms)}
        for part in str(args.latency_mix).split(","):
            if part.strip():
                name, _, ms = part.partition("=")
                latency[name.strip()] = float(ms)
        latency["website"] = (
            float(args.latency_ms) if args.latency_ms != 50.0 else latency.get("website", 50.0)
        )
        return cls(low, high, latency, max(1, int(args.tenants)))

    @property
    def platforms(self) -> tuple[str, ...]:
        """Simulators to start: every platform a post of this mix can go to."""
        return MIX_PLATFORMS[: self.hi] if self.lo == self.hi == 1 else MIX_PLATFORMS

    @property
    def average(self) -> float:
        return (self.lo + self.hi) / 2

    def describe(self) -> str:
        lat = ", ".join(f"{p} {self.latency_ms.get(p, 0):g} ms" for p in self.platforms)
        return f"platforms per post {self.lo}-{self.hi} (avg {self.average:g}) of {', '.join(self.platforms)}; latency {lat}; {self.tenants} tenant(s)"

    def choose(self, rng: Any) -> list[str]:
        if self.lo == self.hi == 1:
            return ["website"]
        return rng.sample(list(MIX_PLATFORMS), rng.randint(self.lo, self.hi))


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


def add_mix_args(parser: argparse.ArgumentParser) -> None:
    """The traffic a portal sends: posts to several platforms of several tenants, platforms of unequal speed."""
    parser.add_argument(
        "--platform-mix",
        default=DEFAULT_MIX,
        help="platforms per post, LO-HI drawn uniformly from "
        + ",".join(MIX_PLATFORMS)
        + " (default 1-4: 2.5 on average); 1-1 = website only, the old benchmark",
    )
    parser.add_argument(
        "--latency-mix",
        default=DEFAULT_LATENCY_MIX,
        help="platform=ms answer delay of each platform's simulator (website's default: --latency-ms)",
    )
    parser.add_argument("--tenants", type=int, default=10, help="clients the posts are spread over")


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


def reference_ms(rounds: int = 5) -> float:
    """CPU ms of one fixed pure-Python workload (best of ``rounds``): how fast the machine is now.

    This host's speed drifts: the same HTTP client's CPU per request halved between two runs of one
    day. Figures of runs made at different times compare only in proportion to this number; rows
    of one run compare as they are.
    """
    body = {"postId": "6571f0c2a8b4e3d2c1b0a999", "platforms": ["website", "facebook"], "title": "x" * 80}
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        total = 0
        for i in range(240_000):
            total += len(str(i)) + (i % 7)
        for _ in range(1_200):
            total += len(repr(sorted(body.items())))
        best = min(best, time.process_time() - started)
    return 1000 * best


def machine() -> str:
    """Cores, interpreter and the reference workload's CPU, for a benchmark's first line."""
    return (
        f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"reference loop {reference_ms():.1f} ms"
    )


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
    sims: dict[str, SimClient] = field(default_factory=dict)  # every platform simulator, website's too
    sim_pids: list[int] = field(default_factory=list)
    mix: Mix = field(default_factory=Mix)

    def reset_sims(self) -> None:
        for sim in self.sims.values():
            sim.reset()

    def delivered(self) -> tuple[int, int]:
        """Posts every simulator stored, and the duplicates among them (each simulator's own count)."""
        states = [sim.state() for sim in self.sims.values()]
        return sum(int(st["count"]) for st in states), sum(int(st["duplicates"]) for st in states)

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
            f"{self.mix.describe()} | {machine()} | "
            f"{load_avg()} (1/5 min) at start"
        )


@contextmanager
def stack(
    workdir: Path,
    latency_ms: float,
    extra_env: dict[str, str] | None = None,
    mongodb_uri: str | None = None,
    embedded: dict[str, Any] | None = None,
    mix: Mix | None = None,
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
    mix = mix or Mix(latency_ms={"website": latency_ms})
    sim_procs: dict[str, Any] = {}
    sims: dict[str, SimClient] = {}
    for name in mix.platforms:
        proc, url = start_simulator(
            name, env, workdir / "logs", latency_ms=mix.latency_ms.get(name, latency_ms)
        )
        sim_procs[name], sims[name] = proc, SimClient(url)
        if name != "website":
            env.update(simulator_env(name, url))
        if name in MIX_BUDGETS:
            requests.post(f"{url}/_sim/budget", json=MIX_BUDGETS[name], timeout=5).raise_for_status()
    sim_proc = sim_procs["website"]
    s = Stack(
        workdir,
        uri,
        private,
        sims["website"],
        env,
        list(sim_procs.values()),
        server_info,
        describe_redis(private.url),
        mongo_proc.popen.pid if mongo_proc else None,
        sim_proc.popen.pid,
        sims,
        [p.popen.pid for p in sim_procs.values()],
        mix,
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


def seed_tenants(db: Any, s: Stack) -> list[dict[str, Any]]:
    """``s.mix.tenants`` clients, each with a connected account on every platform of the mix."""
    now = datetime.now(UTC)
    clients = []
    for i in range(s.mix.tenants):
        client = {
            "_id": ObjectId(),
            "name": f"Bench {i}",
            "slug": f"bench-{uuid.uuid4().hex[:6]}",
            "timezone": "UTC",
            "createdAt": now,
            "updatedAt": now,
        }
        db.clients.insert_one(client)
        for name, sim in s.sims.items():
            spec = _fill(MIX_ACCOUNTS[name], url=sim.base_url, slug=client["slug"], page=str(1000001 + i))
            db.integrationaccounts.insert_one(
                {
                    "clientId": str(client["_id"]),
                    "platform": name,
                    "status": "connected",
                    "createdAt": now,
                    "updatedAt": now,
                    **spec,
                }
            )
        clients.append(client)
    return clients


def _fill(value: Any, **names: str) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, **names) for k, v in value.items()}
    return value


def mixed_post_docs(
    clients: list[dict[str, Any]],
    mix: Mix,
    start: datetime,
    deliveries: int,
    seconds: float,
    label: str = "Bench",
    seed: int = 28,
) -> list[dict[str, Any]]:
    """Posts of the mix (tenants in turn) with ``deliveries`` platform deliveries in all, spread
    evenly over ``seconds``; each body is unique (the simulators count duplicates by text)."""
    rng = random.Random(seed)
    chosen: list[list[str]] = []
    total = 0
    while total < deliveries:
        platforms = mix.choose(rng)[: deliveries - total]
        chosen.append(platforms)
        total += len(platforms)
    now = datetime.now(UTC)
    docs = []
    for i, platforms in enumerate(chosen):
        _id = ObjectId()
        docs.append(
            scheduled_post(
                str(clients[i % len(clients)]["_id"]),
                platforms,
                start + timedelta(seconds=seconds * i / max(1, len(chosen))),
                title=f"{label} {i}",
                body=f"bench post {i} {_id}",
                now=now,
                _id=_id,
            )
        )
    return docs


def deliveries_of(docs: list[dict[str, Any]]) -> int:
    return sum(len(d["platforms"]) for d in docs)


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
        if (coll.find_one({"_id": last}, {"status": 1}) or {}).get("status") != "scheduled":  # by _id alone
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


def offer_mix(
    s: Stack, clients: list[dict[str, Any]], rate: float, seconds: float
) -> tuple[Offered, list[dict[str, Any]]]:
    """``rate`` deliveries/s of the stack's mix for ``seconds`` from 4 s from now; their lateness."""
    db = s.db
    load = load_avg()
    docs = mixed_post_docs(
        clients, s.mix, datetime.now(UTC) + timedelta(seconds=4), int(rate * seconds), seconds
    )
    ids = insert_docs(db.posts, docs)
    settled = wait_settled(db, ids, timeout=seconds * 10 + 120)
    result = Offered(rate, our_lateness(db, ids, deliveries_of(docs)), s.delivered()[1], settled, load)
    s.reset_sims()
    return result, docs


def our_lateness(db: Any, ids: list[ObjectId], expected: int | None = None) -> Lateness:
    """Read each published delivery's (scheduledFor, callStartedAt); ``expected`` deliveries (one per post)."""
    # The state is checked here, not in the query: with a state condition SecantusDB plans over
    # the (state, dueAt) index and reads every published delivery for each chunk.
    rows = find_in(db.deliveries, "postId", [str(i) for i in ids], projection=LATENESS_FIELDS)
    pairs = [
        (r["scheduledFor"], r["callStartedAt"])
        for r in rows
        if r.get("state") == "published" and r.get("callStartedAt")
    ]
    return Lateness.of(len(ids) if expected is None else expected, pairs)


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
