"""The guarded fetcher itself: checks, redirects hop by hop, answers read under caps."""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from mcmp.config import Settings
from mcmp.config.networks import AllowedNetwork, IPAddress, parse_allowed
from mcmp.connectors.errors import AmbiguousError, PermanentError, RetryableError
from mcmp.connectors.tenant_fetch.addresses import (
    Resolver,
    address_problem,
    resolve_within,
    rule_text,
    system_resolver,
)
from mcmp.connectors.tenant_fetch.media import Media, MediaStream, media_type
from mcmp.connectors.tenant_fetch.pool import DEADLINE, ConnectionPools, shared_pools
from mcmp.connectors.tenant_fetch.refusals import MB, FetchRefused, Rule, refused, show, size_text
from mcmp.connectors.tenant_fetch.transport import (
    NOT_SENT,
    TRANSPORT,
    AddressRefused,
    Deadline,
    NotResolved,
    ssl_context,
    transport_error,
)
from mcmp.errors import PublisherError

log = logging.getLogger(__name__)
MAX_REDIRECTS = 3
MAX_ANSWER_BYTES = MB  # a webhook's or WordPress' JSON answer
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
USER_AGENT = "MCMP-Publisher"


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


@lru_cache(maxsize=1024)  # the same webhook URLs come back with every delivery (~60 µs a parse)
def _parsed(url: str) -> httpx.URL:
    """``url`` parsed (an ``httpx.URL`` is immutable, so one parse serves every fetch of it)."""
    return httpx.URL(url)


class _FetchCookies(httpx.Cookies):
    """One fetch's cookies; an answer that sets none is not parsed for them (most never do)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            super().extract_cookies(response)


# The cookies of the fetch following its redirects on this thread now (see _Client).
_fetch_cookies: contextvars.ContextVar[_FetchCookies | None] = contextvars.ContextVar(
    "tenant_fetch_cookies", default=None
)


class _Client(httpx.Client):
    """A fetcher's one client, shared by all its fetches and threads (building a client per fetch
    cost about 0.2 ms of CPU).

    httpx keeps cookies on the client; here they belong to the fetch whose redirects are being
    followed (:meth:`TenantFetcher._open` gives each its own jar for its redirect loop), so a
    cookie set by one site never reaches another fetch.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        jar = _fetch_cookies.get()
        return _FetchCookies() if jar is None else jar  # outside a fetch: nothing kept

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("a tenant fetch's cookies live in the fetch, never on the client")


@dataclass(frozen=True)
class Head:
    """What a ``HEAD`` said; ``None`` where the server did not say."""

    status_code: int
    content_type: str | None
    size: int | None


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
        pools: ConnectionPools | None = None,
    ) -> None:
        self.allowed = tuple(a if isinstance(a, AllowedNetwork) else parse_allowed(a) for a in allowed)
        self.resolver = resolver
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        self._ssl = ssl_context
        # Kept-alive connections, keyed by what the checks passed (pool.py); the process' own
        # unless given (tests count a private one).
        self._pools = pools
        # Told (method, status, seconds to the answer's headers) after each request(): the worker
        # times a website's webhook and WordPress calls like any platform call.
        self.response_hooks: list[Callable[[str, int, float], None]] = []
        self._shared_client: _Client | None = None  # built on first use (the pools need settings)

    def _client(self) -> _Client:
        """The client of every fetch of this fetcher: its transport checks each request's address
        before choosing a pool, and bounds it by the deadline the request carries."""
        client = self._shared_client
        if client is None:  # two threads may both build one: either serves
            transport = (self._pools or shared_pools()).transport(
                self.checked_addresses, self._ssl or ssl_context()
            )
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            client = self._shared_client = _Client(transport=transport, trust_env=False, headers=headers)
        return client

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
    def checked_addresses(self, host: str, port: int, timeout: float | None = None) -> list[IPAddress]:
        """The addresses of ``host``, resolved once within ``timeout`` (default: the connect
        timeout); ``AddressRefused`` if any may not be reached."""
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            limit = self.connect_timeout if timeout is None else timeout
            try:
                addresses = resolve_within(self.resolver, host, port, limit)
            except TimeoutError:
                raise NotResolved(f"{host} did not resolve within {limit:.3g} s") from None
            except (OSError, UnicodeError) as exc:
                # the resolver's words (which name server, which search domain) stay in our log
                log.warning("tenant URL host %s could not be resolved: %r", host, exc)
                raise NotResolved(f"{host} could not be resolved") from None
        for address in addresses:
            problem = address_problem(address, port, self.allowed)
            if problem is not None:
                raise AddressRefused(host, address, *problem)
        return addresses

    def _check_url(
        self, url: httpx.URL, what: str, origin: httpx.URL | None, previous: httpx.URL | None = None
    ) -> None:
        def prefix() -> str:  # only for a refusal: every fetch passes here
            return f"{show(origin)} redirected to {show(url)}, which" if origin else show(url)

        if url.scheme not in ("http", "https"):
            raise refused(what, f"{prefix()} is not an http(s) URL", Rule.SCHEME)
        if previous is not None and previous.scheme == "https" and url.scheme == "http":
            raise refused(what, f"{prefix()} leaves https for plain http", Rule.SCHEME)
        if url.userinfo:
            raise refused(
                what, f"{prefix()} carries credentials (user:password@), never sent", Rule.CREDENTIALS
            )
        if not url.host:
            raise refused(what, f"{prefix()} has no host", Rule.INVALID)

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
        deadline: Deadline | None = None,
        **build: Any,
    ) -> Iterator[tuple[httpx.Response, Deadline]]:
        try:
            target = _parsed(url)
        except (httpx.InvalidURL, TypeError):
            raise refused(what, "is not a valid URL", Rule.INVALID) from None
        self._check_url(target, what, None)
        deadline = deadline or Deadline(total_timeout or self.total_timeout)
        read = read_timeout or self.read_timeout
        timeout = httpx.Timeout(connect=min(self.connect_timeout, read), read=read, write=read, pool=read)
        client = self._client()
        jar = _fetch_cookies.set(_FetchCookies())  # this fetch's, for its redirect chain only
        try:
            request = client.build_request(
                method, target, timeout=timeout, extensions={DEADLINE: deadline}, **build
            )
            origin: httpx.URL | None = None
            hops = 0
            while True:
                try:
                    response = client.send(request, stream=True, auth=auth if origin is None else None)
                except AddressRefused as blocked:
                    raise self._address_refusal(blocked, what, request.url, origin) from None
                if not (follow and response.has_redirect_location):
                    break
                next_request = response.next_request
                response.close()
                if next_request is None:  # pragma: no cover - httpx sets it for every redirect
                    break
                if hops == MAX_REDIRECTS:
                    raise refused(
                        what, f"{show(target)} redirected more than {MAX_REDIRECTS} times", Rule.REDIRECTS
                    )
                hops += 1
                origin = origin or target
                self._check_url(next_request.url, what, origin, request.url)
                request = next_request
        finally:
            _fetch_cookies.reset(jar)
        try:
            yield response, deadline
        finally:
            response.close()

    def _address_refusal(
        self, blocked: AddressRefused, what: str, url: httpx.URL, origin: httpx.URL | None
    ) -> FetchRefused:
        where = f"{show(origin)} redirected to {show(url)}, which" if origin else show(url)
        return refused(
            what,
            f"{where} resolves to {rule_text(blocked.rule)}",
            blocked.rule,
            internal=f"resolved to {blocked.address}, {blocked.text}",
        )

    # --- public operations -----------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        write: bool | None = None,
        read_timeout: float | None = None,
        total_timeout: float | None = None,
        max_bytes: int = MAX_ANSWER_BYTES,
        connect_retries: int = 3,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        follow_redirects: bool | None = None,
    ) -> FetchResponse:
        """One request and its whole answer (at most ``max_bytes``).

        GET/HEAD follow redirects (each hop checked) unless ``follow_redirects=False`` (a signed
        request: its headers must not reach another address); writes never do, so a 3xx comes
        back to the caller. ``content`` may be an iterable of bytes (a large upload sent as it is read;
        give its ``Content-Length`` header and a ``total_timeout`` that covers the upload). Transport errors become the error tree: a failure before the request left is
        retried here (it cannot have taken effect), one after sending is ``AmbiguousError`` for a
        write and ``RetryableError`` for a read.
        """
        method = method.upper()
        is_write = method not in SAFE_METHODS if write is None else write
        build: dict[str, Any] = {"params": params, "headers": headers, "content": content, "json": json}

        # One deadline for every try: a lookup or connect that failed and was retried still
        # counts against the fetch's total time.
        whole = Deadline(total_timeout or self.total_timeout)

        def once() -> FetchResponse:
            deadline: Deadline | None = None
            try:
                with self._open(
                    method,
                    url,
                    what=what,
                    follow=(not is_write) if follow_redirects is None else follow_redirects and not is_write,
                    write=is_write,
                    read_timeout=read_timeout,
                    total_timeout=total_timeout,
                    auth=auth,
                    deadline=whole,
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
                                raise AmbiguousError(
                                    f"{what}: the answer is larger than {size_text(max_bytes)}"
                                )
                            raise refused(
                                what, f"{show(url)} answered more than {size_text(max_bytes)}", Rule.TOO_LARGE
                            )
                    return FetchResponse(
                        response.status_code, response.headers, bytes(body), str(response.url)
                    )
            except TRANSPORT as exc:
                error = transport_error(exc, deadline or Deadline(math.inf), what, write=is_write)
                if isinstance(exc, NOT_SENT):
                    raise _NotSent(error) from None
                raise error from None

        try:
            try:
                return once()  # the usual case: no retry policy to build or enter
            except _NotSent:
                if connect_retries <= 1 or whole.expired():
                    raise
            time.sleep(min(2.0, 0.2 + random.uniform(0, 1), max(0.0, whole.at - time.monotonic())))
            return _after_connect_failure(connect_retries - 1, whole)(once)
        except _NotSent as exc:
            raise exc.error from None

    def head(self, url: str, *, what: str, timeout: tuple[float, float, float] | None = None) -> Head:
        """``HEAD`` with redirects followed: status, declared type and size."""
        connect, read, total = timeout or (self.connect_timeout, self.read_timeout, self.total_timeout)
        fetcher = self._with(connect_timeout=connect) if connect != self.connect_timeout else self
        deadline: Deadline | None = None
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
        except TRANSPORT as exc:
            raise transport_error(exc, deadline or Deadline(math.inf), what, write=False) from None

    @contextmanager
    def stream(
        self,
        url: str,
        *,
        what: str,
        max_bytes: int | None = None,
        accept: frozenset[str] | None = None,
        total_timeout: float | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[MediaStream]:
        """``GET`` media: status and type checked before the body runs, bytes streamed under caps.

        ``accept`` limits the media types (by signature) the caller takes; ``max_bytes`` defaults
        to ``MCMP_FETCH_MAX_BYTES``. A ``Content-Length`` above the cap is refused at once.
        ``on_progress`` is told the byte count after every chunk, from the first (it may raise to
        cut the read: a rate floor).
        """
        cap = max_bytes or self.max_bytes
        deadline: Deadline | None = None
        opened = ExitStack()
        try:
            response, deadline = opened.enter_context(
                self._open("GET", url, what=what, follow=True, write=False, total_timeout=total_timeout)
            )
            self._raise_for_status(response, what, url)
            media = MediaStream(response, deadline, what, url, cap)
            media.on_progress = on_progress
            if media.declared_size is not None and media.declared_size > cap:
                declared, limit = size_text(media.declared_size), size_text(cap)
                if declared == limit:
                    declared, limit = f"{media.declared_size:,} bytes", f"{cap:,} bytes"
                raise refused(what, f"{show(url)} declares {declared}, more than {limit}", Rule.TOO_LARGE)
            media._check_type(accept)
        except TRANSPORT as exc:
            opened.close()
            raise transport_error(exc, deadline or Deadline(math.inf), what, write=False) from None
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
            "pools": self._pools,
            **changes,
        }
        return TenantFetcher(self.allowed, **values)


def _after_connect_failure(attempts: int, whole: Deadline) -> Retrying:
    """After a first try that never left and its wait: ``attempts`` more (waits 0.4, 0.8 … s + jitter)."""
    return Retrying(
        retry=retry_if_exception_type(_NotSent),
        stop=stop_after_attempt(max(1, attempts)) | _PastDeadline(whole),
        wait=wait_exponential_jitter(initial=0.4, max=2.0),
        reraise=True,
    )


class _PastDeadline(stop_base):
    """Stops retrying once the fetch's whole deadline has passed."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline.expired()


class _NotSent(PublisherError):
    """Carries the error of a failure before sending through tenacity's retry."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
