"""RFC 9457 problem details: every error of the API is ``application/problem+json``.

``type`` is a URN naming the problem (stable, documented below), ``title`` its short summary,
``status`` the HTTP status, ``detail`` what happened this time, ``instance`` the request path.
Validation errors add ``errors`` (one entry per field, ``field`` in dotted form such as
``body.scheduleTime``) and name the fields in ``detail``. A retry or reschedule of a post that
would fail again as it stands is ``urn:mcmp:problem:post-invalid`` (422), its ``errors`` naming
the post's fields (``post.body``: "must not be empty") and nothing re-opened.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mcmp.worker import services

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:mcmp:problem:"


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(examples=[TYPE_PREFIX + "not-found"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ApiProblem(Exception):
    """Raised by routes and dependencies; rendered by :func:`install`."""

    def __init__(
        self, status: int, slug: str, detail: str | None = None, errors: list[FieldError] | None = None
    ) -> None:
        super().__init__(detail or slug)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors


def not_found(what: str = "resource") -> ApiProblem:
    """The single answer for "absent" and "another tenant's": no existence oracle."""
    return ApiProblem(404, "not-found", f"{what} not found")


def problem_response(
    request: Request,
    status: int,
    slug: str,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
) -> JSONResponse:
    body = Problem(
        type=TYPE_PREFIX + slug,
        title=_title(status),
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def install(app: FastAPI) -> None:
    """Render every error (ours, validation, unknown routes, operations, bugs) as a problem."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(request, exc.status, exc.slug, exc.detail, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(field=_field(e.get("loc", ())), message=str(e.get("msg", ""))) for e in exc.errors()
        ]
        fields = ", ".join(dict.fromkeys(e.field for e in errors))
        return problem_response(request, 422, "validation-error", f"invalid request: {fields}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {
            404: "not-found",
            405: "method-not-allowed",
            401: "unauthorized",
            413: "payload-too-large",
        }.get(exc.status_code, "http-error")
        return problem_response(request, exc.status_code, slug, str(exc.detail) if exc.detail else None)

    @app.exception_handler(services.OperationError)
    async def _operation(request: Request, exc: services.OperationError) -> JSONResponse:
        if isinstance(exc, services.NotFound):
            return problem_response(request, 404, "not-found", exc.message)
        if isinstance(exc, services.PostNotPublishable):
            errors = [FieldError(field=f"post.{field}", message=reason) for field, reason in exc.problems]
            return problem_response(request, 422, "post-invalid", exc.message, errors)
        if isinstance(exc, services.NothingToRetry):
            return problem_response(request, 409, "nothing-to-retry", exc.message)
        if isinstance(exc, services.InvalidRequest):
            field = f"body.{exc.field}" if exc.field else "body"
            return problem_response(
                request,
                422,
                "validation-error",
                f"invalid request: {field}",
                [FieldError(field=field, message=exc.message)],
            )
        if isinstance(exc, services.Unavailable):
            return problem_response(request, 503, "unavailable", exc.message)
        return problem_response(request, 409, "conflict", exc.message)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, 500, "internal-error", "unexpected error; see the API log")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses (rewritten to ``application/problem+json`` by the app)."""
    return {s: {"model": Problem, "description": _title(s)} for s in statuses}
