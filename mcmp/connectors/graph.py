"""Graph API plumbing shared by the ``facebook`` and ``instagram`` connectors.

* :class:`GraphClient` drives ``facebook-sdk`` 3.1.0 (``facebook.GraphAPI``) without forking it.
  The SDK only knows API versions ≤ 3.1, so the configured version goes into the *path*
  (``graph.request("v21.0/{page}/feed", …)``). The SDK hides HTTP status and headers, so its
  ``session`` is a thin transport that sends through ``mcmp.connectors.http.send`` (same transport
  error semantics as every connector) over a :class:`~mcmp.connectors.http.BaseUrlSession` whose
  response hook records the last response per thread and reports the usage headers.
* :func:`classify` is the one place where a Graph answer becomes an error of
  ``mcmp.connectors.errors`` (both connectors call it; see the table below).
* Usage headers (``X-App-Usage``, ``X-Page-Usage``, ``X-Business-Use-Case-Usage``) are read on
  every response and forwarded to ``mcmp.connectors.usage.report`` (scope ``app`` / ``account``;
  ``used_pct`` is the largest percentage in the header, ``retry_after`` the
  ``estimated_time_to_regain_access`` when Graph gives one). A throttling error's wait comes from
  the same regain times or ``Retry-After``; without any, ``RateLimitedError.hinted`` is False and
  the worker picks a block that grows on repeats (``mcmp.worker.rate_limit``).

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

import json
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import requests

from mcmp.connectors.clients import HttpClients
from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    LookupIncompleteError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from mcmp.connectors.http import retry_after_seconds, send
from mcmp.connectors.types import Credentials, TokenGrant
from mcmp.connectors.usage import UsageReport, report

with warnings.catch_warnings():  # facebook-sdk 3.1.0 has an invalid escape in a regex literal
    warnings.simplefilter("ignore")
    import facebook

PUBLIC_BASE = "https://graph.facebook.com"
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


# --- usage headers ---------------------------------------------------------------------------------
def _json_header(headers: Mapping[str, str], name: str) -> Any:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _max_pct(entry: Mapping[str, Any]) -> float | None:
    values = [
        float(v)
        for k, v in entry.items()
        if k in ("call_count", "total_cputime", "total_time", "acc_id_util_pct")
        and isinstance(v, int | float)
    ]
    return max(values) if values else None


def _regain_minutes(entry: Mapping[str, Any]) -> float:
    value = entry.get("estimated_time_to_regain_access")
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def buc_regain_seconds(headers: Mapping[str, str]) -> float | None:
    """Largest ``estimated_time_to_regain_access`` (minutes) in the BUC header, in seconds."""
    data = _json_header(headers, "X-Business-Use-Case-Usage")
    if not isinstance(data, dict):
        return None
    minutes = [
        _regain_minutes(e)
        for entries in data.values()
        if isinstance(entries, list)
        for e in entries
        if isinstance(e, dict)
    ]
    best = max(minutes, default=0.0)
    return best * 60.0 if best > 0 else None


def page_regain_seconds(headers: Mapping[str, str]) -> float | None:
    """``estimated_time_to_regain_access`` (minutes) of ``X-Page-Usage``, in seconds."""
    data = _json_header(headers, "X-Page-Usage")
    minutes = _regain_minutes(data) if isinstance(data, dict) else 0.0
    return minutes * 60.0 if minutes > 0 else None


def regain_seconds(headers: Mapping[str, str]) -> float | None:
    """How long Graph says the budget stays spent (BUC or Page usage header), when it says so."""
    found = [s for s in (buc_regain_seconds(headers), page_regain_seconds(headers)) if s]
    return max(found) if found else None


def report_usage(platform: str, account_id: str | None, headers: Mapping[str, str]) -> None:
    """Forward ``X-App-Usage`` (scope app), ``X-Page-Usage`` and ``X-Business-Use-Case-Usage``
    (scope account: the Page / IG user), each the largest percentage it carries, with the regain
    time when Graph gives one."""
    app = _json_header(headers, "X-App-Usage")
    if isinstance(app, dict):
        pct = _max_pct(app)
        if pct is not None:
            report(UsageReport(platform, "app", None, used_pct=pct))
    pcts: list[float] = []
    buc = _json_header(headers, "X-Business-Use-Case-Usage")
    if isinstance(buc, dict):
        pcts += [
            p
            for entries in buc.values()
            if isinstance(entries, list)
            for e in entries
            if isinstance(e, dict) and (p := _max_pct(e)) is not None
        ]
    page = _json_header(headers, "X-Page-Usage")
    if isinstance(page, dict) and (p := _max_pct(page)) is not None:
        pcts.append(p)
    if pcts:
        report(
            UsageReport(
                platform, "account", account_id, used_pct=max(pcts), retry_after=regain_seconds(headers)
            )
        )


# --- classification -------------------------------------------------------------------------------
def _body(response: requests.Response) -> dict[str, Any] | None:
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
    body = _body(response)
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


# --- transport --------------------------------------------------------------------------------------
class _SdkTransport:
    """What ``facebook.GraphAPI`` sees as its session: each request goes through ``send``."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session

    def request(
        self, method: str, url: str, timeout: float | None = None, **kwargs: Any
    ) -> requests.Response:
        kwargs.pop("proxies", None)
        if not kwargs.get("files"):
            kwargs.pop("files", None)
        return send(self.session, method, url, timeout=timeout or 15.0, **kwargs)


class Classifier(Protocol):
    def __call__(
        self, response: requests.Response, *, write: bool, account_id: str | None
    ) -> ConnectorError: ...


class GraphClient:
    """A session over the process' platform pool; thread-safe (per-thread capture of the last response)."""

    def __init__(
        self,
        platform: str,
        base_url: str,
        version: str,
        timeout: float,
        classifier: Classifier | None = None,
        *,
        clients: HttpClients,
    ) -> None:
        self.platform = platform
        self.classify: Classifier = classifier or (
            lambda response, *, write, account_id: classify(
                response, platform=platform, write=write, account_id=account_id
            )
        )
        self.version = version.strip("/")
        self.timeout = timeout
        self._local = threading.local()
        self.base_url = (base_url or PUBLIC_BASE).rstrip("/")
        self.session = clients.session(PUBLIC_BASE, self.base_url)
        self.session.hooks["response"].append(self._on_response)
        self._transport = _SdkTransport(self.session)

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.response = response
        report_usage(self.platform, getattr(self._local, "account_id", None), response.headers)

    def call(
        self,
        token: str | None,
        path: str,
        *,
        account_id: str | None,
        args: dict[str, Any] | None = None,
        post_args: dict[str, Any] | None = None,
        method: str | None = None,
        write: bool = False,
        files: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``GET``/``POST`` ``/{version}/{path}``; returns the JSON object or raises a classified error.

        ``files`` sends ``post_args`` and the files as ``multipart/form-data`` (a video chunk).
        """
        return self._request(
            token,
            f"{self.version}/{path.lstrip('/')}",
            account_id=account_id,
            args=args,
            post_args=post_args,
            method=method,
            write=write,
            files=files,
        )

    def next_page(self, token: str, url: str, *, account_id: str | None) -> dict[str, Any] | None:
        """``GET`` a ``paging.next`` URL as Graph wrote it, whatever its style (cursor or time based).

        Only Graph's own host (``graph.facebook.com`` or the configured base URL's host) is
        followed, always through the configured base URL and with our token (one in the URL is
        dropped); ``None`` for any other URL, which the caller must treat as "cannot continue".
        """
        parts = urlsplit(url)
        hosts = {urlsplit(PUBLIC_BASE).netloc, urlsplit(self.base_url).netloc}
        if parts.scheme not in ("http", "https") or parts.netloc not in hosts or not parts.path.strip("/"):
            return None
        path = parts.path.lstrip("/")
        if not _VERSIONED.match(path):
            path = f"{self.version}/{path}"
        args = {
            k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items() if k != "access_token"
        }
        return self._request(token, path, account_id=account_id, args=args)

    def _request(
        self,
        token: str | None,
        full_path: str,
        *,
        account_id: str | None,
        args: dict[str, Any] | None = None,
        post_args: dict[str, Any] | None = None,
        method: str | None = None,
        write: bool = False,
        files: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        graph = facebook.GraphAPI(access_token=token, timeout=self.timeout, session=self._transport)
        self._local.response = None
        self._local.account_id = account_id
        result: Any = None
        try:
            result = graph.request(
                full_path,
                args=dict(args or {}),
                post_args=post_args,
                files=files,
                method=method,
            )
        except ConnectorError:
            raise  # transport failure, already mapped by mcmp.connectors.http.send
        except Exception:  # GraphAPIError, or the SDK tripping over a non-JSON body
            result = None
        response: requests.Response | None = self._local.response
        if response is None:
            raise (AmbiguousError if write else RetryableError)(
                f"{self.platform}: no answer from the Graph API"
            )
        if response.status_code >= 400 or not isinstance(result, dict) or "error" in result:
            raise self.classify(response, write=write, account_id=account_id)
        return result


_VERSIONED = re.compile(r"^v\d+\.\d+/")


def scan_edge(
    client: GraphClient,
    token: str,
    path: str,
    args: dict[str, Any],
    *,
    account_id: str | None,
    since: datetime,
    max_pages: int,
    reached_start: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """An edge newest first, page by page, for a reconciliation lookup back to ``since``.

    Every ``paging.next`` is followed as Graph wrote it: cursor paging (``after``) and time-based
    paging (``until``/``since``, no cursors) alike. The lookup ends only when Graph gives no
    ``next`` or ``reached_start`` says a page went back past ``since``. Anything else — the page
    budget spent, a ``next`` to another host, a later page failing (other than throttling or a
    token problem, which keep their meaning) — is :class:`LookupIncompleteError`: "not found"
    after a partial read would be a guess, and publishing on a guess makes duplicates.
    """
    scanned = 0
    result = client.call(token, path, account_id=account_id, args=args)
    for _ in range(max_pages):
        data = [item for item in result.get("data") or [] if isinstance(item, dict)]
        scanned += len(data)
        yield from data
        if reached_start is not None and reached_start(data):
            return
        next_url = (result.get("paging") or {}).get("next")
        if not next_url:
            return
        try:
            page = client.next_page(token, str(next_url), account_id=account_id)
        except (RateLimitedError, AuthError):
            raise
        except ConnectorError as exc:
            raise LookupIncompleteError(
                client.platform, scanned, since, reason=f"a later page failed ({exc.message})"
            ) from exc
        if page is None:
            raise LookupIncompleteError(
                client.platform, scanned, since, reason="the next page is not on the Graph API host"
            )
        result = page
    raise LookupIncompleteError(client.platform, scanned, since)


BATCH_LIMIT = 50  # Graph answers at most 50 requests per batch


def _sub_response(item: Mapping[str, Any]) -> requests.Response:
    """One batch item as a ``requests.Response`` so :func:`classify` reads it like any answer."""
    response = requests.Response()
    response.status_code = int(item.get("code") or 500)
    response._content = str(item.get("body") or "").encode()
    for header in item.get("headers") or []:
        if isinstance(header, dict) and header.get("name"):
            response.headers[str(header["name"])] = str(header.get("value", ""))
    response.headers.setdefault("Content-Type", "application/json")
    return response


def batch_get(
    client: GraphClient, token: str, relative_urls: list[str], *, account_id: str | None
) -> list[dict[str, Any] | ConnectorError]:
    """Meta's batch request: up to 50 GETs in one HTTP call (``POST /{version}/`` ``batch=[…]``).

    Each item comes back as its JSON object or as the classified error of that item alone (a
    ``null`` item — Meta's answer for a sub-request that did not complete — is Retryable). Meta
    counts every sub-request against the rate limits, so a batch saves round trips, not budget.
    """
    if not relative_urls:
        return []
    if len(relative_urls) > BATCH_LIMIT:
        raise ValueError(f"a Graph batch holds at most {BATCH_LIMIT} requests")
    graph = facebook.GraphAPI(access_token=token, timeout=client.timeout, session=client._transport)
    client._local.response = None
    client._local.account_id = account_id
    payload = json.dumps([{"method": "GET", "relative_url": url} for url in relative_urls])
    result: Any = None
    try:
        result = graph.request(f"{client.version}/", post_args={"batch": payload, "include_headers": "true"})
    except ConnectorError:
        raise
    except Exception:
        result = None
    response: requests.Response | None = client._local.response
    if response is None:
        raise RetryableError(f"{client.platform}: no answer from the Graph API")
    if response.status_code >= 400 or not isinstance(result, list):
        raise client.classify(response, write=False, account_id=account_id)
    out: list[dict[str, Any] | ConnectorError] = []
    for item in result:
        if not isinstance(item, dict):
            out.append(RetryableError(f"{client.platform}: batch item did not complete"))
            continue
        sub = _sub_response(item)
        report_usage(client.platform, account_id, sub.headers)
        body = _body(sub)
        if sub.status_code >= 400 or body is None or "error" in body:
            out.append(client.classify(sub, write=False, account_id=account_id))
        else:
            out.append(body)
    return out


def exchange_token(client: GraphClient, app_id: str, app_secret: str, credentials: Credentials) -> TokenGrant:
    """``GET /{version}/oauth/access_token?grant_type=fb_exchange_token`` (Facebook Login).

    Only a definite revocation (Graph 190/102) is an ``AuthError``; network errors, 5xx and
    throttling stay Retryable/RateLimited so a blip never disconnects an account. A token that
    does not expire (a Page token) comes back without ``expires_in`` → ``expires_at=None``.
    """
    args = {
        "grant_type": "fb_exchange_token",
        "client_id": app_id,
        "client_secret": app_secret,
        "fb_exchange_token": credentials.access_token,
    }
    try:
        result = client.call(None, "oauth/access_token", account_id=credentials.account_id, args=args)
    except AuthError as exc:
        if str(exc.platform_code).split("/")[0] in ("190", "102"):
            raise
        raise RetryableError(exc.message, platform_code=exc.platform_code) from None
    except AmbiguousError as exc:  # repeating an exchange is harmless
        raise RetryableError(exc.message, platform_code=exc.platform_code) from None
    token = result.get("access_token")
    if not token:
        raise RetryableError(f"{client.platform}: token exchange answered without an access_token")
    expires_in = result.get("expires_in")
    expires_at = (
        datetime.now(UTC) + timedelta(seconds=int(expires_in))
        if isinstance(expires_in, int | float)
        else None
    )
    return TokenGrant(access_token=str(token), expires_at=expires_at)


def _metric_value(entry: Mapping[str, Any]) -> int | None:
    values = entry.get("values") or []
    if not values or not isinstance(values[-1], dict):
        return None
    value = values[-1].get("value")
    if isinstance(value, dict):  # breakdown metrics: the total
        return int(sum(v for v in value.values() if isinstance(v, int | float)))
    return int(value) if isinstance(value, int | float) else None


class InsightsReader:
    """``GET /{object}/insights?metric=…`` mapped to seed names, tolerant of rejected metrics.

    Graph fails the whole call when one metric is invalid or deprecated, so on such an error the
    metrics are asked one by one; the rejected ones are remembered (per process) and skipped.
    """

    def __init__(self, client: GraphClient, metrics: Mapping[str, str]) -> None:
        self.client = client
        self.metrics = dict(metrics)
        self.rejected: set[str] = set()
        self._lock = threading.Lock()

    def relative_url(self, object_id: str) -> str | None:
        """The insights path for a batch item, asking only metrics not known to be rejected."""
        with self._lock:
            names = [name for name in self.metrics.values() if name not in self.rejected]
        return f"{object_id}/insights?metric={','.join(names)}" if names else None

    def parse(self, data: list[Any]) -> dict[str, int]:
        """Seed-named metrics from an insights ``data`` list (absent when not reported)."""
        by_name = {str(e.get("name")): e for e in data if isinstance(e, dict)}
        out = {}
        for seed, name in self.metrics.items():
            value = _metric_value(by_name[name]) if name in by_name else None
            if value is not None:
                out[seed] = value
        return out

    def read(self, creds: Credentials, object_id: str) -> dict[str, int]:
        with self._lock:
            wanted = {seed: name for seed, name in self.metrics.items() if name not in self.rejected}
        if not wanted:
            return {}
        try:
            data = self._call(creds, object_id, list(wanted.values()))
        except GraphNotFound:
            raise
        except PermanentError:
            data = []
            for name in wanted.values():
                try:
                    data += self._call(creds, object_id, [name])
                except GraphNotFound:
                    raise
                except PermanentError as exc:
                    if "metric" in exc.message.lower():
                        with self._lock:
                            self.rejected.add(name)
        by_name = {str(e.get("name")): e for e in data if isinstance(e, dict)}
        out = {}
        for seed, name in wanted.items():
            value = _metric_value(by_name[name]) if name in by_name else None
            if value is not None:
                out[seed] = value
        return out

    def _call(self, creds: Credentials, object_id: str, names: list[str]) -> list[dict[str, Any]]:
        result = self.client.call(
            creds.access_token,
            f"{object_id}/insights",
            account_id=creds.account_id,
            args={"metric": ",".join(names)},
        )
        return list(result.get("data") or [])


__all__ = [
    "BATCH_LIMIT",
    "InsightsReader",
    "batch_get",
    "exchange_token",
    "PUBLIC_BASE",
    "GraphClient",
    "GraphNotFound",
    "buc_regain_seconds",
    "page_regain_seconds",
    "regain_seconds",
    "classify",
    "container_error",
    "redact",
    "report_usage",
    "scan_edge",
]


def parse_graph_time(value: Any) -> datetime | None:
    """A Graph timestamp (``2026-11-25T04:00:00+0000``) as an aware UTC datetime, or None."""
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
    except ValueError:
        return None
