"""Shared core of the platform simulators: a real threaded HTTP server plus fault injection.

A platform simulator subclasses :class:`Simulator`, declares routes with :func:`route` and
implements the platform's documented paths, validation, bodies and error formats. The core adds:

* latency per request (``latency_ms``), to make benchmarks realistic;
* fault rules, set over HTTP at ``POST /_sim/faults`` (JSON) or in code with ``set_faults``::

      {"latency_ms": 50, "seed": 7, "rules": [
         {"kind": "http_500", "rate": 0.1},
         {"kind": "rate_limit", "rate": 0.05, "retry_after": 2},
         {"kind": "commit_then_timeout", "rate": 0.05},
         {"kind": "timeout", "count": 1},
         {"kind": "reset", "rate": 0.01},
         {"kind": "token_revoked", "count": 3, "path": "/oauth"}]}

  A rule applies to write requests (POST/PUT/PATCH/DELETE) unless it names ``methods``; ``path``
  is a substring filter, ``body`` one on the request body (e.g. ``"upload_phase=finish"``), ``query``
  one on the query parameter names (e.g. ``"__paging_token"``: only later pages); ``count`` limits how many times it fires; ``until`` (epoch seconds)
  ends it. ``commit_then_timeout`` runs the handler (the post is stored) and then holds the
  connection open without answering; ``timeout`` holds without committing; ``reset`` drops the
  TCP connection with RST before handling.
* ``GET /_sim/connections``: TCP connections accepted since the server started (what a client's
  connection reuse looks like from the platform's side; never reset);
* ``GET /_sim/state`` (simulator-specific dump), ``GET /_sim/requests`` (request log),
  ``POST /_sim/reset`` (forget everything), ``DELETE /_sim/faults``.

A route declared with ``stream=True`` (media uploads) is handed the request body unread as
``req.body_stream`` (:class:`BodyStream`, ``Content-Length`` or chunked framing): the handler
counts and hashes it chunk by chunk, so a simulator never holds an uploaded file in memory.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcmp.simulators.engagement import effective_age

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FAULT_KINDS = frozenset(
    {"http_500", "http_503", "rate_limit", "commit_then_timeout", "timeout", "reset", "token_revoked"}
)


class BodyStream:
    """A request body read on demand (``Content-Length`` or ``Transfer-Encoding: chunked``)."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool) -> None:
        self._rfile = rfile
        self._left = length or 0
        self._chunked = chunked
        self._chunk_left = 0
        self._ended = not chunked and not length
        self.read_bytes = 0

    def read(self, size: int = 1024 * 1024) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the body."""
        if self._ended:
            return b""
        if self._chunked:
            if self._chunk_left == 0:
                line = self._rfile.readline(65537).strip()
                self._chunk_left = int(line.split(b";", 1)[0] or b"0", 16)
                if self._chunk_left == 0:
                    while self._rfile.readline(65537).strip():  # trailers
                        pass
                    self._ended = True
                    return b""
            data: bytes = self._rfile.read(min(size, self._chunk_left))
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self._rfile.readline(65537)  # CRLF after the chunk
        else:
            data = self._rfile.read(min(size, self._left))
            self._left -= len(data)
            if self._left == 0 or not data:
                self._ended = True
        self.read_bytes += len(data)
        if not data:
            self._ended = True
        return data

    def __iter__(self) -> Any:
        while True:
            data = self.read()
            if not data:
                return
            yield data

    @property
    def finished(self) -> bool:
        return self._ended

    def drain(self) -> None:
        for _ in self:
            pass


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    body_stream: BodyStream | None = None
    target: str = ""  # path and query exactly as the request line carried them (signatures cover it)

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """Form-encoded, multipart or JSON body merged over the query string, as Graph accepts all."""
        data = dict(self.query)
        ctype = self.headers.get("content-type", "")
        if self.body and "json" in ctype:
            loaded = self.json()
            if isinstance(loaded, dict):
                data.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items()})
        elif self.body and "multipart" in ctype:
            fields, _ = self.multipart()
            data.update(fields)
        elif self.body:
            data.update({k: v[-1] for k, v in parse_qs(self.body.decode(errors="replace")).items()})
        return data

    def multipart(self) -> tuple[dict[str, str], dict[str, bytes]]:
        """A ``multipart/form-data`` body as (text fields, file parts by field name).

        Split on the boundary directly (a video chunk is megabytes: a MIME parser copies it
        line by line).
        """
        ctype = self.headers.get("content-type", "")
        found = re.search(r'boundary="?([^";]+)"?', ctype)
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        if not found:
            return fields, files
        delimiter = b"--" + found.group(1).encode()
        for part in self.body.split(delimiter)[1:]:
            if part.startswith(b"--"):
                break
            head, _, value = part.partition(b"\r\n\r\n")
            value = value[:-2] if value.endswith(b"\r\n") else value
            disposition = next(
                (
                    line
                    for line in head.decode(errors="replace").split("\r\n")
                    if line.lower().startswith("content-disposition")
                ),
                "",
            )
            name = re.search(r'\bname="([^"]*)"', disposition)
            if not name:
                continue
            if re.search(r'\bfilename="', disposition):
                files[name.group(1)] = value
            else:
                fields[name.group(1)] = value.decode(errors="replace")
        return fields, files

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class SimResponse:
    status: int = 200
    body: Any = None  # dict/list → JSON; bytes/str → raw
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", self.headers.get("Content-Type", "application/json")
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "application/octet-stream")
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("Content-Type", "text/plain; charset=utf-8")
        return json.dumps(self.body).encode(), "application/json; charset=UTF-8"


Handler = Callable[[Any, SimRequest], SimResponse]  # Any: a subclass method takes its own class


def route(method: str, pattern: str, *, stream: bool = False) -> Callable[[Handler], Handler]:
    """Declare a handler for ``method`` and a path ``pattern`` with ``{name}`` placeholders.

    ``stream=True``: the body is not read before the handler runs (``req.body_stream``).
    """

    def decorate(fn: Handler) -> Handler:
        routes = fn.__dict__.setdefault("_sim_routes", [])
        routes.append((method.upper(), pattern))
        if stream:
            fn.__dict__["_sim_stream"] = True
        return fn

    return decorate


def _compile(pattern: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/"))
    return re.compile(f"^{regex}/?$")


@dataclass
class FaultRule:
    kind: str
    rate: float = 1.0
    count: int | None = None
    path: str | None = None
    methods: frozenset[str] = WRITE_METHODS
    retry_after: float | None = None
    until: float | None = None
    body: str | None = None
    query: str | None = None
    fired: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind: must be one of {sorted(FAULT_KINDS)}, got {kind!r}")
        methods = data.get("methods")
        return cls(
            kind=kind,
            rate=float(data.get("rate", 1.0)),
            count=data.get("count"),
            path=data.get("path"),
            methods=frozenset(m.upper() for m in methods) if methods else WRITE_METHODS,
            retry_after=data.get("retry_after"),
            until=data.get("until"),
            body=data.get("body"),
            query=data.get("query"),
        )

    def matches(self, req: SimRequest, rng: random.Random) -> bool:
        if self.until is not None and time.time() > self.until:
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        if req.method not in self.methods or (self.path and self.path not in req.path):
            return False
        if self.body and self.body not in req.body.decode(errors="replace"):
            return False
        if self.query and not any(self.query in name for name in req.query):
            return False
        return rng.random() < self.rate


class Simulator:
    """Base class of a platform twin. Subclasses add routes and override the error hooks."""

    platform = "generic"
    hold_seconds = 30.0  # how long a "timeout" fault keeps the connection silent

    def __init__(
        self, latency_ms: float = 0.0, seed: int | None = None, *, metrics_per_second: float = 1.0
    ) -> None:
        self.lock = threading.RLock()
        self.latency_ms = latency_ms
        self.metrics_per_second = metrics_per_second
        self.rng = random.Random(seed)
        self.rules: list[FaultRule] = []
        self.request_log: list[dict[str, Any]] = []
        self.fault_log: list[dict[str, Any]] = []
        self.connections_accepted = 0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        for klass in reversed(type(self).__mro__):
            for value in vars(klass).values():
                for method, pattern in getattr(value, "_sim_routes", []):
                    self._routes.append((method, _compile(pattern), value))
        self.reset()

    # --- hooks for subclasses -------------------------------------------------------------
    def reset(self) -> None:
        """Forget stored platform state (subclasses extend)."""
        with self.lock:
            self.request_log.clear()
            self.fault_log.clear()

    def state(self) -> dict[str, Any]:
        """Simulator-specific dump for tests (subclasses extend)."""
        return {}

    def age_of(self, key: str, created: float) -> float:
        """Engagement age of a post created at ``created`` (epoch seconds): metrics grow with it,
        ``metrics_per_second`` times faster than real time."""
        return effective_age(key, (time.time() - created) * self.metrics_per_second)

    def error_response(self, status: int, message: str) -> SimResponse:
        """The platform's own error body for a generic failure of ``status``."""
        return SimResponse(status, {"error": {"code": status, "message": message}})

    def rate_limit_response(self, retry_after: float | None) -> SimResponse:
        resp = self.error_response(429, "Too many requests")
        if retry_after is not None:
            resp.headers["Retry-After"] = str(int(retry_after) if retry_after >= 1 else retry_after)
        return resp

    def token_revoked_response(self) -> SimResponse:
        return self.error_response(401, "Invalid access token")

    # --- faults -----------------------------------------------------------------------------
    def set_faults(self, config: dict[str, Any]) -> None:
        rules = [FaultRule.from_dict(r) for r in config.get("rules", [])]
        with self.lock:
            self.rules = rules
            if "latency_ms" in config:
                self.latency_ms = float(config["latency_ms"])
            if "seed" in config:
                self.rng = random.Random(config["seed"])

    def _pick_fault(self, req: SimRequest) -> FaultRule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(req, self.rng):
                    rule.fired += 1
                    self.fault_log.append({"kind": rule.kind, "method": req.method, "path": req.path})
                    return rule
        return None

    # --- dispatch -----------------------------------------------------------------------------
    def streams_body(self, method: str, path: str) -> bool:
        """Does the route for ``method path`` read its body itself (``route(..., stream=True)``)?"""
        for route_method, regex, handler in self._routes:
            if route_method == method and regex.match(path):
                return bool(getattr(handler, "_sim_stream", False))
        return False

    def dispatch(self, req: SimRequest) -> SimResponse:
        for method, regex, handler in self._routes:
            if method != req.method:
                continue
            match = regex.match(req.path)
            if match:
                req.params = match.groupdict()
                return handler(self, req)
        return self.error_response(404, f"Unknown path components: {req.path}")

    def control(self, req: SimRequest) -> SimResponse:
        if req.path == "/_sim/faults" and req.method == "POST":
            try:
                self.set_faults(req.json() or {})
            except (ValueError, TypeError) as exc:
                return SimResponse(400, {"error": str(exc)})
            return SimResponse(200, {"ok": True})
        if req.path == "/_sim/faults" and req.method == "DELETE":
            self.set_faults({"rules": []})
            return SimResponse(200, {"ok": True})
        if req.path == "/_sim/faults" and req.method == "GET":
            with self.lock:
                return SimResponse(200, {"latency_ms": self.latency_ms, "fired": list(self.fault_log)})
        if req.path == "/_sim/connections":
            with self.lock:
                return SimResponse(200, {"accepted": self.connections_accepted})
        if req.path == "/_sim/state":
            with self.lock:
                return SimResponse(200, self.state())
        if req.path == "/_sim/requests":
            with self.lock:
                return SimResponse(200, list(self.request_log))
        if req.path == "/_sim/reset" and req.method == "POST":
            self.reset()
            self.set_faults({"rules": []})
            return SimResponse(200, {"ok": True})
        return self.dispatch(req)  # simulator-specific control routes (e.g. /_sim/tokens)


def _make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle on, the body waits for the
        # client's delayed ACK (~40 ms per response on Linux), which would distort every timing.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s %s", sim.platform, format % args)

        def setup(self) -> None:  # once per accepted TCP connection
            with sim.lock:
                sim.connections_accepted += 1
            super().setup()

        def _read(self) -> SimRequest:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            if sim.streams_body(self.command, parts.path):
                stream = BodyStream(self.rfile, length, chunked)
                return SimRequest(
                    self.command, parts.path, query, headers, b"", body_stream=stream, target=self.path
                )
            if chunked:
                body = b"".join(BodyStream(self.rfile, None, True))
            else:
                body = self.rfile.read(length) if length else b""
            return SimRequest(self.command, parts.path, query, headers, body, target=self.path)

        def _write(self, resp: SimResponse) -> None:
            payload, ctype = resp.encode()
            self.send_response(resp.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in resp.headers.items():
                if key.lower() != "content-type":
                    self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def _hold_and_drop(self) -> None:
            time.sleep(sim.hold_seconds)
            self.close_connection = True

        def _reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

        def _handle(self) -> None:
            req = self._read()
            if req.path.startswith("/_sim/"):
                self._write(sim.control(req))
                return
            if sim.latency_ms:
                time.sleep(sim.latency_ms / 1000.0)
            fault = sim._pick_fault(req)
            kind = fault.kind if fault else None
            if kind == "reset":
                self._reset()
                return
            if kind == "timeout":
                self._hold_and_drop()
                return
            if kind in ("http_500", "http_503"):
                resp = sim.error_response(
                    500 if kind == "http_500" else 503, "An unexpected error has occurred"
                )
            elif kind == "rate_limit":
                resp = sim.rate_limit_response(fault.retry_after if fault else None)
            elif kind == "token_revoked":
                resp = sim.token_revoked_response()
            else:
                try:
                    resp = sim.dispatch(req)
                except Exception:  # a simulator bug must show as a 500, not a hung client
                    log.exception("simulator %s handler failed", sim.platform)
                    resp = sim.error_response(500, "simulator handler error")
            with sim.lock:
                sim.request_log.append(
                    {
                        "method": req.method,
                        "path": req.path,
                        "status": resp.status,
                        "fault": kind,
                        "t": time.time(),
                    }
                )
            if kind == "commit_then_timeout":
                self._hold_and_drop()
                return
            if req.body_stream is not None and not req.body_stream.finished:
                self.close_connection = True  # an unread upload: do not parse it as the next request
            self._write(resp)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    return RequestHandler


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def start_in_thread(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> tuple[SimulatorServer, str]:
    """Serve ``sim`` on a background thread; returns the server and its base URL."""
    server = SimulatorServer((host, port), _make_handler(sim))
    thread = threading.Thread(target=server.serve_forever, name=f"sim-{sim.platform}", daemon=True)
    thread.start()
    return server, f"http://{host}:{server.server_address[1]}"


def serve_forever(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve ``sim`` in the foreground (used by ``python -m simulators``); prints the URL first."""
    server = SimulatorServer((host, port), _make_handler(sim))
    print(
        json.dumps({"platform": sim.platform, "url": f"http://{host}:{server.server_address[1]}"}), flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
