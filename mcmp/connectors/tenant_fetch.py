"""Fetching URLs that tenants wrote: the only way a connector or the worker reaches one.

``assetUrls``, ``assets.url``, a website's ``webhookUrl`` and a WordPress ``siteUrl`` are written
by client users, while the worker runs inside a private network. A URL pointing back inside
(``http://169.254.169.254/…``, ``http://127.0.0.1:6379``, ``http://0.0.0.0:8080``) would be read
by the worker and, for media, uploaded to a public page. So every fetch of such a URL here:

* accepts only ``http``/``https`` URLs without credentials in them;
* resolves the host once, through an injectable :data:`Resolver`, and refuses it when any of
  its addresses is unspecified, loopback, private, link-local, shared (CGNAT), multicast,
  reserved or IPv6 unique-local — or an IPv4-mapped, IPv4-translated, 6to4, NAT64 or Teredo form
  of one — unless ``MCMP_FETCH_ALLOWED_NETWORKS`` admits it;
* connects to the very address it checked (no second lookup, so DNS rebinding cannot swap it),
  while the ``Host`` header, the TLS server name (SNI) and the certificate check keep the URL's
  host name;
* checks every redirect hop again (at most :data:`MAX_REDIRECTS`; writes never follow one);
* bounds connect, read and **total** time (every socket read is cut at the deadline, so a server
  dripping a byte a second cannot hold a worker), and counts body bytes while streaming, whatever
  ``Content-Length`` says;
* for media, checks the bytes' signature against the declared type (an HTML page served as
  ``image/jpeg`` is refused).

A refusal raises :class:`FetchRefused`, a ``ValidationError`` naming the item and the rule
(``assetUrls[1]: https://cdn.example/x.jpg resolves to 10.0.0.5, a private address``), so the
delivery fails permanently without a retry loop; the observer installed with
:func:`set_refusal_observer` (the worker's Prometheus counter) is told the rule. Nothing is sent
to a refused address: every check happens before connecting.

Interfaces (``what`` names the item in errors, e.g. ``assetUrls[0]``)::

    fetcher = TenantFetcher.from_settings(settings)
    answer = fetcher.request("POST", url, what="account.metadata.webhookUrl", content=body)
    head = fetcher.head(url, what="assetUrls[0]")                       # redirects followed
    media = fetcher.download(url, what="assetUrls[0]", max_bytes=8 * MB, accept=IMAGE_TYPES)
    with fetcher.stream(url, what="assetUrls[0]", max_bytes=1 << 30, accept=VIDEO_TYPES) as media:
        media.content_type, media.declared_size   # type already checked against the bytes
        for chunk in media.iter_bytes(4 << 20):     # or media.read(n): a file-like object
            upload(chunk)

:meth:`TenantFetcher.stream` is the streaming interface for large media: the first bytes are read
and checked before the ``with`` body runs, the rest flows in chunks under the byte cap and the
total deadline (pass ``total_timeout`` for long transfers: the caller's time between chunks
counts too). Answers are read with ``Accept-Encoding: identity``: a body is never decompressed,
so a compressed bomb cannot outgrow the cap.

Built on httpx (requests, redirects, auth) over httpcore, whose network backend is the one seam
that both pins the address and bounds every read.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import filetype  # type: ignore[import-untyped]
import httpcore
import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from mcmp.config import Settings
from mcmp.config.networks import AllowedNetwork, IPAddress, IPNetwork, parse_allowed
from mcmp.connectors.errors import (
    AmbiguousError,
    PermanentError,
    RetryableError,
    ValidationError,
)

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
MB = 1024 * 1024
MAX_ANSWER_BYTES = MB  # a webhook's or WordPress' JSON answer
SNIFF_BYTES = 8192  # enough for every signature ``filetype`` knows
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
USER_AGENT = "MCMP-Publisher"

Resolver = Callable[[str, int], Sequence[IPAddress]]


class Rule(StrEnum):
    """Why a tenant URL was refused (the ``rule`` label of the refusal counter)."""

    INVALID = "invalid_url"
    SCHEME = "scheme"
    CREDENTIALS = "credentials"
    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link_local"
    SHARED = "shared"
    MULTICAST = "multicast"
    RESERVED = "reserved"
    UNIQUE_LOCAL = "unique_local"
    REDIRECTS = "redirects"
    TOO_LARGE = "too_large"
    MEDIA_TYPE = "media_type"


_ADDRESS_TEXT = {
    Rule.UNSPECIFIED: "an unspecified address",
    Rule.LOOPBACK: "a loopback address",
    Rule.PRIVATE: "a private address",
    Rule.LINK_LOCAL: "a link-local address",
    Rule.SHARED: "a shared (carrier-grade NAT) address",
    Rule.MULTICAST: "a multicast address",
    Rule.RESERVED: "a reserved address",
    Rule.UNIQUE_LOCAL: "an IPv6 unique-local address",
}


def _nets(*pairs: tuple[str, Rule]) -> tuple[tuple[IPNetwork, Rule], ...]:
    return tuple((ipaddress.ip_network(net), rule) for net, rule in pairs)


# Explicit ranges (named in messages); anything else that is not globally routable is RESERVED.
_V4 = _nets(
    ("0.0.0.0/8", Rule.UNSPECIFIED),  # "this network": Linux routes 0.0.0.0 to the host itself
    ("10.0.0.0/8", Rule.PRIVATE),
    ("100.64.0.0/10", Rule.SHARED),
    ("127.0.0.0/8", Rule.LOOPBACK),
    ("169.254.0.0/16", Rule.LINK_LOCAL),  # cloud metadata lives here
    ("172.16.0.0/12", Rule.PRIVATE),
    ("192.168.0.0/16", Rule.PRIVATE),
    ("198.18.0.0/15", Rule.RESERVED),
    ("224.0.0.0/4", Rule.MULTICAST),
    ("240.0.0.0/4", Rule.RESERVED),  # and 255.255.255.255
)
_V6 = _nets(
    ("::/128", Rule.UNSPECIFIED),
    ("::1/128", Rule.LOOPBACK),
    ("fc00::/7", Rule.UNIQUE_LOCAL),
    ("fe80::/10", Rule.LINK_LOCAL),
    ("fec0::/10", Rule.PRIVATE),  # deprecated site-local
    ("ff00::/8", Rule.MULTICAST),
    ("64:ff9b:1::/48", Rule.PRIVATE),  # local-use NAT64
)


def _low32(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def _sixtofour(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    inner = address.sixtofour
    assert inner is not None  # only called inside 2002::/16
    return inner


# IPv6 forms that carry an IPv4 address: the IPv4 address decides.
_EMBEDDED: tuple[tuple[IPNetwork, str, Callable[[ipaddress.IPv6Address], ipaddress.IPv4Address]], ...] = (
    (ipaddress.ip_network("::ffff:0:0/96"), "IPv4-mapped", _low32),
    (ipaddress.ip_network("::ffff:0:0:0/96"), "IPv4-translated", _low32),
    (ipaddress.ip_network("64:ff9b::/96"), "NAT64", _low32),
    (ipaddress.ip_network("2002::/16"), "6to4", _sixtofour),
)
_TEREDO = ipaddress.ip_network("2001::/32")


def address_problem(
    address: IPAddress, port: int, allowed: Iterable[AllowedNetwork] = ()
) -> tuple[Rule, str] | None:
    """``(rule, "a private address")`` when ``address`` must not be reached, None when it may."""
    allowed = tuple(allowed)
    if any(entry.admits(address, port) for entry in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        inner: list[tuple[str, ipaddress.IPv4Address]] = [
            (name, extract(address)) for net, name, extract in _EMBEDDED if address in net
        ]
        if address in _TEREDO and address.teredo is not None:
            inner = [("Teredo", part) for part in address.teredo]
        if inner:
            for name, v4 in inner:
                found = address_problem(v4, port, allowed)
                if found is not None:
                    return found[0], f"the {name} form of {v4}, {found[1]}"
            return None
    for network, rule in _V4 if address.version == 4 else _V6:
        if address in network:
            return rule, _ADDRESS_TEXT[rule]
    if not address.is_global:
        return Rule.RESERVED, _ADDRESS_TEXT[Rule.RESERVED]
    return None


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (IP literals resolve to themselves, without DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


# --- refusals -----------------------------------------------------------------------------------
class FetchRefused(ValidationError):
    """A tenant URL the worker will not fetch; permanent, ``rule`` says which check refused it."""

    def __init__(self, what: str, reason: str, rule: Rule) -> None:
        super().__init__(what, reason)
        self.rule = rule


_observer: Callable[[Rule], None] | None = None


def set_refusal_observer(observer: Callable[[Rule], None] | None) -> None:
    """Called with the rule of every refusal (the worker counts them; connectors know no metrics)."""
    global _observer
    _observer = observer


def _refused(what: str, reason: str, rule: Rule) -> FetchRefused:
    log.warning("refused a tenant URL (%s): %s: %s", rule.value, what, reason)
    if _observer is not None:
        try:
            _observer(rule)
        except Exception:  # metrics must never change what a fetch does
            log.exception("refusal observer failed")
    return FetchRefused(what, reason, rule)


class _AddressRefused(Exception):
    """Raised inside the transport; the fetcher turns it into a FetchRefused naming the URL."""

    def __init__(self, host: str, address: IPAddress, rule: Rule, text: str) -> None:
        super().__init__(text)
        self.host, self.address, self.rule, self.text = host, address, rule, text


def show(url: httpx.URL | str) -> str:
    """The URL without credentials, query or fragment (signed URLs carry secrets there)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "an unreadable URL"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


# --- the transport: pinned connections, every read bounded by the deadline ---------------------
class _Deadline:
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


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
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
        return _DeadlineStream(wrapped, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves once, refuses forbidden addresses, connects to the address it checked."""

    def __init__(self, fetcher: TenantFetcher, deadline: _Deadline) -> None:
        self._fetcher = fetcher
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
        addresses = self._fetcher.checked_addresses(host, port)
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
            return _DeadlineStream(stream, self._deadline)
        raise error or httpcore.ConnectError(f"{host} has no address")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never reached from a tenant URL")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if callable(close):
            close()


class _PinnedTransport(httpx.BaseTransport):
    """httpx's transport contract over an httpcore pool that uses the guarded backend."""

    def __init__(self, backend: _GuardedBackend, ssl_context: ssl.SSLContext) -> None:
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
            stream=_ResponseStream(answer.stream),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()


# Failures before the request could have reached the server; anything else may have.
_NOT_SENT = (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout, socket.gaierror)
_TRANSPORT = (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError, httpx.HTTPError)

_default_ssl: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def _ssl_context() -> ssl.SSLContext:
    """One verifying context per process (loading the CA bundle is the slow part)."""
    global _default_ssl
    with _ssl_lock:
        if _default_ssl is None:
            _default_ssl = httpx.create_ssl_context()
        return _default_ssl


# --- what a fetch returns -----------------------------------------------------------------------
@dataclass(frozen=True)
class FetchResponse:
    """A complete answer read under the byte cap (the subset of ``requests.Response`` callers use)."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        import json

        return json.loads(self.content)


@dataclass(frozen=True)
class Head:
    """What a ``HEAD`` said; ``None`` where the server did not say."""

    status_code: int
    content_type: str | None
    size: int | None


@dataclass(frozen=True)
class Media:
    """Downloaded media: the bytes and their type as the signature shows it."""

    content: bytes
    content_type: str
    url: str


# Media signatures recognised as what the platforms take (``filetype``'s names).
MEDIA_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/apng",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/heic",
        "image/bmp",
        "image/tiff",
        "image/x-icon",
        "video/mp4",
        "video/x-m4v",
        "video/quicktime",
        "video/webm",
        "video/x-matroska",
        "video/3gpp",
        "video/mpeg",
        "video/x-msvideo",
    }
)
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def media_type(value: str | None) -> str | None:
    """A Content-Type header as a bare, lowercase MIME type (aliases folded); None when empty."""
    if not value:
        return None
    mime = value.split(";", 1)[0].strip().lower()
    return _ALIASES.get(mime, mime) or None


def sniff(head: bytes) -> str | None:
    """The media type the bytes' signature shows, or None when they are not media we know."""
    found = filetype.guess_mime(head[:SNIFF_BYTES])
    return found if found in MEDIA_TYPES else None


def _kind(mime: str | None) -> str | None:
    major = (mime or "").split("/", 1)[0]
    return major if major in ("image", "video") else None


class MediaStream:
    """An open media download: type checked, bytes flowing under the cap and the deadline.

    Iterate :meth:`iter_bytes` or call :meth:`read` like a file. Errors while reading are
    ``RetryableError`` (the connection broke or the deadline passed) or ``FetchRefused``
    (more bytes than ``max_bytes``).
    """

    def __init__(
        self,
        fetcher: TenantFetcher,
        response: httpx.Response,
        deadline: _Deadline,
        what: str,
        url: str,
        max_bytes: int,
    ) -> None:
        self._fetcher = fetcher
        self._chunks = response.iter_raw()
        self._deadline = deadline
        self.what = what
        self.url = url
        self.max_bytes = max_bytes
        self.declared_type = media_type(response.headers.get("Content-Type"))
        length = response.headers.get("Content-Length", "")
        # Only a hint: with chunked framing it says nothing, and bytes are counted regardless.
        self.declared_size = int(length) if length.isdigit() else None
        self.content_type = ""
        self.received = 0
        self._buffer = bytearray()
        self._done = False

    def _next_raw(self) -> bytes | None:
        try:
            chunk = next(self._chunks, None)
        except _TRANSPORT as exc:
            raise self._fetcher.transport_error(exc, self._deadline, self.what, write=False) from None
        if chunk is None:
            self._done = True
            return None
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise _refused(
                self.what, f"{show(self.url)} is larger than {_size(self.max_bytes)}", Rule.TOO_LARGE
            )
        return chunk

    def _check_type(self, accept: frozenset[str] | None) -> None:
        while len(self._buffer) < SNIFF_BYTES and not self._done:
            chunk = self._next_raw()
            if chunk:
                self._buffer += chunk
        declared = self.declared_type
        found = sniff(bytes(self._buffer[:SNIFF_BYTES]))
        where = show(self.url)
        if found is None:
            looks = " (they look like HTML or text)" if self._buffer.lstrip()[:1] == b"<" else ""
            raise _refused(
                self.what,
                f"{where} is served as {declared or 'an unknown type'} but its bytes are not an "
                f"image or video{looks}",
                Rule.MEDIA_TYPE,
            )
        if _kind(declared) is not None and _kind(declared) != _kind(found):
            raise _refused(
                self.what, f"{where} is served as {declared} but its bytes are {found}", Rule.MEDIA_TYPE
            )
        if accept is not None and found not in accept:
            raise _refused(
                self.what,
                f"{where} is {found}, which is not accepted here (accepted: {', '.join(sorted(accept))})",
                Rule.MEDIA_TYPE,
            )
        self.content_type = found

    def iter_bytes(self, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The body in chunks of at most ``chunk_size`` bytes (the last may be shorter)."""
        while True:
            data = self.read(chunk_size)
            if not data:
                return
            yield data

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all remaining when negative); ``b""`` at the end."""
        while (size < 0 or len(self._buffer) < size) and not self._done:
            chunk = self._next_raw()
            if chunk:
                self._buffer += chunk
        if size < 0 or size >= len(self._buffer):
            data, self._buffer = bytes(self._buffer), bytearray()
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        return data


def _size(count: int) -> str:
    return f"{count / MB:.1f} MB" if count >= MB else f"{count:,} bytes"


# --- the fetcher --------------------------------------------------------------------------------
class TenantFetcher:
    """Fetches tenant-supplied URLs safely (see the module docstring). Thread-safe, cheap to build."""

    def __init__(
        self,
        allowed: Iterable[AllowedNetwork | str] = (),
        *,
        resolver: Resolver = system_resolver,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        total_timeout: float = 60.0,
        max_bytes: int = 50 * MB,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.allowed = tuple(a if isinstance(a, AllowedNetwork) else parse_allowed(a) for a in allowed)
        self.resolver = resolver
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        self._ssl = ssl_context
        # Told (method, status, seconds to the answer's headers) after each request(): the worker
        # times a website's webhook and WordPress calls like any platform call.
        self.response_hooks: list[Callable[[str, int, float], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TenantFetcher:
        values: dict[str, Any] = {
            "connect_timeout": settings.fetch_connect_timeout_seconds,
            "read_timeout": settings.fetch_read_timeout_seconds,
            "total_timeout": settings.fetch_total_timeout_seconds,
            "max_bytes": settings.fetch_max_bytes,
            **overrides,
        }
        return cls(settings.fetch_allowed, **values)

    # --- checks ---------------------------------------------------------------------------------
    def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host``, resolved once; ``_AddressRefused`` if any may not be reached."""
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                addresses = list(self.resolver(host, port))
            except (OSError, UnicodeError) as exc:
                raise httpcore.ConnectError(f"{host} could not be resolved ({type(exc).__name__})") from None
        for address in addresses:
            problem = address_problem(address, port, self.allowed)
            if problem is not None:
                raise _AddressRefused(host, address, *problem)
        return addresses

    def _check_url(self, url: httpx.URL, what: str, origin: httpx.URL | None) -> None:
        prefix = f"{show(origin)} redirected to {show(url)}, which" if origin else show(url)
        if url.scheme not in ("http", "https"):
            raise _refused(what, f"{prefix} is not an http(s) URL", Rule.SCHEME)
        if url.userinfo:
            raise _refused(
                what, f"{prefix} carries credentials (user:password@), never sent", Rule.CREDENTIALS
            )
        if not url.host:
            raise _refused(what, f"{prefix} has no host", Rule.INVALID)

    def transport_error(
        self, exc: BaseException, deadline: _Deadline, what: str, *, write: bool
    ) -> Exception:
        """A transport failure as the error tree: not sent → retry; sent → ambiguous for a write."""
        name = type(exc).__name__
        detail = f"no complete answer within {deadline.seconds:g} s" if deadline.expired() else name
        if isinstance(exc, httpcore.ConnectError) and "CERTIFICATE" in str(exc).upper():
            detail = f"TLS certificate not valid: {str(exc)[:200]}"
        if isinstance(exc, _NOT_SENT):
            return RetryableError(f"{what}: network error before the site answered ({detail})")
        if write:
            return AmbiguousError(f"{what}: no answer after the request was sent ({detail})")
        return RetryableError(f"{what}: the site did not answer ({detail})")

    # --- one exchange, redirects checked hop by hop ----------------------------------------------
    @contextmanager
    def _open(
        self,
        method: str,
        url: str,
        *,
        what: str,
        follow: bool,
        write: bool,
        read_timeout: float | None = None,
        total_timeout: float | None = None,
        auth: tuple[str, str] | None = None,
        **build: Any,
    ) -> Iterator[tuple[httpx.Response, _Deadline]]:
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise _refused(what, "is not a valid URL", Rule.INVALID) from None
        self._check_url(target, what, None)
        deadline = _Deadline(total_timeout or self.total_timeout)
        read = read_timeout or self.read_timeout
        transport = _PinnedTransport(_GuardedBackend(self, deadline), self._ssl or _ssl_context())
        timeout = httpx.Timeout(connect=min(self.connect_timeout, read), read=read, write=read, pool=read)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        with httpx.Client(transport=transport, timeout=timeout, trust_env=False, headers=headers) as client:
            request = client.build_request(method, target, **build)
            origin: httpx.URL | None = None
            hops = 0
            while True:
                try:
                    response = client.send(request, stream=True, auth=auth if origin is None else None)
                except _AddressRefused as refused:
                    raise self._address_refusal(refused, what, request.url, origin) from None
                if not (follow and response.has_redirect_location):
                    break
                next_request = response.next_request
                response.close()
                if next_request is None:  # pragma: no cover - httpx sets it for every redirect
                    break
                if hops == MAX_REDIRECTS:
                    raise _refused(
                        what, f"{show(target)} redirected more than {MAX_REDIRECTS} times", Rule.REDIRECTS
                    )
                hops += 1
                origin = origin or target
                self._check_url(next_request.url, what, origin)
                request = next_request
            try:
                yield response, deadline
            finally:
                response.close()

    def _address_refusal(
        self, refused: _AddressRefused, what: str, url: httpx.URL, origin: httpx.URL | None
    ) -> FetchRefused:
        where = f"{show(origin)} redirected to {show(url)}, which" if origin else show(url)
        return _refused(what, f"{where} resolves to {refused.address}, {refused.text}", refused.rule)

    # --- public operations -----------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        write: bool | None = None,
        read_timeout: float | None = None,
        max_bytes: int = MAX_ANSWER_BYTES,
        connect_retries: int = 3,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
    ) -> FetchResponse:
        """One request and its whole answer (at most ``max_bytes``).

        GET/HEAD follow redirects (each hop checked); writes never do, so a 3xx comes back to
        the caller. Transport errors become the error tree: a failure before the request left is
        retried here (it cannot have taken effect), one after sending is ``AmbiguousError`` for a
        write and ``RetryableError`` for a read.
        """
        method = method.upper()
        is_write = method not in SAFE_METHODS if write is None else write
        build: dict[str, Any] = {"params": params, "headers": headers, "content": content, "json": json}

        @retry(
            retry=retry_if_exception_type(_NotSent),
            stop=stop_after_attempt(max(1, connect_retries)),
            wait=wait_exponential_jitter(initial=0.2, max=2.0),
            reraise=True,
        )
        def once() -> FetchResponse:
            deadline: _Deadline | None = None
            try:
                with self._open(
                    method,
                    url,
                    what=what,
                    follow=not is_write,
                    write=is_write,
                    read_timeout=read_timeout,
                    auth=auth,
                    **build,
                ) as (response, deadline):
                    for hook in self.response_hooks:
                        hook(
                            method, response.status_code, deadline.seconds - (deadline.at - time.monotonic())
                        )
                    body = bytearray()
                    for chunk in response.iter_raw():
                        body += chunk
                        if len(body) > max_bytes:
                            if is_write:
                                raise AmbiguousError(f"{what}: the answer is larger than {_size(max_bytes)}")
                            raise _refused(
                                what, f"{show(url)} answered more than {_size(max_bytes)}", Rule.TOO_LARGE
                            )
                    return FetchResponse(
                        response.status_code, response.headers, bytes(body), str(response.url)
                    )
            except _TRANSPORT as exc:
                error = self.transport_error(exc, deadline or _Deadline(math.inf), what, write=is_write)
                if isinstance(exc, _NOT_SENT):
                    raise _NotSent(error) from None
                raise error from None

        try:
            return once()
        except _NotSent as exc:
            raise exc.error from None

    def head(self, url: str, *, what: str, timeout: tuple[float, float, float] | None = None) -> Head:
        """``HEAD`` with redirects followed: status, declared type and size."""
        connect, read, total = timeout or (self.connect_timeout, self.read_timeout, self.total_timeout)
        fetcher = self._with(connect_timeout=connect) if connect != self.connect_timeout else self
        deadline: _Deadline | None = None
        try:
            with fetcher._open(
                "HEAD", url, what=what, follow=True, write=False, read_timeout=read, total_timeout=total
            ) as (response, deadline):
                length = response.headers.get("Content-Length", "")
                return Head(
                    response.status_code,
                    media_type(response.headers.get("Content-Type")),
                    int(length) if length.isdigit() else None,
                )
        except _TRANSPORT as exc:
            raise self.transport_error(exc, deadline or _Deadline(math.inf), what, write=False) from None

    @contextmanager
    def stream(
        self,
        url: str,
        *,
        what: str,
        max_bytes: int | None = None,
        accept: frozenset[str] | None = None,
        total_timeout: float | None = None,
    ) -> Iterator[MediaStream]:
        """``GET`` media: status and type checked before the body runs, bytes streamed under caps.

        ``accept`` limits the media types (by signature) the caller takes; ``max_bytes`` defaults
        to ``MCMP_FETCH_MAX_BYTES``. A ``Content-Length`` above the cap is refused at once.
        """
        cap = max_bytes or self.max_bytes
        deadline: _Deadline | None = None
        opened = ExitStack()
        try:
            response, deadline = opened.enter_context(
                self._open("GET", url, what=what, follow=True, write=False, total_timeout=total_timeout)
            )
            self._raise_for_status(response, what, url)
            media = MediaStream(self, response, deadline, what, url, cap)
            if media.declared_size is not None and media.declared_size > cap:
                declared, limit = _size(media.declared_size), _size(cap)
                if declared == limit:
                    declared, limit = f"{media.declared_size:,} bytes", f"{cap:,} bytes"
                raise _refused(what, f"{show(url)} declares {declared}, more than {limit}", Rule.TOO_LARGE)
            media._check_type(accept)
        except _TRANSPORT as exc:
            opened.close()
            raise self.transport_error(exc, deadline or _Deadline(math.inf), what, write=False) from None
        except BaseException:
            opened.close()
            raise
        with opened:  # the caller's own errors pass through untouched
            yield media

    def download(
        self,
        url: str,
        *,
        what: str,
        max_bytes: int | None = None,
        accept: frozenset[str] | None = None,
        total_timeout: float | None = None,
    ) -> Media:
        """The whole media file in memory (images); use :meth:`stream` for large files."""
        with self.stream(
            url, what=what, max_bytes=max_bytes, accept=accept, total_timeout=total_timeout
        ) as media:
            return Media(media.read(), media.content_type, url)

    def _raise_for_status(self, response: httpx.Response, what: str, url: str) -> None:
        """The one place a media host's status becomes meaning (its 401/403 say nothing of an account)."""
        status = response.status_code
        if 200 <= status < 300:
            return
        where = f"{what}: {show(url)} answered HTTP {status}"
        if status in (408, 425, 429) or status >= 500:
            retry_after = response.headers.get("Retry-After", "")
            raise RetryableError(where, retry_after=float(retry_after) if retry_after.isdigit() else None)
        if status in (404, 410):
            raise PermanentError(f"{where} (media not found)", platform_code=status)
        raise PermanentError(where, platform_code=status)

    def _with(self, **changes: Any) -> TenantFetcher:
        values = {
            "resolver": self.resolver,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "total_timeout": self.total_timeout,
            "max_bytes": self.max_bytes,
            "ssl_context": self._ssl,
            **changes,
        }
        return TenantFetcher(self.allowed, **values)


class _NotSent(Exception):
    """Carries the error of a failure before sending through tenacity's retry."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_REDIRECTS",
    "MEDIA_TYPES",
    "FetchRefused",
    "FetchResponse",
    "Head",
    "Media",
    "MediaStream",
    "Resolver",
    "Rule",
    "TenantFetcher",
    "address_problem",
    "media_type",
    "set_refusal_observer",
    "show",
    "sniff",
    "system_resolver",
]
