"""The one place where a LinkedIn HTTP answer becomes an error of ``mcmp.connectors.errors``.

LinkedIn's REST error body is ``{"status": 4xx, "serviceErrorCode": N, "code": "...",
"message": "..."}`` (e.g. 401 ``REVOKED_ACCESS_TOKEN``/65601, 426 ``NONEXISTENT_VERSION``,
429 ``TOO_MANY_REQUESTS``/101); the OAuth endpoint answers ``{"error", "error_description"}``.

| status | class | why |
|---|---|---|
| 401 | Auth | token expired/revoked (the worker refreshes, else the member reconnects) |
| 403 | Auth | missing scope or page role: only re-authorising (or a new role) fixes it |
| 400 / 422 / 404 / 409 | Permanent | validation; includes serviceErrorCode + message |
| 426 | Permanent | ``LinkedIn-Version`` sunset: a configuration fix, not a retry |
| 429 | RateLimited | ``Retry-After`` if sent (not documented); else back off, and when 429s persist wait for the daily reset at midnight UTC |
| 5xx | Retryable (reads) / Ambiguous (writes) | a write may have been applied |
| token endpoint 400 ``invalid_grant`` (or ``invalid_request`` naming the token), 401 | Auth | refresh token expired/revoked |
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from mcmp.connectors.http import retry_after_seconds
from mcmp.connectors.usage import UsageReport, report

PLATFORM = "linkedin"
# First 429 without Retry-After: back off this long; a second one within PERSIST_WINDOW means a
# daily budget is spent, so wait for the reset at midnight UTC.
FIRST_BACKOFF_SECONDS = 60.0
PERSIST_WINDOW_SECONDS = 3600.0


def seconds_until_midnight_utc(now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1.0, (midnight - now).total_seconds())


class ThrottleMemory:
    """Remembers recent 429s per budget key so a persistent one defers until the daily reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def hit(self, key: str) -> int:
        now = time.monotonic()
        with self._lock:
            last, count = self._last.get(key, (0.0, 0))
            count = count + 1 if now - last < PERSIST_WINDOW_SECONDS else 1
            self._last[key] = (now, count)
            return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._last.pop(key, None)


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _reason(response: requests.Response, body: dict[str, Any]) -> str:
    parts = [f"HTTP {response.status_code}"]
    if isinstance(body.get("error"), str):  # OAuth endpoint shape
        parts.append(str(body["error"]))
        if body.get("error_description"):
            parts.append(str(body["error_description"])[:300])
        return " ".join(parts)
    if body.get("code"):
        parts.append(str(body["code"]))
    if body.get("serviceErrorCode") is not None:
        parts.append(f"(serviceErrorCode {body['serviceErrorCode']})")
    if body.get("message"):
        parts.append(f": {str(body['message'])[:300]}")
    return " ".join(parts)


def classify(
    response: requests.Response,
    *,
    write: bool,
    account_id: str | None,
    token_endpoint: bool = False,
    throttle: ThrottleMemory | None = None,
) -> ConnectorError:
    """Map a non-2xx LinkedIn answer to the error tree (see the module table)."""
    status = response.status_code
    body = _body(response)
    reason = _reason(response, body)
    code = body.get("serviceErrorCode", body.get("code", body.get("error", status)))
    if token_endpoint:
        return _classify_token(status, body, reason, account_id, throttle)
    if status == 401:
        return AuthError(
            f"LinkedIn rejected the access token; it must be refreshed or the account reconnected ({reason})",
            platform_code=code,
        )
    if status == 403:
        return AuthError(
            "LinkedIn denied the call: the token lacks a scope (w_organization_social / w_member_social) "
            f"or the member lacks a page role; the account must be re-authorised ({reason})",
            platform_code=code,
            refreshable=False,  # a refreshed token carries the same scopes and roles
        )
    if status == 426:
        return PermanentError(
            f"LinkedIn no longer serves the configured API version; update MCMP_LINKEDIN__API_VERSION ({reason})",
            platform_code=code,
        )
    if status == 429:
        return _rate_limited(response, body, reason, account_id, throttle)
    if status >= 500 or status == 408:
        retry_after = retry_after_seconds(response)
        if write:
            return AmbiguousError(
                f"LinkedIn failed after receiving the request ({reason})",
                retry_after=retry_after,
                platform_code=code,
            )
        return RetryableError(f"LinkedIn unavailable ({reason})", retry_after=retry_after, platform_code=code)
    return PermanentError(f"LinkedIn refused the request ({reason})", platform_code=code)


def _rate_limited(
    response: requests.Response,
    body: dict[str, Any],
    reason: str,
    account_id: str | None,
    throttle: ThrottleMemory | None,
) -> RateLimitedError:
    message = str(body.get("message", ""))
    # LinkedIn names the exhausted budget in the message ("... APPLICATION DAY limit ...").
    scope = "app" if "APPLICATION" in message.upper() else "account"
    key = "app" if scope == "app" else f"account:{account_id}"
    retry_after = retry_after_seconds(response)
    if retry_after is None:
        hits = throttle.hit(key) if throttle is not None else 1
        daily = "DAY" in message.upper()
        retry_after = seconds_until_midnight_utc() if daily or hits > 1 else FIRST_BACKOFF_SECONDS
    report(
        UsageReport(
            PLATFORM,
            scope,
            account_id if scope == "account" else None,
            used_pct=100.0,
            retry_after=retry_after,
        )
    )
    return RateLimitedError(
        f"LinkedIn throttled the call ({reason})", retry_after=retry_after, scope=scope, platform_code=429
    )


def _classify_token(
    status: int,
    body: dict[str, Any],
    reason: str,
    account_id: str | None,
    throttle: ThrottleMemory | None,
) -> ConnectorError:
    error = str(body.get("error", ""))
    description = str(body.get("error_description", "")).lower()
    if (
        status == 401
        or error == "invalid_grant"
        or (
            error == "invalid_request"
            and ("refresh" in description or "revoked" in description or "expired" in description)
        )
    ):
        return AuthError(
            f"LinkedIn refresh token is expired or revoked; the account must be reconnected ({reason})",
            platform_code=error or status,
        )
    if status == 429:
        retry_after = (
            seconds_until_midnight_utc()
            if throttle is not None and throttle.hit("app:oauth") > 1
            else FIRST_BACKOFF_SECONDS
        )
        report(UsageReport(PLATFORM, "app", None, used_pct=100.0, retry_after=retry_after))
        return RateLimitedError(
            f"LinkedIn throttled the token refresh ({reason})",
            retry_after=retry_after,
            scope="app",
            platform_code=429,
        )
    if status >= 500 or status == 408:
        # A refresh is safe to repeat (LinkedIn keeps the refresh token's TTL), so never Ambiguous.
        return RetryableError(f"LinkedIn token endpoint unavailable ({reason})", platform_code=status)
    return PermanentError(
        f"LinkedIn token endpoint refused the refresh ({reason})", platform_code=error or status
    )
