"""The worker's Prometheus endpoint (``mcmp worker --metrics-port``): loopback unless told, token if set.

prometheus_client's own ``start_http_server`` listens on every interface and asks for nothing;
this is the same WSGI app behind the check of :func:`mcmp.api.metrics.authorized`, on the address
given (``127.0.0.1`` by default: a scraper on another host needs ``--metrics-address``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.registry import CollectorRegistry

from mcmp.api.metrics import authorized

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def guarded(app: Wsgi) -> Wsgi:
    """``app`` answering 401 to a request without the bearer token (when one is configured)."""

    def check(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            )
            return [b"this /metrics needs Authorization: Bearer <MCMP_METRICS_TOKEN>\n"]
        return app(environ, start_response)

    return check


def serve(registry: CollectorRegistry, address: str, port: int) -> WSGIServer:
    """Serve ``registry`` on ``address:port`` from a daemon thread; the server (``server_port``)."""
    host = address.strip("[]")

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    httpd = make_server(host, port, guarded(make_wsgi_app(registry)), Server, handler_class=_SilentHandler)
    threading.Thread(target=httpd.serve_forever, name="mcmp-metrics", daemon=True).start()
    return httpd
