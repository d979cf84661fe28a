"""Kept-alive connections of the guarded fetcher, counted at the server side (real servers on loopback).

Each rule of ``mcmp.connectors.tenant_fetch.pool`` is shown by what a tenant's site would see:
how many TCP connections it accepted, how many are still open, which TLS name each one asked
for. Names resolve through the resolver seam; every address is a loopback one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcmp.connectors.errors import RetryableError
from mcmp.connectors.tenant_fetch import FetchRefused, Rule, TenantFetcher
from mcmp.connectors.tenant_fetch.pool import ConnectionPools

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Site:
    """A keep-alive HTTP/1.1 server that counts what a site's operator would see."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.accepted = 0
        self.open = 0
        self.requests = 0
        self.names: list[str | None] = []  # TLS server names asked for, one per handshake
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def setup(self) -> None:
                with site._lock:
                    site.open += 1
                super().setup()

            def finish(self) -> None:
                super().finish()
                with site._lock:
                    site.open -= 1

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with site._lock:
                    site.requests += 1
                if self.path.startswith("/slow"):
                    site._stopping.wait(float(self.path.rsplit("/", 1)[-1]))
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, address = super().get_request()
                with site._lock:
                    site.accepted += 1  # counted at accept, before any TLS handshake
                if tls is None:
                    return sock, address
                return tls.wrap_socket(sock, server_side=True), address

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that gave up (a fetch's timeout) makes the late answer fail. Printing
                # that traceback from this thread would run ``ast.parse`` (3.11's carets) beside
                # the test process's other threads, which CPython 3.11.7 cannot do safely
                # (gh-106905: "AST constructor recursion depth mismatch" in the other parse).
                # What a test checks is counted above; a client's hang-up is not one of them.
                return

        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: site.names.append(name)  # type: ignore[assignment,misc,return-value]
        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def settle(self, open_at_most: int, seconds: float = 3.0) -> int:
        """Open connections once the client's closes have arrived (at most ``seconds``)."""
        deadline = time.monotonic() + seconds
        while self.open > open_at_most and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.open

    def stop(self) -> None:
        self._stopping.set()  # slow answers end now, not after the test
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sites() -> Iterator[Callable[..., Site]]:
    started: list[Site] = []

    def start(**kwargs: Any) -> Site:
        site = Site(**kwargs)
        started.append(site)
        return site

    yield start
    for site in started:
        site.stop()


@pytest.fixture
def pools() -> Iterator[ConnectionPools]:
    own = ConnectionPools(sites=16, idle_per_site=8, idle_seconds=30.0)
    yield own
    own.close()


def table_resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[Address]]:
    """Names to addresses without DNS; ``table`` may change between fetches (a DNS change)."""
    return lambda host, port: [ipaddress.ip_address(a) for a in table[host]]


def post(fetcher: TenantFetcher, url: str) -> int:
    return fetcher.request("POST", url, what="account.metadata.webhookUrl", json={"n": 1}).status_code


# --- keep-alive -----------------------------------------------------------------------------------
def test_a_site_sees_one_connection_for_many_webhooks(sites, pools: ConnectionPools) -> None:
    site = sites()
    fetcher = TenantFetcher(["127.0.0.0/8"], pools=pools)
    for _ in range(50):
        assert post(fetcher, f"http://127.0.0.1:{site.port}/hook") == 200
    assert fetcher.request("GET", f"http://127.0.0.1:{site.port}/x", what="w").status_code == 200
    assert (site.requests, site.accepted) == (51, 1)


def test_fetchers_built_apart_share_the_process_pool(sites) -> None:
    """Connectors build their own fetcher from settings; the connections are still the process'."""
    site = sites()
    for _ in range(5):
        assert post(TenantFetcher(["127.0.0.0/8"]), f"http://127.0.0.1:{site.port}/hook") == 200
    assert site.accepted == 1


def test_threads_share_the_pool_without_opening_more_than_they_use(sites, pools: ConnectionPools) -> None:
    site = sites()
    fetcher = TenantFetcher(["127.0.0.0/8"], pools=pools)
    url = f"http://127.0.0.1:{site.port}/slow/0.01"
    with ThreadPoolExecutor(8) as threads:
        answers = list(threads.map(lambda _: post(fetcher, url), range(400)))
    assert answers == [200] * 400
    assert site.requests == 400 and site.accepted <= 8


# --- the key: checked address, host, TLS name -------------------------------------------------------
def test_a_dns_change_never_reuses_the_old_connection(sites, pools: ConnectionPools) -> None:
    first = sites(host="127.0.0.1")
    second = sites(host="127.0.0.2", port=first.port)
    table = {"hooks.test": ["127.0.0.1"]}
    fetcher = TenantFetcher(["127.0.0.0/8"], resolver=table_resolver(table), pools=pools)
    url = f"http://hooks.test:{first.port}/hook"
    post(fetcher, url)
    post(fetcher, url)
    table["hooks.test"] = ["127.0.0.2"]
    post(fetcher, url)
    assert (first.requests, second.requests, second.accepted) == (2, 1, 1)
    # The host's old pool was retired: its connection is closed, not kept for a later answer.
    assert first.settle(open_at_most=0) == 0
    table["hooks.test"] = ["127.0.0.1"]
    post(fetcher, url)
    assert (first.requests, first.accepted) == (3, 2)


def test_an_address_now_refused_is_refused_before_any_kept_connection(sites, pools: ConnectionPools) -> None:
    site = sites()
    table = {"hooks.test": ["127.0.0.1"]}
    url = f"http://hooks.test:{site.port}/hook"
    open_fetcher = TenantFetcher(["127.0.0.0/8"], resolver=table_resolver(table), pools=pools)
    post(open_fetcher, url)
    # Same process pool, a fetcher whose settings no longer admit loopback: refused, nothing sent.
    strict = TenantFetcher([], resolver=table_resolver(table), pools=pools)
    with pytest.raises(FetchRefused) as err:
        post(strict, url)
    assert err.value.rule is Rule.LOOPBACK
    # The name now resolves to a private address: refused, though a connection to it is kept.
    table["hooks.test"] = ["127.0.0.1", "10.0.0.5"]
    with pytest.raises(FetchRefused) as err:
        post(open_fetcher, url)
    assert err.value.rule is Rule.PRIVATE
    assert (site.requests, site.accepted) == (1, 1)
    assert site.settle(open_at_most=0) == 0  # the kept connection was closed with the refusal


def test_tls_connections_are_kept_per_server_name(sites, pools: ConnectionPools, tmp_path: Path) -> None:
    server_ctx, client_ctx = certificate(tmp_path, ["media.test", "other.test"])
    site = sites(tls=server_ctx)
    table = {"media.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    fetcher = TenantFetcher(
        ["127.0.0.0/8"], resolver=table_resolver(table), ssl_context=client_ctx, pools=pools
    )
    for _ in range(3):
        assert post(fetcher, f"https://media.test:{site.port}/hook") == 200
    assert (site.accepted, site.names) == (1, ["media.test"])  # one handshake for three webhooks
    # Same address and port, another name: never the connection verified for media.test.
    assert post(fetcher, f"https://other.test:{site.port}/hook") == 200
    assert (site.accepted, site.names) == (2, ["media.test", "other.test"])
    # A context trusting another CA never gets the connection media.test passed with: it makes
    # its own handshake, which fails (the kept connection would have answered 200).
    _, other_ctx = certificate(tmp_path, ["media.test"])
    picky = TenantFetcher(["127.0.0.0/8"], resolver=table_resolver(table), ssl_context=other_ctx, pools=pools)
    with pytest.raises(RetryableError, match="TLS certificate not valid"):
        post(picky, f"https://media.test:{site.port}/hook")
    assert site.accepted >= 3 and site.requests == 4


# --- bounds ---------------------------------------------------------------------------------------
def test_kept_connections_are_bounded_per_site(sites) -> None:
    site = sites()
    pools = ConnectionPools(sites=4, idle_per_site=2, idle_seconds=30.0)
    fetcher = TenantFetcher(["127.0.0.0/8"], pools=pools)
    url = f"http://127.0.0.1:{site.port}/slow/1.0"
    with ThreadPoolExecutor(6) as threads:
        assert list(threads.map(lambda _: post(fetcher, url), range(6))) == [200] * 6
    assert site.accepted == 6  # six at once: the pool never queues the worker's threads
    assert site.settle(open_at_most=2) <= 2  # but keeps only two
    pools.close()


def test_idle_connections_expire_and_unused_sites_are_closed(sites) -> None:
    quiet, busy = sites(), sites()
    pools = ConnectionPools(sites=4, idle_per_site=4, idle_seconds=0.3)
    fetcher = TenantFetcher(["127.0.0.0/8"], pools=pools)
    post(fetcher, f"http://127.0.0.1:{quiet.port}/hook")
    post(fetcher, f"http://127.0.0.1:{busy.port}/hook")
    time.sleep(0.5)
    post(fetcher, f"http://127.0.0.1:{busy.port}/hook")
    assert busy.accepted == 2  # the idle one had expired: a fresh connection, not a stale one
    assert quiet.settle(open_at_most=0) == 0  # nobody used it: closed by the sweep, not left open
    pools.close()


def test_the_least_recently_used_site_is_closed_past_the_site_limit(sites) -> None:
    a, b, c = sites(), sites(), sites()
    pools = ConnectionPools(sites=2, idle_per_site=4, idle_seconds=30.0)
    fetcher = TenantFetcher(["127.0.0.0/8"], pools=pools)
    for site in (a, b, c):
        post(fetcher, f"http://127.0.0.1:{site.port}/hook")
    assert a.settle(open_at_most=0) == 0
    assert (b.open, c.open) == (1, 1)
    assert pools.stats().sites == 2
    pools.close()


def test_a_kept_connection_obeys_the_deadline_of_the_fetch_using_it(sites, pools: ConnectionPools) -> None:
    site = sites()
    fetcher = TenantFetcher(["127.0.0.0/8"], pools=pools, total_timeout=60.0)
    post(fetcher, f"http://127.0.0.1:{site.port}/hook")  # opened under a 60 s deadline
    started = time.monotonic()
    with pytest.raises(RetryableError, match="did not answer"):
        fetcher.request("GET", f"http://127.0.0.1:{site.port}/slow/3", what="w", total_timeout=0.5)
    assert time.monotonic() - started < 2.0  # the read timeout is 15 s: the 0.5 s deadline cut it
    assert site.accepted == 1  # it was the kept connection, cut at the new fetch's deadline


def certificate(tmp_path: Path, names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA and a leaf for ``names``: (server context, client context trusting only that CA)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcmp pool test CA")])

    def build(subject: x509.Name, key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    ca = build(ca_name, ca_key).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    ca_cert = ca.sign(ca_key, hashes.SHA256())
    leaf = (
        build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), leaf_key)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{names[0]}-{id(leaf)}.pem", tmp_path / f"{names[0]}-{id(leaf)}.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode())
    return server, client
