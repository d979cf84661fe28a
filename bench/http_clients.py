"""Client CPU per HTTP request: the workers' two HTTP paths beside the plain clients they build on.

    .venv/bin/python -m bench.http_clients                  # 3,000 POSTs per client
    .venv/bin/python -m bench.http_clients --requests 500

Every delivery makes at least one platform call, so the HTTP client's CPU per request is part of
the workers' CPU per delivery that no scheduling change removes. This measures it alone: one
process, one thread, one kept-alive connection to a loopback server in another process that
answers every POST at once, in one write (a separate header and body write would add the
40 ms of a delayed ACK to each call and nothing to its CPU). Measured with ``getrusage`` over
``--requests`` calls after a warm-up, for:

* ``TenantFetcher.request`` — the website connector's webhooks and WordPress calls (the guarded
  fetcher: address checks, deadlines, pooled connections; httpx over httpcore);
* ``send(BaseUrlSession)`` — Graph, LinkedIn and Google calls (requests on the shared adapter,
  the environment read once per host);
* ``httpx.Client``, ``requests.Session`` (defaults), ``urllib3.PoolManager`` and
  ``http.client`` with the same body, for reference.

The body is the size of a webhook's JSON (or a Graph form post); the answer a small JSON object.
Client CPU only: the server runs in its own process and is not counted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import httpx
import requests
import urllib3

from bench.common import git_rev, load_avg, machine
from mcmp.connectors.http import BaseUrlSession, send
from mcmp.connectors.tenant_fetch import TenantFetcher
from mcmp.connectors.tenant_fetch.pool import ConnectionPools

# One write per answer: headers and body together (see the module docstring).
SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = b'{"id": "1234567890_987654321", "ok": true}'

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(ANSWER) + ANSWER
        )

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

PAYLOAD: dict[str, Any] = {
    "event": "post.publish",
    "postId": "6571f0c2a8b4e3d2c1b0a999",
    "title": "Spring menu is here " * 2,
    "body": "Our new seasonal dishes, made with local produce. " * 8,
    "assets": ["https://cdn.example.com/a/1.jpg", "https://cdn.example.com/a/2.jpg"],
}
FORM = {"message": PAYLOAD["body"], "access_token": "EAAB" + "x" * 180}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(call: Callable[[], Any], requests_: int, warm: int) -> tuple[float, float]:
    """(client CPU ms, wall ms) per request over ``requests_`` calls after ``warm`` unmeasured ones."""
    for _ in range(warm):
        call()
    cpu, wall = _cpu(), time.perf_counter()
    for _ in range(requests_):
        call()
    return 1000 * (_cpu() - cpu) / requests_, 1000 * (time.perf_counter() - wall) / requests_


def clients(port: int) -> list[tuple[str, Callable[[], Any]]]:
    """Each client's call: a POST of the same body, its JSON answer decoded."""
    url = f"http://127.0.0.1:{port}/hook"
    fetcher = TenantFetcher(["127.0.0.0/8"], pools=ConnectionPools(sites=4, idle_per_site=2, idle_seconds=60))
    platform = BaseUrlSession()
    plain_httpx = httpx.Client()
    plain_requests = requests.Session()
    pool = urllib3.PoolManager()
    connection = http.client.HTTPConnection("127.0.0.1", port)

    def stdlib() -> Any:
        body = json.dumps(PAYLOAD).encode()
        connection.request("POST", "/hook", body=body, headers={"Content-Type": "application/json"})
        return json.loads(connection.getresponse().read())

    def via_urllib3() -> Any:
        body = json.dumps(PAYLOAD).encode()
        return json.loads(
            pool.request("POST", url, body=body, headers={"Content-Type": "application/json"}).data
        )

    return [
        (
            "ours: TenantFetcher (website)",
            lambda: fetcher.request("POST", url, what="bench", json=PAYLOAD).json(),
        ),
        (
            "ours: send(BaseUrlSession) (platforms)",
            lambda: send(platform, "POST", url, timeout=10, data=FORM).json(),
        ),
        ("httpx.Client", lambda: plain_httpx.post(url, json=PAYLOAD).json()),
        ("requests.Session (defaults)", lambda: plain_requests.post(url, json=PAYLOAD).json()),
        ("urllib3.PoolManager", via_urllib3),
        ("http.client", stdlib),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="measured POSTs per client")
    parser.add_argument("--warm", type=int, default=300, help="unmeasured POSTs per client first")
    parser.add_argument(
        "--rounds", type=int, default=2, help="every client measured this many times, in turn"
    )
    args = parser.parse_args(argv)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        print(
            f"# bench/http_clients.py @ {git_rev()} — client CPU per POST (getrusage of this process), "
            f"one thread, one kept-alive loopback connection; "
            f"httpx {version('httpx')}, requests {version('requests')}, urllib3 {version('urllib3')} | "
            f"{machine()} | "
            f"{load_avg()} (1/5 min) at start"
        )
        print(f"# {args.requests} POSTs per client and round after {args.warm} unmeasured; rounds in turn")
        print(f"{'client':42s} {'CPU ms/request':>16s} {'wall ms':>9s}")
        figures: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for name, call in clients(port):
                figures.setdefault(name, []).append(measure(call, args.requests, args.warm))
        for name, rows in figures.items():
            cpu = " / ".join(f"{c:.3f}" for c, _ in rows)
            wall = min(w for _, w in rows)
            print(f"{name:42s} {cpu:>16s} {wall:9.3f}")
        print(f"# {load_avg()} at end; CPU per round in turn (spread shows the machine's noise)")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
