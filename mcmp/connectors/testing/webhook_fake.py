"""A receiver of MCMP's signed webhook with fault injection, on loopback: a plugin's platform fake.

It speaks the contract of :mod:`mcmp.connectors.signing` and nothing else: ``POST /hooks/{site}``
stores a JSON post ``{"title", "body", ...}`` once per ``Idempotency-Key`` and answers
``201 {"id", "url"}``; ``GET /hooks/{site}?idempotency_key=K`` answers the stored post or 404; a
bad or stale signature is 401, a post without a title 422. The faults are those of
:class:`~mcmp.connectors.testing.PlatformFake`. A connector that posts signed webhooks runs the
conformance suite against it from its own repository (``examples/mcmp_example_connector``).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcmp.connectors.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_problem

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KINDS = frozenset({"http_500", "http_503", "rate_limit", "token_revoked", "timeout", "commit_then_timeout"})


@dataclass
class Fault:
    kind: str
    methods: frozenset[str] = WRITES
    path: str | None = None
    count: int | None = None
    retry_after: float | None = None
    fired: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        if data.get("kind") not in KINDS:
            raise ValueError(f"kind: must be one of {sorted(KINDS)}, got {data.get('kind')!r}")
        methods = data.get("methods")
        return cls(
            kind=str(data["kind"]),
            methods=frozenset(str(m).upper() for m in methods) if methods else WRITES,
            path=data.get("path"),
            count=data.get("count"),
            retry_after=data.get("retry_after"),
        )

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        return method in self.methods and (not self.path or self.path in path)


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class SignedWebhookFake:
    """Every site shares one secret (``secret``); ``hold_seconds`` is how long a timeout stays silent."""

    def __init__(self, secret: str = "fake-webhook-secret-of-32-bytes!", hold_seconds: float = 1.5) -> None:
        self.secret = secret
        self.hold_seconds = hold_seconds
        self.lock = threading.Lock()
        self.request_log: list[dict[str, Any]] = []
        self.fault_log: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.reset()

    # --- PlatformFake ------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.posts: list[dict[str, Any]] = []
            self.request_log.clear()
            self.fault_log.clear()
            self._ids = itertools.count(1)

    def set_faults(self, config: dict[str, Any]) -> None:
        faults = [Fault.from_dict(rule) for rule in config.get("rules", [])]
        with self.lock:
            self.faults = faults

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"posts": [dict(post) for post in self.posts]}

    @staticmethod
    def serve(fake: SignedWebhookFake) -> Iterator[str]:
        """Serve on a loopback port; yields the base URL, stops when resumed (``platform_fixtures``)."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), fake._handler())
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="signed-webhook-fake", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()

    # --- the receiver --------------------------------------------------------------------------
    def _fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    self.fault_log.append({"kind": fault.kind, "method": method, "path": path})
                    return fault
        return None

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """The receiver's answer to one request (faults aside)."""
        url = urlsplit(target)
        site = url.path.removeprefix("/hooks/")
        if not url.path.startswith("/hooks/") or not site or "/" in site or method not in ("GET", "POST"):
            return Answer(404, {"error": "no such route"}, {})
        key = headers.get(IDEMPOTENCY_HEADER.lower(), "")
        problem = signature_problem(
            self.secret,
            method=method,
            target=target,
            idempotency_key=key,
            timestamp=headers.get(TIMESTAMP_HEADER.lower()),
            body=body,
            signature=headers.get(SIGNATURE_HEADER.lower()),
        )
        if problem:
            return Answer(401, {"error": f"invalid signature: {problem}"}, {})
        if method == "GET":
            wanted = parse_qs(url.query).get("idempotency_key", [""])[0]
            with self.lock:
                found = [p for p in self.posts if p["site"] == site and p["idempotencyKey"] == wanted]
            if not found:
                return Answer(404, {"error": "no post with that idempotency key"}, {})
            return Answer(200, {"id": found[0]["id"], "url": found[0]["url"]}, {})
        try:
            doc = json.loads(body)
        except ValueError:
            return Answer(400, {"error": "body is not JSON"}, {})
        if not key:
            return Answer(400, {"error": f"missing {IDEMPOTENCY_HEADER} header"}, {})
        if not isinstance(doc, dict) or not doc.get("title") or not isinstance(doc.get("body"), str):
            return Answer(422, {"error": "title and body are required"}, {})
        with self.lock:
            post_id = f"{site}-{next(self._ids)}"
            url_of = f"https://{site}.example/posts/{post_id}"
            self.posts.append({"id": post_id, "site": site, "idempotencyKey": key, **doc, "url": url_of})
        return Answer(201, {"id": post_id, "url": url_of}, {})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                method, path = self.command, urlsplit(self.path).path
                fault = fake._fault(method, path)
                kind = fault.kind if fault else None
                if kind == "timeout":
                    return self._hold()
                if kind in ("http_500", "http_503"):
                    answer = Answer(500 if kind == "http_500" else 503, {"error": "unexpected error"}, {})
                elif kind == "rate_limit":
                    wait = fault.retry_after if fault else None
                    answer = Answer(429, {"error": "too many requests"}, {})
                    if wait is not None:
                        answer.headers["Retry-After"] = str(int(wait))
                elif kind == "token_revoked":
                    answer = Answer(401, {"error": "secret revoked"}, {})
                else:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    answer = fake.answer(method, self.path, headers, body)
                with fake.lock:
                    fake.request_log.append({"method": method, "path": path, "status": answer.status})
                if kind == "commit_then_timeout":
                    return self._hold()
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _hold(self) -> None:
                time.sleep(fake.hold_seconds)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler
