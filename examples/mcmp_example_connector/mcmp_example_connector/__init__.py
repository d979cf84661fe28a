"""A third-party connector: posts to any HTTP endpoint that speaks the MCMP signed webhook.

It is its own installable package, found only through its entry point, and imports nothing of
MCMP Publisher but ``mcmp.connectors`` (the public surface a plugin is promised); its tests add
only ``mcmp.connectors.testing``, the conformance suite every built-in connector passes too.
It subclasses ``ConnectorBase`` for the hooks' defaults and takes its HTTP session from the
clients the registry hands it, so the worker times its calls like any platform's.
``metadata.reject`` makes it refuse posts permanently, which tests use to produce a partial failure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

import requests

from mcmp.connectors import (
    MIN_SECRET_BYTES,
    AmbiguousError,
    AuthError,
    ConnectorBase,
    ConnectorError,
    Credentials,
    HttpClients,
    MetricsRef,
    MetricsSnapshot,
    PermanentError,
    PostContent,
    PublishRequest,
    PublishResult,
    RateLimitedError,
    RetryableError,
    Settings,
    TokenGrant,
    UsageReport,
    ValidationError,
    report_usage,
    retry_after_seconds,
    send,
    signed_headers,
)

MAX_BODY_CHARS = 280


class EchoConnector(ConnectorBase):
    platform = "example-echo"

    def __init__(
        self, settings: Settings, *, clients: HttpClients | None = None, timeout: float = 5.0
    ) -> None:
        super().__init__(settings, clients=clients)
        self.session = self.clients.session()
        self.timeout = timeout

    def validate(self, content: PostContent, credentials: Credentials) -> None:
        if credentials.metadata.get("reject"):
            raise ValidationError("account.metadata.reject", "this echo account refuses posts")
        if len(credentials.access_token.encode()) < MIN_SECRET_BYTES:
            raise ValidationError(
                "account.accessToken", f"the secret is shorter than {MIN_SECRET_BYTES} bytes"
            )
        if len(content.body) > MAX_BODY_CHARS:
            raise ValidationError("body", f"longer than {MAX_BODY_CHARS} characters")

    def _url(self, credentials: Credentials) -> str:
        return str(credentials.metadata["webhookUrl"])

    def _classify(self, response: requests.Response, *, write: bool, account_id: str) -> ConnectorError:
        """The one place where an echo endpoint's answer becomes an error class."""
        status = response.status_code
        if status in (401, 403):
            return AuthError(f"echo endpoint rejected the signature ({status})", platform_code=status)
        if status == 429:
            wait = retry_after_seconds(response)
            report_usage(UsageReport(self.platform, "account", account_id, retry_after=wait))
            return RateLimitedError("echo endpoint throttled", retry_after=wait, platform_code=status)
        if status >= 500:
            if write:
                return AmbiguousError(f"echo endpoint failed with {status} after receiving the post")
            return RetryableError(f"echo endpoint failed with {status}", platform_code=status)
        return PermanentError(f"echo endpoint refused the post ({status})", platform_code=status)

    def publish(self, request: PublishRequest) -> PublishResult:
        content = request.content
        body = json.dumps({"title": content.title, "body": content.body, "postId": content.post_id}).encode()
        url = self._url(request.credentials)
        headers = {
            "Content-Type": "application/json",
            **signed_headers(request.credentials.access_token, "POST", url, request.idempotency_key, body),
        }
        response = send(
            self.session, "POST", url, timeout=self.timeout, data=body, headers=headers, allow_redirects=False
        )
        if response.status_code >= 300:
            raise self._classify(response, write=True, account_id=request.credentials.account_id)
        return PublishResult(str(response.json()["id"]), None, datetime.now(UTC))

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        key = request.idempotency_key
        url = f"{self._url(request.credentials)}?{urlencode({'idempotency_key': key})}"
        response = send(
            self.session,
            "GET",
            url,
            timeout=self.timeout,
            headers=signed_headers(request.credentials.access_token, "GET", url, key, b""),
            allow_redirects=False,  # signature headers never go to another address
        )
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise self._classify(response, write=False, account_id=request.credentials.account_id)
        return PublishResult(str(response.json()["id"]), None, None)

    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        return TokenGrant(credentials.access_token)  # a signing secret does not expire

    def metrics_cost(self, credentials: Credentials, count: int) -> int:
        return 0  # fetch_metrics makes no call: the analytics refresh needs no budget for it

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        return [MetricsSnapshot(r.platform_post_id, {}) for r in refs]
