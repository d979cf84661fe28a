"""One pool of kept-alive connections per process for tenant URLs, keyed by what the checks passed.

Opening a connection per webhook costs the client's site a TCP (and in production a TLS)
handshake per delivery. Connections are therefore kept, but only where the checks allow:

* a connection is filed under its **key**: scheme, host, port, TLS server name, TLS context and
  the *set of addresses the check passed*; its backend can only connect to those addresses;
* every request resolves and checks the host again **before** a pool is chosen (the check sits
  in front of the pool, never inside a kept connection): an address that would now be refused
  raises before any pooled connection is touched, and a DNS answer that changed is another key,
  so an old connection is never reused for it; the host's previous pools are retired;
* kept connections are bounded: at most ``idle_per_site`` per key, idle at most
  ``idle_seconds`` (shorter than common servers' keep-alive, so a site rarely closes one just as
  a webhook is written on it), at most ``sites`` keys (least recently used retired first);
  a retired pool is closed once its last request finished;
* each read and write of a kept connection is bounded by the deadline of the fetch that uses it
  *now* (a context variable set per request), not of the fetch that opened it. A fetch hands its
  deadline to the transport on each request (the :data:`DEADLINE` extension, carried along its
  redirects), so one transport serves every fetch of a fetcher.

A TLS connection kept alive is a TLS session reused: no new handshake while it lives. The pool is
thread-safe (the worker's publish threads share it) and forgotten in a forked child.
"""

from __future__ import annotations

import contextvars
import math
import os
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from mcmp.config.networks import IPAddress
from mcmp.connectors.tenant_fetch.transport import AddressRefused, Deadline

Check = Callable[[str, int, float], list[IPAddress]]  # host, port, seconds the lookup may take

_NO_DEADLINE = Deadline(math.inf)
# The request extension carrying the deadline of the fetch a request belongs to (every request
# through a GuardedTransport has one; httpx copies extensions onto each redirect's request).
DEADLINE = "mcmp.tenant_fetch.deadline"
_current: contextvars.ContextVar[Deadline] = contextvars.ContextVar("tenant_fetch_deadline")


def current_deadline() -> Deadline:
    """The deadline of the fetch this thread is running (none outside a fetch)."""
    return _current.get(_NO_DEADLINE)


@dataclass(frozen=True)
class PoolKey:
    """What a kept connection was checked for; a request reuses it only under an equal key."""

    scheme: str
    host: str
    port: int
    addresses: frozenset[IPAddress]
    server_name: str | None  # TLS SNI and certificate name (None for plain http)
    tls: ssl.SSLContext | None  # by identity: a connection verified one way serves only that way

    @property
    def site(self) -> tuple[str, str, int, str | None, ssl.SSLContext | None]:
        return self.scheme, self.host, self.port, self.server_name, self.tls


class _LiveDeadlineStream(httpcore.NetworkStream):
    """A kept connection's stream: bounded by whichever fetch uses it now."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, current_deadline().clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, current_deadline().clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        wrapped = self._inner.start_tls(
            ssl_context, server_hostname, current_deadline().clamp(timeout, httpcore.ConnectTimeout)
        )
        return _LiveDeadlineStream(wrapped)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Connects only to the addresses of its key, in the order the check returned them."""

    def __init__(self, addresses: tuple[IPAddress, ...], opened: Callable[[], None]) -> None:
        self._addresses = addresses
        self._opened = opened
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in self._addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=current_deadline().clamp(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            self._opened()
            return _LiveDeadlineStream(stream)
        raise error or httpcore.ConnectError(f"{host} has no address")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never reached from a tenant URL")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class _Entry:
    pool: httpcore.ConnectionPool
    in_flight: int = 0
    used: float = field(default_factory=time.monotonic)
    retired: bool = False


@dataclass(frozen=True)
class PoolStats:
    """What the pool did so far (for tests and benchmarks)."""

    opened: int  # TCP connections opened
    sites: int  # keys with a pool now


class ConnectionPools:
    """The process' kept connections to tenant sites, one httpcore pool per :class:`PoolKey`."""

    def __init__(self, *, sites: int = 256, idle_per_site: int = 25, idle_seconds: float = 4.0) -> None:
        self.sites = sites
        self.idle_per_site = idle_per_site
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._entries: OrderedDict[PoolKey, _Entry] = OrderedDict()
        self._by_site: dict[tuple[Any, ...], PoolKey] = {}
        self._opened = 0
        self._swept = time.monotonic()

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self._opened, len(self._entries))

    def _count_open(self) -> None:
        with self._lock:
            self._opened += 1

    # --- choosing and releasing -------------------------------------------------------------------
    def _acquire(self, key: PoolKey, ordered: tuple[IPAddress, ...]) -> _Entry:
        closing: list[_Entry] = []
        with self._lock:
            previous = self._by_site.get(key.site)
            if previous is not None and previous != key:  # the host's addresses changed
                closing += self._retire(previous)
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(
                    httpcore.ConnectionPool(
                        ssl_context=key.tls,
                        network_backend=PinnedBackend(ordered, self._count_open),
                        max_connections=None,  # concurrency is the worker's to bound, not a queue here
                        max_keepalive_connections=self.idle_per_site,
                        keepalive_expiry=self.idle_seconds,
                        retries=0,
                    )
                )
                self._entries[key] = entry
            self._entries.move_to_end(key)
            self._by_site[key.site] = key
            entry.in_flight += 1
            entry.used = time.monotonic()
            while len(self._entries) > self.sites:
                oldest = next(iter(self._entries))
                closing += self._retire(oldest)
            closing += self._sweep()
        for stale in closing:
            stale.pool.close()
        return entry

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.in_flight -= 1
            entry.used = time.monotonic()
            close = entry.retired and entry.in_flight == 0
        if close:
            entry.pool.close()

    def _retire(self, key: PoolKey) -> list[_Entry]:
        """Drop ``key``: its pool is returned for closing now if idle, else closed by its last user."""
        entry = self._entries.pop(key, None)
        if self._by_site.get(key.site) == key:
            del self._by_site[key.site]
        if entry is None:
            return []
        entry.retired = True
        return [entry] if entry.in_flight == 0 else []

    def _sweep(self) -> list[_Entry]:
        """Pools nobody used for ``idle_seconds``: their sockets are closed, not left half-open."""
        now = time.monotonic()
        if now - self._swept < self.idle_seconds:
            return []
        self._swept = now
        stale = [k for k, e in self._entries.items() if e.in_flight == 0 and now - e.used > self.idle_seconds]
        return [entry for key in stale for entry in self._retire(key)]

    def forget_site(self, scheme: str, host: str, port: int) -> None:
        """Retire every pool of this host (its address is now refused)."""
        with self._lock:
            keys = [k for k in self._entries if (k.scheme, k.host, k.port) == (scheme, host, port)]
            closing = [entry for key in keys for entry in self._retire(key)]
        for entry in closing:
            entry.pool.close()

    def close(self) -> None:
        """Close every kept connection (requests still running keep theirs until they finish)."""
        with self._lock:
            closing = [entry for key in list(self._entries) for entry in self._retire(key)]
        for entry in closing:
            entry.pool.close()

    def _forget_after_fork(self) -> None:
        # The parent's sockets are the parent's: a child must not write on them, nor close them.
        self._lock = threading.Lock()
        self._entries = OrderedDict()
        self._by_site = {}

    # --- the transport a fetch uses ---------------------------------------------------------------
    def transport(self, check: Check, ssl_context: ssl.SSLContext) -> GuardedTransport:
        return GuardedTransport(self, check, ssl_context)


class _Body(httpx.SyncByteStream):
    """The answer's body; closing it hands the connection back (or closes a half-read one)."""

    def __init__(self, stream: Iterable[bytes], done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if callable(close):
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


class GuardedTransport(httpx.BaseTransport):
    """A fetcher's view of the shared pools: check first, then the pool of exactly what passed.

    Stateless between requests (each brings its fetch's deadline), so a fetcher's fetches and
    threads share one."""

    def __init__(self, pools: ConnectionPools, check: Check, ssl_context: ssl.SSLContext) -> None:
        self._pools = pools
        self._check = check
        self._ssl = ssl_context

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, Iterable)
        deadline = request.extensions.get(DEADLINE)
        if not isinstance(deadline, Deadline):  # never sent without the bounds of a fetch
            raise TypeError(f"a tenant fetch's request carries its deadline in extensions[{DEADLINE!r}]")
        previous = _current.get(_NO_DEADLINE)
        token = _current.set(deadline)
        url = request.url
        scheme, host = url.scheme, url.raw_host.decode("ascii")  # IDNA-encoded, as DNS and SNI see it
        port = url.port or (443 if scheme == "https" else 80)
        timeouts = request.extensions.get("timeout", {})
        try:
            connect = deadline.clamp(timeouts.get("connect"), httpcore.ConnectTimeout)
            try:
                addresses = self._check(host, port, connect)  # the lookup counts inside the deadline
            except AddressRefused:
                self._pools.forget_site(scheme, host, port)
                raise
            tls = scheme == "https"
            server_name = (request.extensions.get("sni_hostname") or host) if tls else None
            key = PoolKey(scheme, host, port, frozenset(addresses), server_name, self._ssl if tls else None)
            entry = self._pools._acquire(key, tuple(addresses))
        except BaseException:
            _current.reset(token)
            raise

        def done() -> None:
            self._pools._release(entry)
            if _current.get(None) is deadline:  # a fetch nested in another's stream
                _current.set(previous)

        try:
            answer = entry.pool.handle_request(
                httpcore.Request(
                    method=request.method,
                    url=httpcore.URL(
                        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                    ),
                    headers=request.headers.raw,
                    content=request.stream,
                    extensions=request.extensions,
                )
            )
        except BaseException:
            done()
            raise
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream, done),
            extensions=answer.extensions,
        )


_shared: ConnectionPools | None = None
_shared_lock = threading.Lock()


def shared_pools() -> ConnectionPools:
    """The process' pools, sized by settings (``MCMP_FETCH_POOL_*``) on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from mcmp.config import get_settings

            settings = get_settings()
            _shared = ConnectionPools(
                sites=settings.fetch_pool_sites,
                idle_per_site=settings.fetch_pool_idle_per_site or settings.batch_concurrency,
                idle_seconds=settings.fetch_pool_idle_seconds,
            )
        return _shared


def _after_fork() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()
    if _shared is not None:
        _shared._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork)
