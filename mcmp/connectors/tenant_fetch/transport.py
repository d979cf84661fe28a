"""What the transport shares with the fetcher: the deadline, the refusal raised inside, the error tree.

The connections themselves (pinned to the checked addresses, every read and write cut at the
deadline, kept alive per key) are in ``pool``.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import httpcore
import httpx

from mcmp.config.networks import IPAddress
from mcmp.connectors.errors import AmbiguousError, RetryableError
from mcmp.connectors.tenant_fetch.refusals import Rule
from mcmp.errors import PublisherError


class AddressRefused(PublisherError):
    """Raised inside the transport; the fetcher turns it into a FetchRefused naming the URL.

    ``address`` and ``text`` (which may name an embedded IPv4 address) are for the operator's
    log only; the tenant sees the host and the rule.
    """

    def __init__(self, host: str, address: IPAddress, rule: Rule, text: str) -> None:
        super().__init__(text)
        self.host, self.address, self.rule, self.text = host, address, rule, text


class NotResolved(PublisherError, httpcore.ConnectError):
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
