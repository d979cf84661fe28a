"""The one place where an Instagram Graph API answer becomes an error class.

| code / subcode                 | meaning (Graph + IG error-code docs)      | class                         |
|--------------------------------|-------------------------------------------|-------------------------------|
| 1, 2, -1, -2; is_transient     | temporary / service                        | Retryable (Ambiguous on publish) |
| 4, 17, 32, 341, 613, 80002     | throttling                                 | RateLimited (app / account)   |
| 9 / 2207042                    | publishing limit reached                   | RateLimited (ig-publish-quota)|
| 190, 102, 10, 200–299          | token invalid / permission missing         | Auth                          |
| 2207051                        | blocked as possible spam                   | Permanent (no auto-retry)     |
| 2207003/2207020/2207032/2207053| download timeout / expired / failed container | Retryable (new container)  |
| 506                            | duplicate post                             | Ambiguous (reconcile)         |
| anything else 4xx              | invalid parameter / policy                 | Permanent                     |
"""

from __future__ import annotations

import json
from typing import Any

import requests

from connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from connectors.http import retry_after_seconds
from connectors.usage import UsageReport, report

PLATFORM = "instagram"
THROTTLE_APP = frozenset({4, 341})
THROTTLE_ACCOUNT = frozenset({17, 32, 613, 80002})
AUTH_CODES = frozenset({190, 102, 10})
RETRY_CONTAINER_SUBCODES = frozenset({2207001, 2207003, 2207020, 2207032, 2207053})
QUOTA_SUBCODE = 2207042
SPAM_SUBCODE = 2207051


def _error(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def read_usage(response: requests.Response, account_id: str | None) -> None:
    """Feed ``X-App-Usage`` (percentages of the app budget) into the shared limiter."""
    raw = response.headers.get("X-App-Usage")
    if not raw:
        return
    try:
        usage = json.loads(raw)
        pct = max(float(usage.get(k, 0)) for k in ("call_count", "total_cputime", "total_time"))
    except (ValueError, TypeError, AttributeError):
        return
    report(UsageReport(PLATFORM, "app", account_id, used_pct=pct, retry_after=retry_after_seconds(response)))


def classify(
    response: requests.Response, *, write: bool, account_id: str | None, quota_recheck: float = 900.0
) -> ConnectorError:
    error = _error(response)
    code = error.get("code")
    sub = error.get("error_subcode")
    message = str(error.get("message") or f"HTTP {response.status_code}")[:300]
    reason = f"Instagram error {code}{f'/{sub}' if sub else ''}: {message}"
    retry_after = retry_after_seconds(response)
    if sub == QUOTA_SUBCODE:
        return RateLimitedError(
            reason, retry_after=retry_after or quota_recheck, scope="ig-publish-quota", platform_code=code
        )
    if code in THROTTLE_APP or code in THROTTLE_ACCOUNT:
        scope = "app" if code in THROTTLE_APP else "account"
        report(UsageReport(PLATFORM, scope, account_id, used_pct=100.0, retry_after=retry_after or 60.0))
        return RateLimitedError(reason, retry_after=retry_after or 60.0, scope=scope, platform_code=code)
    if code in AUTH_CODES or (isinstance(code, int) and 200 <= code <= 299):
        return AuthError(reason, platform_code=code)
    if sub == SPAM_SUBCODE:
        return PermanentError(reason + " (not retried automatically)", platform_code=code)
    if code == 506:
        return AmbiguousError(reason, platform_code=code)
    if sub in RETRY_CONTAINER_SUBCODES:
        return RetryableError(reason, retry_after=retry_after, platform_code=code)
    transient = error.get("is_transient") is True or code in (1, 2, -1, -2) or response.status_code >= 500
    if transient:
        if write:
            return AmbiguousError(reason, retry_after=retry_after, platform_code=code)
        return RetryableError(reason, retry_after=retry_after, platform_code=code)
    return PermanentError(reason, platform_code=code)
