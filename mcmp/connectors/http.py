"""The narrow HTTP seam every connector shares.

* ``send`` performs one request with a timeout and maps transport failures to the error tree:
  a failure *before* the request left (DNS, refused connection, connect timeout) is retried by
  tenacity right here, because it cannot have taken effect; a failure *after* sending (read
  timeout, reset mid-response) is an ``AmbiguousError`` for a write and a ``RetryableError``
  for a read, and is never retried in-process (the worker reconciles first).
* ``BaseUrlSession`` rewrites a platform's public base URL to a configured one, so SDKs that
  hard-code ``https://graph.facebook.com`` reach a simulator without patching the SDK.
* Every platform session of a process sends through one connection pool (:func:`shared_adapter`):
  kept-alive connections (and so TLS sessions) per platform host, as many per host as the
  process' threads may call at once, so no publish thread opens a connection that is then
  thrown away. Each connector keeps its own session object for its hooks (metrics by platform,
  usage headers); a forked child gets a pool of its own.
* The environment (``HTTPS_PROXY``/``NO_PROXY``, ``REQUESTS_CA_BUNDLE``) is read once per
  platform host and process, not on every request as requests does (a scan of ``os.environ``
  and a ``.netrc`` lookup per call, ~0.3 ms of CPU); ``.netrc`` is not used for platform calls,
  which carry their own tokens.
* A plain call (method, ASCII URL, headers, JSON or form body) is prepared without requests'
  generic merging (``mcmp.connectors.platform_requests``), and no cookie is kept between calls.
* The connect-retry policy is entered only after a connect failure: the happy path is one call.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from mcmp.connectors.errors import AmbiguousError, RetryableError
from mcmp.connectors.platform_requests import NoCookies, prepare

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _not_sent(exc: BaseException) -> bool:
    """True when the request certainly never reached the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc)
        return any(s in text for s in ("NewConnectionError", "NameResolutionError", "Connection refused"))
    return False


PLATFORM_HOSTS = 16  # platform hosts whose connections are kept (Graph, video, LinkedIn, Google...)
DEFAULT_POOL_SIZE = 32

_adapter: HTTPAdapter | None = None
_adapter_lock = threading.Lock()


class Concurrency(Protocol):
    """The settings a pool is sized from (``mcmp.config.Settings`` has them)."""

    http_pool_per_host: int
    batch_concurrency: int
    readiness_concurrency: int
    analytics_backfill_concurrency: int


def pool_size_for(settings: Concurrency) -> int:
    """Connections kept per platform host: every thread of a worker process that may call at once."""
    if settings.http_pool_per_host:
        return settings.http_pool_per_host
    return (
        settings.batch_concurrency + settings.readiness_concurrency + settings.analytics_backfill_concurrency
    )


def shared_adapter(pool_size: int | None = None) -> HTTPAdapter:
    """The process' one pool of platform connections, kept at least ``pool_size`` per host.

    Connectors ask for their settings' size when built (once per process); a larger request
    replaces the pool before the first calls, so the largest size asked for is the one used.
    """
    global _adapter
    with _adapter_lock:
        current: int = getattr(_adapter, "_pool_maxsize", 0)
        wanted = pool_size or DEFAULT_POOL_SIZE
        if _adapter is None or (pool_size is not None and pool_size > current):
            _adapter = HTTPAdapter(
                pool_connections=PLATFORM_HOSTS, pool_maxsize=max(wanted, current), max_retries=0
            )
        return _adapter


def _forget_after_fork() -> None:
    # The parent's sockets stay the parent's: the child opens its own (the size is kept).
    global _adapter, _adapter_lock
    size = getattr(_adapter, "_pool_maxsize", None)
    _adapter, _adapter_lock = None, threading.Lock()
    if size is not None:
        shared_adapter(size)


os.register_at_fork(after_in_child=_forget_after_fork)


@lru_cache(maxsize=64)
def _environ_proxies(origin: str, no_proxy: str | None) -> tuple[tuple[str, str], ...]:
    """The environment's proxies for one ``scheme://host:port`` (the process' environment is fixed)."""
    return tuple(requests.utils.get_environ_proxies(origin, no_proxy=no_proxy).items())


@lru_cache(maxsize=1)
def _ca_bundle() -> str | None:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


class BaseUrlSession(requests.Session):
    """A session that sends requests for ``public_base`` to ``base_url`` instead, over the shared pool."""

    def __init__(self, public_base: str = "", base_url: str = "", pool_size: int | None = None) -> None:
        super().__init__()
        self.public_base = public_base.rstrip("/")
        self.base_url = base_url.rstrip("/")
        self.trust_env = False  # read once per host in merge_environment_settings instead
        # No session-wide query parameters (none is ever set): requests then takes each request's
        # own as they are instead of merging two dicts through its runtime-checked protocols.
        self.params = None  # type: ignore[assignment]
        self.cookies = NoCookies()
        shared_adapter(pool_size)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """A plain platform call prepared directly; anything else by requests."""
        return prepare(request, self) or super().prepare_request(request)

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """requests' own merge, with the environment's proxies and CA bundle from the per-host cache.

        The merge itself is requests' ``merge_setting`` written out for these values (a request's
        value wins over the session's; proxies merged, a ``None`` entry dropping one): requests
        checks each mapping against runtime protocols, ~10 µs of CPU a check on Python 3.11.
        """
        proxies = {} if proxies is None else proxies
        parts = urlsplit(url.decode() if isinstance(url, bytes) else url or "")
        for key, value in _environ_proxies(f"{parts.scheme}://{parts.netloc}", proxies.get("no_proxy")):
            proxies.setdefault(key, value)
        if verify is True or verify is None:
            verify = _ca_bundle() or verify
        if self.proxies is not None:
            proxies = {k: v for k, v in {**self.proxies, **proxies}.items() if v is not None}
        return {
            "proxies": proxies,
            "stream": self.stream if stream is None else stream,
            "verify": self.verify if verify is None else verify,
            "cert": self.cert if cert is None else cert,
        }

    def get_adapter(self, url: str) -> HTTPAdapter:
        """Always the process' pool (looked up per request, so a forked child never uses the parent's)."""
        return shared_adapter()

    def close(self) -> None:
        """The pool is the process': closing one connector's session leaves it to the others."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        if self.public_base and self.base_url and url.startswith(self.public_base):
            url = self.base_url + url[len(self.public_base) :]
        return super().request(method, url, *args, **kwargs)


class HasHeaders(Protocol):
    """Any HTTP answer: a ``requests.Response`` or a tenant fetch's ``FetchResponse``."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def retry_after_seconds(response: HasHeaders) -> float | None:
    """The ``Retry-After`` header in seconds (delta form), or None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def describe_transport_error(exc: requests.RequestException) -> str:
    """A short, secret-free description (URLs can carry tokens in query strings)."""
    return type(exc).__name__


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    connect_retries: int = 3,
    **kwargs: Any,
) -> requests.Response:
    """One HTTP request with transport errors mapped to the error tree (see module docstring)."""
    method = method.upper()
    try:
        try:
            return session.request(method, url, timeout=timeout, **kwargs)
        except requests.RequestException as exc:
            if not _not_sent(exc) or connect_retries <= 1:
                raise
        time.sleep(min(2.0, 0.2 + random.uniform(0, 1)))  # the first wait of the policy below
        # Iterating a Retrying keeps the request (and its body, e.g. a 4 MB video part) out of
        # reference cycles: a decorated closure would keep each body alive until the cyclic GC ran.
        response: requests.Response | None = None
        for attempt in _connect_retrying(connect_retries - 1):
            with attempt:
                response = session.request(method, url, timeout=timeout, **kwargs)
        assert response is not None  # reraise=True: the loop ends with an answer or an exception
        return response
    except requests.RequestException as exc:
        what = describe_transport_error(exc)
        if _not_sent(exc) or method in SAFE_METHODS:
            raise RetryableError(f"network error before the platform answered ({what})") from None
        raise AmbiguousError(f"no answer after the request was sent ({what})") from None


def _connect_retrying(attempts: int) -> Retrying:
    """After a first connect failure and its wait: ``attempts`` more, waits 0.4, 0.8 … s (+ jitter, ≤ 2 s)."""
    return Retrying(
        retry=retry_if_exception(_not_sent),
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential_jitter(initial=0.4, max=2.0),
        reraise=True,
    )
