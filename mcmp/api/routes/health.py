"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers have none).

Readiness and the backlog figures of ``/metrics`` are computed at most once per
``MCMP_HEALTH_CACHE_SECONDS`` (:mod:`mcmp.api.cache`); ``/metrics`` asks for a bearer token
when ``MCMP_METRICS_TOKEN`` is set.

Readiness fails (503 problem) when MongoDB or Redis does not answer: without them the API can
serve nothing. Whether a Celery worker answers a ping is *reported* but does not fail
readiness: the API's job (reads, and enqueueing work that waits safely in Redis) does not need
a worker, and an orchestrator that pulled the API out of service because workers are down would
hide the one tool operators need to see the growing backlog.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from mcmp.api.cache import Recent
from mcmp.api.metrics import authorized, render
from mcmp.api.problems import ApiProblem, responses
from mcmp.api.schemas import Liveness, Readiness
from mcmp.config import get_settings
from mcmp.worker import services

router = APIRouter(tags=["health"])
_recent = Recent()


@router.get("/v1/health/live", response_model=Liveness, summary="The process is up")
def live() -> Liveness:
    return Liveness()


@lru_cache(maxsize=4)
def _mongo_probe(uri: str) -> Any:
    """A client with short timeouts: readiness must answer fast when MongoDB is down."""
    from pymongo import MongoClient

    return MongoClient(uri, serverSelectionTimeoutMS=1500, connectTimeoutMS=1500, socketTimeoutMS=1500)


@router.get(
    "/v1/health/ready",
    response_model=Readiness,
    responses=responses(422, 503),
    summary="MongoDB and Redis answer (workers reported, not required)",
)
def ready(
    worker_timeout: Annotated[float, Query(alias="workerTimeout", ge=0, le=1)] = 0.5,
) -> Readiness:
    settings = get_settings()
    key = ("ready", settings.mongodb_uri, settings.redis_url, round(worker_timeout, 1))
    result: Readiness = _recent.get(key, settings.health_cache_seconds, lambda: _check(worker_timeout))
    return result


def _check(worker_timeout: float) -> Readiness:
    """Ping MongoDB and Redis (and count answering workers): the figures ``ready`` keeps a few seconds."""
    import redis
    from pymongo.errors import PyMongoError

    problems = []
    try:
        _mongo_probe(get_settings().mongodb_uri).admin.command("ping")
    except PyMongoError as exc:
        problems.append(f"mongodb: {type(exc).__name__}")
    try:
        redis.Redis.from_url(get_settings().redis_url, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError as exc:
        problems.append(f"redis: {type(exc).__name__}")
    if problems:
        raise ApiProblem(503, "not-ready", "; ".join(problems))
    workers = services.answering_workers(worker_timeout) if worker_timeout > 0 else 0
    return Readiness(status="ready", mongodb="ok", redis="ok", workers=workers)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        },
        **responses(401),
    },
    summary="Prometheus metrics",
)
def metrics(authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> Response:
    if not authorized(authorization):
        raise ApiProblem(
            401, "unauthorized", "this /metrics needs Authorization: Bearer <MCMP_METRICS_TOKEN>"
        )
    return Response(render(), media_type="text/plain; version=0.0.4; charset=utf-8")
