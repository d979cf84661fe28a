"""HMAC-SHA256 signatures of the website webhook (shared by the connector, the simulator, plugins).

The signature binds everything a replayed or redirected request could change, not just the body:
``X-MCMP-Signature: sha256=<hex HMAC-SHA256(secret, S)>`` where ``S`` is, joined by ``\\n``::

    <METHOD>            upper case, e.g. POST
    <path?query>        the request target exactly as in the HTTP request line (percent-encoded)
    <Idempotency-Key>   the header's value ("" when absent)
    <X-MCMP-Timestamp>  Unix seconds, ASCII digits
    <body>              the raw bytes (empty for the lookup GET)

Receivers accept a timestamp at most :data:`TOLERANCE_SECONDS` old and at most
:data:`FUTURE_SKEW_SECONDS` ahead (docs/connectors.md has receivers in Python and Node). Secrets
shorter than :data:`MIN_SECRET_BYTES` are refused on both sides. A signed request never follows a
redirect: the signature headers would go to whatever host the redirect names.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from functools import lru_cache

import httpx

from mcmp.errors import PublisherError

SIGNATURE_HEADER = "X-MCMP-Signature"
TIMESTAMP_HEADER = "X-MCMP-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_SECONDS = 300  # how old a timestamp may be
FUTURE_SKEW_SECONDS = 60  # how far ahead of the receiver's clock a timestamp may be
MIN_SECRET_BYTES = 16

_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_METHOD = re.compile(r"[A-Z]{1,16}")
_TARGET = re.compile(r"/[\x21-\x7e]*")  # printable ASCII, no space: as a request line carries it
_KEY = re.compile(r"[\x20-\x7e]{0,256}")


class WeakSecretError(PublisherError, ValueError):
    """The webhook secret is too short to sign with; the message never contains it."""


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot sign webhooks, or None (the reason never contains the secret)."""
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        return f"the webhook secret is {size} bytes long; at least {MIN_SECRET_BYTES} bytes are required"
    return None


@lru_cache(maxsize=1024)  # a site's few webhook URLs, parsed once (~60 µs each time)
def request_target(url: str) -> str:
    """The path and query of ``url`` as the HTTP request line carries them (what is signed)."""
    return httpx.URL(url).raw_path.decode("ascii")


def signed_string(method: str, target: str, idempotency_key: str, timestamp: str, body: bytes) -> bytes:
    """``S``, the exact bytes signed (see the module docstring)."""
    head = "\n".join((method.upper(), target, idempotency_key, timestamp)).encode()
    return head + b"\n" + body


def sign(secret: str, *, method: str, target: str, idempotency_key: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over :func:`signed_string`; ``WeakSecretError`` for a short secret."""
    problem = secret_problem(secret)
    if problem:
        raise WeakSecretError(problem)
    message = signed_string(method, target, idempotency_key, timestamp, body)
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str, method: str, url: str, idempotency_key: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The ``Idempotency-Key``, timestamp and signature headers of one request to ``url``."""
    timestamp = str(int(now if now is not None else time.time()))
    signature = sign(
        secret,
        method=method,
        target=request_target(url),
        idempotency_key=idempotency_key,
        timestamp=timestamp,
        body=body,
    )
    return {IDEMPOTENCY_HEADER: idempotency_key, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}


def _text(value: object, pattern: re.Pattern[str]) -> bool:
    return isinstance(value, str) and value.isascii() and pattern.fullmatch(value) is not None


def signature_problem(
    secret: object,
    *,
    method: object,
    target: object,
    idempotency_key: object,
    timestamp: object,
    body: object,
    signature: object,
    now: float | None = None,
) -> str | None:
    """None when the request is authentic and fresh, else why not. Never raises, whatever the input."""
    if not isinstance(secret, str) or secret_problem(secret):
        return "the secret is shorter than the minimum"
    if not _text(signature, _SIGNATURE):
        return "signature is not sha256=<64 lower-case hex digits>"
    if not _text(timestamp, _TIMESTAMP):
        return "timestamp is not Unix seconds"
    if not (_text(method, _METHOD) and _text(target, _TARGET) and _text(idempotency_key or "", _KEY)):
        return "method, path or Idempotency-Key is malformed"
    if not isinstance(body, bytes | bytearray):
        return "body is not bytes"
    assert isinstance(timestamp, str) and isinstance(signature, str)  # checked above
    assert isinstance(method, str) and isinstance(target, str)
    age = (now if now is not None else time.time()) - int(timestamp)
    if age > TOLERANCE_SECONDS:
        return "timestamp too old"
    if age < -FUTURE_SKEW_SECONDS:
        return "timestamp in the future"
    key = idempotency_key if isinstance(idempotency_key, str) else ""
    expected = sign(
        secret, method=method, target=target, idempotency_key=key, timestamp=timestamp, body=bytes(body)
    )
    if not hmac.compare_digest(expected, signature):
        return "signature mismatch"
    return None


def verify(
    secret: object,
    *,
    method: object,
    target: object,
    idempotency_key: object,
    timestamp: object,
    body: object,
    signature: object,
    now: float | None = None,
) -> bool:
    """True only for an authentic, fresh request; False for anything else (never raises)."""
    return (
        signature_problem(
            secret,
            method=method,
            target=target,
            idempotency_key=idempotency_key,
            timestamp=timestamp,
            body=body,
            signature=signature,
            now=now,
        )
        is None
    )
