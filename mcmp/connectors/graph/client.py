"""The Graph client shared by the ``facebook`` and ``instagram`` connectors, and its paging helpers.

:class:`GraphClient` drives ``facebook-sdk`` 3.1.0 (``facebook.GraphAPI``) without forking it.
The SDK only knows API versions ≤ 3.1, so the configured version goes into the *path*
(``graph.request("v21.0/{page}/feed", …)``). The SDK hides HTTP status and headers, so its
``session`` is a thin transport that sends through ``mcmp.connectors.http.send`` (same transport
error semantics as every connector) over the session the connector's ``HttpClients`` builds,
whose response hook records the last response per thread and reports the usage headers.
"""

from __future__ import annotations

import json
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
    RateLimitedError,
    RetryableError,
)
from mcmp.connectors.graph.classify import classify, graph_body
from mcmp.connectors.graph.usage import report_usage
from mcmp.connectors.http import send
from mcmp.connectors.types import Credentials, TokenGrant

with warnings.catch_warnings():  # facebook-sdk 3.1.0 has an invalid escape in a regex literal
    warnings.simplefilter("ignore")
    import facebook

PUBLIC_BASE = "https://graph.facebook.com"


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
        body = graph_body(sub)
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
