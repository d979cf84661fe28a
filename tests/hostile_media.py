"""A real HTTP server on loopback that serves media the way a hostile or broken host would.

Each route is one behaviour (``serve`` a file, ``redirect``, ``endless`` body, a ``Content-Length``
lie over a chunked endless body, ``drip`` one byte a second). The server counts the
connections it accepted and the body bytes it managed to send, so a test can prove that a refused
URL was never connected to and that a capped download stopped reading.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\0" * 2048 + b"\xff\xd9"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)
HTML = b"<!doctype html><html><head><title>Admin</title></head><body>internal dashboard</body></html>"
CHUNK = 64 * 1024


@dataclass
class Route:
    kind: str  # serve | redirect | endless | lie | drip
    ctype: str = "image/jpeg"
    body: bytes = b""
    location: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # sent with a served or redirect answer


@dataclass
class HostileServer:
    """``routes[path] = Route(...)``; ``connections`` and ``sent`` are counted per server."""

    routes: dict[str, Route] = field(default_factory=dict)
    connections: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    sent: int = 0
    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - stdlib hook
                self._answer(with_body=False)

            def do_GET(self) -> None:  # noqa: N802 - stdlib hook
                self._answer(with_body=True)

            def do_POST(self) -> None:  # noqa: N802 - stdlib hook
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(with_body=True)

            def _answer(self, with_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append((self.command, path, dict(self.headers.items())))
                route = server.routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    getattr(self, f"_{route.kind}")(route, with_body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what a capped download does

            def _write(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                server.sent += len(data)

            def _serve(self, route: Route, with_body: bool) -> None:
                self.send_response(route.status)
                self.send_header("Content-Type", route.ctype)
                self.send_header("Content-Length", str(len(route.body)))
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if with_body:
                    self._write(route.body)

            def _redirect(self, route: Route, with_body: bool) -> None:
                self.send_response(route.status if route.status != 200 else 302)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()

            def _endless(self, route: Route, with_body: bool) -> None:
                # No Content-Length: the body ends when the connection does (never).
                self.send_response(200)
                self.send_header("Content-Type", route.ctype)
                self.send_header("Connection", "close")
                self.end_headers()
                if with_body:
                    self._write(JPEG[:-2])
                    while True:
                        self._write(b"\0" * CHUNK)

            def _lie(self, route: Route, with_body: bool) -> None:
                # Declares 1,000 bytes, then sends an endless chunked body (chunked wins, RFC 9112).
                self.send_response(200)
                self.send_header("Content-Type", route.ctype)
                self.send_header("Content-Length", "1000")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if with_body:
                    self._write(f"{len(JPEG) - 2:x}\r\n".encode() + JPEG[:-2] + b"\r\n")
                    while True:
                        self._write(f"{CHUNK:x}\r\n".encode() + b"\0" * CHUNK + b"\r\n")

            def _drip(self, route: Route, with_body: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", route.ctype)
                self.send_header("Content-Length", str(len(JPEG)))
                self.end_headers()
                if with_body:
                    for byte in JPEG:
                        self._write(bytes([byte]))
                        time.sleep(1.0)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                conn = super().get_request()
                server.connections += 1
                return conn

        self.httpd = Server((self.host, 0), Handler)
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.base + path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
