"""Signed-webhook publishing to a client's website.

Contract with the receiving site (documented in docs/connectors.md):
* ``POST <metadata.webhookUrl>`` with the post as JSON (``media``: one object per ``assetUrls``
  entry, in order: ``url``, ``type`` image | video | file, ``altText``, ``mimeType``,
  ``sizeBytes``, ``durationSeconds``, ``width``, ``height``; ``null`` where unknown), headers
  ``Idempotency-Key`` (stable per delivery), ``X-MCMP-Timestamp`` and ``X-MCMP-Signature`` (see
  ``signing``: method, path + query, key, timestamp and body); the secret is the account's
  ``accessToken``, at least 16 bytes (a shorter one fails the delivery before any call). A 2xx
  answer carries ``{"id": ..., "url": ...}``.
* ``GET <metadata.webhookUrl>?idempotency_key=<key>`` (signed the same way, empty body, same
  ``Idempotency-Key`` header) returns the post created with that key (200) or 404 — used to
  reconcile after an ambiguous outcome.
* The URL is fetched only through :class:`mcmp.connectors.tenant_fetch.TenantFetcher`: it must
  resolve to a public address (or one in ``MCMP_FETCH_ALLOWED_NETWORKS``); neither request follows
  a redirect (it would carry the signature headers to another address): a 3xx is the site
  refusing. An answer is at most 1 MB, read uncompressed (``Accept-Encoding: identity``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.http import retry_after_seconds
from mcmp.connectors.signing import secret_problem, signed_headers
from mcmp.connectors.tenant_fetch import FetchResponse, TenantFetcher
from mcmp.connectors.types import Credentials, PostContent, PublishRequest, PublishResult
from mcmp.connectors.usage import UsageReport, report

MAX_BODY_CHARS = 1_000_000
WHAT = "account.metadata.webhookUrl"


def webhook_url(credentials: Credentials) -> str:
    url = credentials.metadata.get("webhookUrl") or credentials.metadata.get("webhook_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationError("account.metadata.webhookUrl", "must be an http(s) URL of the site's webhook")
    return url


def webhook_secret(credentials: Credentials) -> str:
    """The signing secret, refused before any call when too short to resist guessing."""
    problem = secret_problem(credentials.access_token or "")
    if problem:
        raise ValidationError(
            "account.accessToken", f"{problem} (set a longer secret on the site and reconnect the account)"
        )
    return credentials.access_token


def lookup_url(credentials: Credentials, idempotency_key: str) -> str:
    """The reconciliation URL: the query is built here so the signed target is the one sent."""
    return str(httpx.URL(webhook_url(credentials)).copy_merge_params({"idempotency_key": idempotency_key}))


def _reason(response: FetchResponse) -> str:
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(data, dict):
        message = data.get("message") or data.get("error") or data.get("detail")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return f"HTTP {response.status_code}: {str(message)[:300]}"
    return f"HTTP {response.status_code}"


def classify(response: FetchResponse, *, write: bool, account_id: str | None) -> ConnectorError:
    """The one place where a webhook HTTP answer becomes an error class."""
    status = response.status_code
    reason = _reason(response)
    if status in (401, 403):
        return AuthError(
            f"website rejected the webhook credentials ({reason})", platform_code=status, refreshable=False
        )
    if status == 429:
        retry_after = retry_after_seconds(response)
        report(UsageReport("website", "account", account_id, retry_after=retry_after))
        return RateLimitedError(
            f"website throttled ({reason})", retry_after=retry_after, platform_code=status
        )
    if status in (408, 425) or status >= 500:
        retry_after = retry_after_seconds(response)
        if write and status != 503:
            return AmbiguousError(
                f"website failed after receiving the post ({reason})", retry_after=retry_after
            )
        return RetryableError(
            f"website unavailable ({reason})", retry_after=retry_after, platform_code=status
        )
    if 300 <= status < 400:
        return PermanentError(
            f"website answered with a redirect ({reason}); signed webhook requests never follow one: "
            "set metadata.webhookUrl to the final address",
            platform_code=status,
        )
    return PermanentError(f"website refused the post ({reason})", platform_code=status)


class WebhookPublisher:
    """Publishes through the signed webhook; used by the website connector for mode ``webhook``."""

    def __init__(self, fetcher: TenantFetcher, timeout: float) -> None:
        self.fetcher = fetcher
        self.timeout = timeout

    def validate(self, content: PostContent, credentials: Credentials) -> None:
        webhook_url(credentials)
        if not credentials.secrets_withheld:
            webhook_secret(credentials)
        if len(content.body) > MAX_BODY_CHARS:
            raise ValidationError("body", f"longer than {MAX_BODY_CHARS} characters")

    def _payload(self, request: PublishRequest) -> bytes:
        content = request.content
        doc: dict[str, Any] = {
            "idempotencyKey": request.idempotency_key,
            "postId": content.post_id,
            "clientId": content.client_id,
            "title": content.title,
            "body": content.body,
            "link": content.link,
            "media": [
                {
                    "url": m.url,
                    "type": m.kind,
                    "altText": m.alt_text,
                    "mimeType": m.mime_type,
                    "sizeBytes": m.size_bytes,
                    "durationSeconds": m.duration_seconds,
                    "width": m.width,
                    "height": m.height,
                }
                for m in content.media
            ],
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    def _result(self, response: FetchResponse) -> PublishResult:
        try:
            data = response.json()
        except ValueError:
            raise AmbiguousError("website answered 2xx without a JSON body") from None
        post_id = data.get("id") if isinstance(data, dict) else None
        if post_id is None:
            raise AmbiguousError("website answered 2xx without an id")
        return PublishResult(str(post_id), data.get("url"), datetime.now(UTC))

    def publish(self, request: PublishRequest) -> PublishResult:
        creds = request.credentials
        secret, url = webhook_secret(creds), webhook_url(creds)
        body = self._payload(request)
        headers = {
            "Content-Type": "application/json",
            **signed_headers(secret, "POST", url, request.idempotency_key, body),
        }
        response = self.fetcher.request(
            "POST", url, what=WHAT, content=body, headers=headers, read_timeout=self.timeout
        )
        if 200 <= response.status_code < 300:
            return self._result(response)
        raise classify(response, write=True, account_id=creds.account_id)

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        creds = request.credentials
        secret, url = webhook_secret(creds), lookup_url(creds, request.idempotency_key)
        response = self.fetcher.request(
            "GET",
            url,
            what=WHAT,
            headers=signed_headers(secret, "GET", url, request.idempotency_key, b""),
            read_timeout=self.timeout,
            follow_redirects=False,  # the signature headers must not reach another address
        )
        if response.status_code == 404:
            return None
        if 200 <= response.status_code < 300:
            return self._result(response)
        raise classify(response, write=False, account_id=creds.account_id)
