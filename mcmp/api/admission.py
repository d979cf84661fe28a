"""What the API checks before it reads a request body: the caller's key, then the body's size.

Routes take their body before their dependencies run, so without this an anonymous caller could
make the API read (and hold) any amount of data: a few concurrent 100 MB bodies cost it
gigabytes. This ASGI middleware sits in front of the routes and, for a request that carries a
body to a route that needs a key:

1. checks ``X-API-Key`` first (401 problem, body unread; the caller found is handed to the
   route's dependency so the key is looked up once);
2. refuses a declared ``Content-Length`` above ``MCMP_API_MAX_BODY_BYTES`` at once (413 problem,
   body unread);
3. counts the bytes of a body without a declared length as they are read, and stops at the cap
   (413 problem).

The early answers close the connection, so the server never drains what the caller keeps sending.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcmp.api.deps import API_KEY_HEADER, caller_for
from mcmp.api.problems import ApiProblem, problem_response
from mcmp.errors import PublisherError

# Paths that take no key (probes, scrapers, the API's own description).
PUBLIC_PREFIXES = ("/v1/health/", "/metrics", "/docs", "/redoc", "/openapi.json")


class BodyTooLarge(PublisherError, HTTPException):
    """Raised while a body is read past the cap; FastAPI passes HTTP exceptions through as is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit:,} bytes")


class RequestAdmission:
    """ASGI middleware: key before body, body size capped (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        if has_body and not scope["path"].startswith(PUBLIC_PREFIXES):
            try:
                caller = await run_in_threadpool(caller_for, headers.get(API_KEY_HEADER))
            except ApiProblem as problem:
                await self._refuse(scope, receive, send, problem.status, problem.slug, problem.detail)
                return
            scope.setdefault("state", {})["caller"] = caller
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            detail = f"request body larger than {self.max_body_bytes:,} bytes"
            await self._refuse(scope, receive, send, 413, "payload-too-large", detail)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        return counted

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, slug: str, detail: str | None
    ) -> None:
        response = problem_response(Request(scope), status, slug, detail)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def install(app: Any, max_body_bytes: int) -> None:
    app.add_middleware(RequestAdmission, max_body_bytes=max_body_bytes)
