"""Real services for the WordPress connector tests: a real WordPress, an image host, a lossy proxy.

* ``wordpress`` (session): Debian's WordPress on MariaDB, started by ``shared/tools/wordpress-up``
  on a free port. If it cannot start, the test **fails** with the tool's own message.
* ``image_host`` (session): a stdlib HTTP server serving a small PNG (the featured image).
* :class:`LossyProxy`: a TCP proxy that forwards a request to WordPress, lets WordPress answer,
  and then drops the answer for matching requests — the "lost response" of a real network.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mcmp.devstack import free_port
from tests import ROOT

WORDPRESS_UP = Path(os.environ.get("MCMP_WORDPRESS_UP", ROOT.parent / "shared" / "tools" / "wordpress-up"))


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG built by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xd0\x30\x30" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class WordPressSite:
    url: str
    user: str
    app_password: str
    pid: int
    port: int
    data_dir: Path
    startup_seconds: float


def _stop_wordpress(site: WordPressSite) -> None:
    try:
        os.killpg(site.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    # wordpress-up recreates both on its next start; drop them so runs on random ports don't pile up.
    subprocess.run(
        ["mariadb", "-uroot", "-e", f"DROP DATABASE IF EXISTS wp_{site.port}"],
        capture_output=True,
        check=False,
    )
    Path(f"/etc/wordpress/config-mcmp-{site.port}.php").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def wordpress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WordPressSite]:
    """A real WordPress with an application password for ``admin``; stopped at the end."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("wordpress")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(WORDPRESS_UP), str(port), str(data_dir)], capture_output=True, text=True, timeout=900
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"could not run {WORDPRESS_UP} ({type(exc).__name__}: {exc})", pytrace=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        log = data_dir / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(
            f"real WordPress did not start: {WORDPRESS_UP} {port} {data_dir} exited {proc.returncode}\n"
            f"stderr: {proc.stderr.strip()[-2000:]}\nserver.log: {tail}",
            pytrace=False,
        )
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    site = WordPressSite(
        url=info["url"],
        user=info["user"],
        app_password=info["app_password"],
        pid=int(info["pid"]),
        port=port,
        data_dir=data_dir,
        startup_seconds=time.monotonic() - started,
    )
    print(f"\nreal WordPress at {site.url} started in {site.startup_seconds:.1f}s")
    yield site
    _stop_wordpress(site)


@dataclass(frozen=True)
class ImageHost:
    url: str
    png: bytes

    def image(self, name: str = "featured.png") -> str:
        return f"{self.url}/img/{name}"


@pytest.fixture(scope="session")
def image_host() -> Iterator[ImageHost]:
    """Serves ``/img/*.png`` (a PNG), ``/img/*.txt`` (text), ``/fail/*`` (500); else 404."""
    png = tiny_png()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self.path.startswith("/img/") and self.path.endswith(".png"):
                status, body, ctype = 200, png, "image/png"
            elif self.path.startswith("/img/") and self.path.endswith(".txt"):
                status, body, ctype = 200, b"not an image", "text/plain"
            elif self.path.startswith("/fail/"):
                status, body, ctype = 500, b"boom", "text/plain"
            else:
                status, body, ctype = 404, b"no such file", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="image-host", daemon=True)
    thread.start()
    yield ImageHost(f"http://127.0.0.1:{server.server_address[1]}", png)
    server.shutdown()
    server.server_close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    lines = [
        line for line in head.split(b"\r\n") if not line.lower().startswith((b"connection:", b"keep-alive:"))
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


class LossyProxy:
    """Forwards every request to ``upstream`` (one per connection); for requests that ``drop``
    matches it lets the upstream answer in full and then closes the client connection without
    a byte — the request took effect, the caller never learns it."""

    def __init__(self, upstream: str, drop: Callable[[str, str], bool]) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port or 80))
        self.drop = drop
        self.dropped: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="lossy-proxy", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if not request:
                return
            method, path = request.split(b" ", 2)[:2]
            with socket.create_connection(self.upstream, timeout=60) as up:
                up.sendall(request)
                response = b""
                while chunk := up.recv(65536):
                    response += chunk
            if self.drop(method.decode(), path.decode()):
                self.dropped.append(f"{method.decode()} {path.decode()}")
                return  # closing without an answer: the client sees the connection end
            conn.sendall(response)

    def close(self) -> None:
        self.listener.close()
