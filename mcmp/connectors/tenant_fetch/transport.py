"""The transport: connections pinned to the checked address, every socket read bounded by the deadline.

httpcore's network backend is the one seam that does both: ``connect_tcp`` resolves once (through
the fetcher's check) and connects to the address it checked, while the ``Host`` header, SNI and
the certificate check keep the URL's name; every stream read and write is cut at the deadline.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpcore
import httpx

from mcmp.config.networks import IPAddress
from mcmp.connectors.errors import AmbiguousError, RetryableError
from mcmp.connectors.tenant_fetch.refusals import Rule

Check = Callable[[str, int, float], list[IPAddress]]  # host, port, seconds the lookup may take


class AddressRefused(Exception):
    """Raised inside the transport; the fetcher turns it into a FetchRefused naming the URL.

    ``address`` and ``text`` (which may name an embedded IPv4 address) are for the operator's
    log only; the tenant sees the host and the rule.
    """

    def __init__(self, host: str, address: IPAddress, rule: Rule, text: str) -> None:
        super().__init__(text)
        self.host, self.address, self.rule, self.text = host, address, rule, text


class NotResolved(httpcore.ConnectError):
    """A host name that did not resolve (or not in time); the message is safe for the tenant."""


class Deadline:
    """The whole fetch's time limit: every connect, read and write gets at most what is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def elapsed(self) -> float:
        return self.seconds - (self.at - time.monotonic())

    def clamp(self, timeout: float | None, exc: type[Exception]) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise exc(f"no complete answer within {self.seconds:g} s")
        return remaining if timeout is None else min(timeout, remaining)


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        wrapped = self._inner.start_tls(
            ssl_context, server_hostname, self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        )
        return DeadlineStream(wrapped, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves once, refuses forbidden addresses, connects to the address it checked."""

    def __init__(self, check: Check, deadline: Deadline) -> None:
        self._check = check
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        connect = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        addresses = self._check(host, port, connect)  # the lookup counts inside the deadline
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=self._deadline.clamp(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return DeadlineStream(stream, self._deadline)
        raise error or httpcore.ConnectError(f"{host} has no address")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never reached from a tenant URL")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if callable(close):
            close()


class PinnedTransport(httpx.BaseTransport):
    """httpx's transport contract over an httpcore pool that uses the guarded backend."""

    def __init__(self, backend: GuardedBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=backend, max_connections=4, retries=0
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, Iterable)
        answer = self._pool.handle_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=ResponseStream(answer.stream),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()


# Failures before the request could have reached the server; anything else may have.
NOT_SENT = (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout, socket.gaierror)
TRANSPORT = (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError, httpx.HTTPError)

_default_ssl: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def ssl_context() -> ssl.SSLContext:
    """One verifying context per process (loading the CA bundle is the slow part)."""
    global _default_ssl
    with _ssl_lock:
        if _default_ssl is None:
            _default_ssl = httpx.create_ssl_context()
        return _default_ssl


def transport_error(exc: BaseException, deadline: Deadline, what: str, *, write: bool) -> Exception:
    """A transport failure as the error tree: not sent → retry; sent → ambiguous for a write."""
    name = type(exc).__name__
    detail = f"no complete answer within {deadline.seconds:g} s" if deadline.expired() else name
    if isinstance(exc, NotResolved):
        detail = str(exc)
    elif isinstance(exc, httpcore.ConnectError) and "CERTIFICATE" in str(exc).upper():
        detail = f"TLS certificate not valid: {str(exc)[:200]}"
    if isinstance(exc, NOT_SENT):
        return RetryableError(f"{what}: network error before the site answered ({detail})")
    if write:
        return AmbiguousError(f"{what}: no answer after the request was sent ({detail})")
    return RetryableError(f"{what}: the site did not answer ({detail})")
