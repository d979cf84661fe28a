"""The HTTP seam every platform connector sends through: proxies and connect retries."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mcmp.connectors import http


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def fresh_environment() -> Iterator[None]:
    http._environ_proxies.cache_clear()
    http._ca_bundle.cache_clear()
    yield
    http._environ_proxies.cache_clear()
    http._ca_bundle.cache_clear()


def test_the_environments_proxy_is_used_per_host_and_no_proxy_hosts_go_direct(monkeypatch, fresh_environment):
    proxy, direct = _serve(), _serve()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        session = http.BaseUrlSession()
        assert http.send(session, "GET", "http://platform.invalid/v1/me", timeout=5).status_code == 200
        assert http.send(session, "GET", f"http://127.0.0.1:{direct.server_port}/v1/me", timeout=5).ok
        assert proxy.seen == ["http://platform.invalid/v1/me"]  # absolute URI: sent to the proxy
        assert direct.seen == ["/v1/me"]
    finally:
        proxy.shutdown()
        direct.shutdown()


def test_a_refused_connection_is_tried_again_and_reaches_the_platform_once_it_listens(fresh_environment):
    with socket.socket() as probe:  # a port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers: list[ThreadingHTTPServer] = []
    threading.Timer(0.1, lambda: servers.append(_serve(port))).start()
    try:
        started = time.monotonic()
        response = http.send(http.BaseUrlSession(), "GET", f"http://127.0.0.1:{port}/v1/me", timeout=5)
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.2  # after the policy's first wait, not at once
    finally:
        for server in servers:
            server.shutdown()


def test_a_host_that_keeps_refusing_is_a_retryable_error_never_ambiguous(fresh_environment):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(http.RetryableError, match="network error before the platform answered"):
        http.send(
            http.BaseUrlSession(), "POST", f"http://127.0.0.1:{port}/v1/posts", timeout=2, connect_retries=2
        )
