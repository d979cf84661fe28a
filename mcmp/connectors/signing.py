"""HMAC-SHA256 signatures of the website webhook (shared by the connector and the simulator).

``X-MCMP-Signature: sha256=<hex HMAC(secret, "<X-MCMP-Timestamp>." + body)>``; receivers must
reject timestamps older than :data:`TOLERANCE_SECONDS` to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-MCMP-Signature"
TIMESTAMP_HEADER = "X-MCMP-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(now if now is not None else time.time()))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float | None = None) -> str | None:
    """None when valid, else the reason it is not."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return "timestamp is not an integer"
    if age > TOLERANCE_SECONDS:
        return "timestamp outside tolerance"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature or ""):
        return "signature mismatch"
    return None
