"""Graph's errors: the one place where a Graph answer becomes an error of ``mcmp.connectors.errors``.

Both Graph connectors (``facebook``, ``instagram``) call :func:`classify`. A throttling error's
wait comes from the usage headers' regain times (:mod:`mcmp.connectors.graph.usage`) or
``Retry-After``; without any, ``RateLimitedError.hinted`` is False and the worker picks a block
that grows on repeats (``mcmp.worker.rate_limit``). Messages are redacted of anything token-like.

Error table (code / subcode → class), from Meta's error-handling guide and the IG error codes:

| code (subcode) | class | why |
|---|---|---|
| 1, 2 | Retryable (Ambiguous on a write) | temporary/downtime; a write may still have landed, so reconcile first |
| 4, 341 | RateLimited, scope ``app`` | application call budget |
| 17 | RateLimited, scope ``user`` | the token user's call budget |
| 32, 613, 80000–80099 | RateLimited, scope ``account`` | Page/BUC budget |
| 9 (2207042) | RateLimited, scope ``ig-publish-quota`` | IG publishing limit: defer, no attempt used |
| 4 (2207051) | Permanent | IG blocked the post as possible spam: never auto-retry |
| -1/-2 (2207001, 2207003, 2207020, 2207032, 2207053), 9007 (2207027) | Retryable | IG container failed/expired/not ready: a new attempt makes a new container |
| 190 (any subcode: 458–467), 102, 104, 10, 200–299 | Auth | token expired/revoked/invalid or permission removed |
| 368 | Retryable, ``retry_after`` 6 h | "temporarily blocked for policy violations": Meta says wait and retry; a long delay that still consumes attempts, so a lasting block ends as a visible failure instead of looping |
| 506 | Ambiguous | duplicate post: the earlier attempt most likely succeeded; reconcile |
| 100 (33) | :class:`GraphNotFound` (Permanent) | object does not exist (deleted post) |
| 100, 3, 1609005, anything else 4xx | Permanent | invalid parameter / capability / link scrape error |
| non-JSON (HTML) 5xx | Retryable | a front end answered; a 504 or an empty body on a write is Ambiguous |
"""

from __future__ import annotations

import logging
import re
import warnings
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
from mcmp.connectors.graph.usage import buc_regain_seconds, regain_seconds
from mcmp.connectors.http import retry_after_seconds

with warnings.catch_warnings():  # facebook-sdk 3.1.0 has an invalid escape in a regex literal
    warnings.simplefilter("ignore")

DEFAULT_IG_QUOTA_BACKOFF = 3600.0  # the oldest of the 24 h publishes must age out; check hourly
POLICY_BLOCK_BACKOFF = 6 * 3600.0

APP_THROTTLE = frozenset({4, 341})
ACCOUNT_THROTTLE = frozenset({17, 32, 613})
USER_THROTTLE = 17  # the user's own call budget (the token's user), not the Page's
AUTH_CODES = frozenset({190, 102, 104, 10})
IG_QUOTA_SUBCODE = 2207042
IG_SPAM_SUBCODE = 2207051
IG_RETRY_SUBCODES = frozenset({2207001, 2207003, 2207020, 2207032, 2207053, 2207027})
NOT_FOUND_SUBCODE = 33
_SECRETISH = re.compile(
    r"(access_token|fb_exchange_token|client_secret|input_token)=[^&\s\"']+|EAA[A-Za-z0-9]{8,}"
)

log = logging.getLogger(__name__)


class GraphNotFound(PermanentError):
    """The object does not exist (or is not visible): e.g. a post deleted on the platform."""


def redact(text: str) -> str:
    """Remove anything token-like from a message (platform texts may echo request URLs)."""
    return _SECRETISH.sub(lambda m: f"{m.group(1)}=[redacted]" if m.group(1) else "[redacted]", text)


class _RedactUrls(logging.Filter):
    """urllib3 logs request lines (with query strings) at DEBUG: keep tokens out of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactUrls())


# --- classification -------------------------------------------------------------------------------
def graph_body(response: requests.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def classify(
    response: requests.Response, *, platform: str, write: bool, account_id: str | None
) -> ConnectorError:
    """Map a failed Graph answer (error body, or a non-2xx/non-JSON response) to the error tree."""
    status = response.status_code
    name = platform.capitalize()
    body = graph_body(response)
    err = body.get("error") if body else None
    if not isinstance(err, dict):
        text = response.text.strip() if response.content else ""
        if status >= 500 or status in (408, 429) or (status < 400 and body is None):
            retry_after = retry_after_seconds(response)
            if write and (not text or status == 504 or status < 400):
                return AmbiguousError(
                    f"{name} failed after receiving the request (HTTP {status}, no Graph error body)",
                    retry_after=retry_after,
                    platform_code=status,
                )
            if status == 429:
                return RateLimitedError(
                    f"{name} throttled the call (HTTP 429)",
                    retry_after=retry_after,
                    scope="account",
                    platform_code=429,
                )
            return RetryableError(
                f"{name} unavailable (HTTP {status}, non-JSON answer)",
                retry_after=retry_after,
                platform_code=status,
            )
        return PermanentError(f"{name} refused the request (HTTP {status})", platform_code=status)

    code = _int(err.get("code"))
    sub = _int(err.get("error_subcode"))
    message = redact(str(err.get("error_user_msg") or err.get("message") or "")[:300])
    label = f"code {code}" + (f"/{sub}" if sub else "")
    reason = f"{name} error {label}: {message}" if message else f"{name} error {label}"
    pcode = f"{code}/{sub}" if sub else code

    # Subcodes first: IG reuses generic codes (4, 9, -1, -2) with specific meanings.
    if sub == IG_QUOTA_SUBCODE:
        # Not reported here: the connector may replace the default with its configured re-check
        # interval, and the worker records the block from the error itself.
        retry_after = buc_regain_seconds(response.headers) or DEFAULT_IG_QUOTA_BACKOFF
        return RateLimitedError(
            reason, retry_after=retry_after, scope="ig-publish-quota", platform_code=pcode
        )
    if sub == IG_SPAM_SUBCODE:
        return PermanentError(f"{reason} (blocked as possible spam; not retried)", platform_code=pcode)
    if sub in IG_RETRY_SUBCODES:
        return RetryableError(reason, retry_after=retry_after_seconds(response), platform_code=pcode)
    if code in APP_THROTTLE or code in ACCOUNT_THROTTLE or (code is not None and 80000 <= code <= 80099):
        # No default wait here: without a hint the worker picks a block that grows on repeats.
        # The usage headers of this answer were already reported by the response hook.
        scope = "app" if code in APP_THROTTLE else "user" if code == USER_THROTTLE else "account"
        hint = regain_seconds(response.headers) or retry_after_seconds(response)
        return RateLimitedError(reason, retry_after=hint, scope=scope, platform_code=pcode)
    if code in AUTH_CODES or (code is not None and 200 <= code <= 299):
        # A Page token has no refresh grant, and an exchange needs a still-valid token: no refresh helps.
        return AuthError(
            f"{reason} (the account must be reconnected or re-granted)",
            platform_code=pcode,
            refreshable=False,
        )
    if code == 368:
        return RetryableError(
            f"{reason} (temporarily blocked for policy violations: waiting {POLICY_BLOCK_BACKOFF / 3600:.0f} h; "
            "a person should review the account)",
            retry_after=POLICY_BLOCK_BACKOFF,
            platform_code=pcode,
        )
    if code == 506:
        return AmbiguousError(
            f"{reason} (duplicate: the earlier attempt probably published it)", platform_code=pcode
        )
    if code in (1, 2) or (status >= 500 and code not in (100,)):
        retry_after = retry_after_seconds(response)
        if write:
            return AmbiguousError(reason, retry_after=retry_after, platform_code=pcode)
        return RetryableError(reason, retry_after=retry_after, platform_code=pcode)
    if code == 100 and sub == NOT_FOUND_SUBCODE:
        return GraphNotFound(reason, platform_code=pcode)
    if err.get("is_transient") is True:  # IG marks transient errors explicitly
        return RetryableError(reason, retry_after=retry_after_seconds(response), platform_code=pcode)
    return PermanentError(reason, platform_code=pcode)


def container_error(status_code: str, status: str) -> ConnectorError:
    """An IG container that ended in ERROR/EXPIRED: retry with a new container, or give up."""
    if status_code == "EXPIRED":
        return RetryableError("Instagram container expired before publishing; a new one will be created")
    found = re.search(r"\b(2207\d{3})\b", status or "")
    sub = int(found.group(1)) if found else None
    text = redact((status or "")[:300])
    if sub is None or sub in IG_RETRY_SUBCODES:
        return RetryableError(f"Instagram container failed ({text or 'no detail'})", platform_code=sub)
    return PermanentError(f"Instagram could not process the media ({text})", platform_code=sub)
