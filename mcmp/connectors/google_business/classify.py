"""The one place where a Google Business Profile answer becomes an error of ``mcmp.connectors.errors``.

Google's error body is ``{"error": {"code": <http>, "message": "...", "status": "<CANONICAL>",
"details": [...]}}``.

| status | class | why |
|---|---|---|
| 401 UNAUTHENTICATED | Auth | token expired/revoked: refresh, else reconnect |
| 403 PERMISSION_DENIED, scope problem (``ACCESS_TOKEN_SCOPE_INSUFFICIENT``) | Auth | re-authorise with ``business.manage`` |
| 403 PERMISSION_DENIED, otherwise | Permanent | API not enabled / location not managed: retrying cannot help |
| 429 RESOURCE_EXHAUSTED | RateLimited | per-minute project quota: ``Retry-After`` if sent, else 60 s |
| 400 INVALID_ARGUMENT, 404, 409, other 4xx | Permanent | the request itself is wrong |
| 500 / 502 / 503 / 504 | Retryable; Ambiguous for create (a write may have been applied) |
"""

from __future__ import annotations

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

PLATFORM = "google-business"
QUOTA_WINDOW_SECONDS = 60.0


def _error(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _is_scope_problem(error: dict[str, Any]) -> bool:
    message = str(error.get("message", "")).lower()
    if "scope" in message:
        return True
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason") == "ACCESS_TOKEN_SCOPE_INSUFFICIENT":
            return True
    return False


def classify(response: requests.Response, *, write: bool, account_id: str | None) -> ConnectorError:
    """Map a non-2xx Business Profile answer to the error tree (see the module table)."""
    status = response.status_code
    error = _error(response)
    canonical = str(error.get("status") or status)
    reason = f"HTTP {status} {canonical}: {str(error.get('message', ''))[:300]}".rstrip(": ")
    if status == 401:
        return AuthError(
            f"Google rejected the access token; refresh it or reconnect the account ({reason})",
            platform_code=canonical,
        )
    if status == 403:
        if _is_scope_problem(error):
            return AuthError(
                f"the Google token lacks the business.manage scope; the account must be re-authorised ({reason})",
                platform_code=canonical,
                refreshable=False,  # a refreshed token carries the same scopes
            )
        return PermanentError(
            f"Google denied access to this location (API not enabled or location not managed by this account) ({reason})",
            platform_code=canonical,
        )
    if status == 429:
        retry_after = retry_after_seconds(response) or QUOTA_WINDOW_SECONDS
        report(UsageReport(PLATFORM, "app", None, used_pct=100.0, retry_after=retry_after))
        return RateLimitedError(
            f"Google quota exhausted ({reason})",
            retry_after=retry_after,
            scope="app",
            platform_code=canonical,
        )
    if status >= 500 or status == 408:
        if write:
            return AmbiguousError(
                f"Google failed after receiving the post ({reason})",
                retry_after=retry_after_seconds(response),
                platform_code=canonical,
            )
        return RetryableError(
            f"Google unavailable ({reason})",
            retry_after=retry_after_seconds(response),
            platform_code=canonical,
        )
    return PermanentError(f"Google refused the request ({reason})", platform_code=canonical)
