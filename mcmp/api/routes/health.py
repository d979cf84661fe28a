"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers have none).

Readiness fails (503 problem) when MongoDB or Redis does not answer: without them the API can
serve nothing. Whether a Celery worker answers a ping is *reported* but does not fail
readiness: the API's job (reads, and enqueueing work that waits safely in Redis) does not need
a worker, and an orchestrator that pulled the API out of service because workers are down would
hide the one tool operators need to see the growing backlog.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from mcmp.api.metrics import render
from mcmp.api.problems import ApiProblem, responses
from mcmp.api.schemas import Liveness, Readiness
from mcmp.config import get_settings
from mcmp.worker import services

router = APIRouter(tags=["health"])


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
        }
    },
    summary="Prometheus metrics",
)
def metrics() -> Response:
    return Response(render(), media_type="text/plain; version=0.0.4; charset=utf-8")
