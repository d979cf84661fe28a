"""The admin API application: versioned routes under ``/v1``, OpenAPI at ``/openapi.json``.

``/docs`` (Swagger UI) and ``/redoc`` are served with their scripts and styles from the
installed ``fastapi-offline`` package, never from a CDN: operators open them on machines
without internet access, where a CDN page renders blank.

``create_app()`` does not connect to anything: the caller (``mcmp api`` via
:func:`mcmp.worker.runtime.bootstrap`, or a test fixture) has connected mongoengine already.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from mcmp.api import admission, problems
from mcmp.api.routes import accounts, analytics, health, posts, readiness, stats
from mcmp.config import get_settings

API_VERSION = "1.0.0"


def create_app() -> FastAPI:
    app = FastAPIOffline(
        # No "validate this spec" badge: it would fetch from the public validator.
        swagger_ui_parameters={"validatorUrl": None},
        title="MCMP Publisher admin API",
        version=API_VERSION,
        description=(
            "Operate the publisher: posts and their per-platform deliveries (retry, cancel, "
            "reschedule), integration accounts (tokens never shown), analytics, queue stats. "
            "Authenticate with `X-API-Key` (`mcmp apikey create`); a key sees only its tenants. "
            "A request with a body is refused before the body is read when its key is missing or "
            "wrong (401) or its body is larger than `MCMP_API_MAX_BODY_BYTES`, 1 MB by default (413). "
            "Ids are 24 hex digits in any case; errors are RFC 9457 `application/problem+json`."
        ),
    )
    problems.install(app)
    admission.install(app, get_settings().api_max_body_bytes)
    for module in (health, readiness, posts, accounts, analytics, stats):
        app.include_router(module.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with every 4xx/5xx documented as ``application/problem+json``."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    response["content"] = {problems.MEDIA_TYPE: {"schema": problem_ref}}
            operation.get("responses", {}).setdefault(
                "500",
                {
                    "description": "Internal Server Error",
                    "content": {problems.MEDIA_TYPE: {"schema": problem_ref}},
                },
            )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
