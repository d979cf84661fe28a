"""A third-party connector: posts to any HTTP endpoint that speaks the MCMP signed webhook.

It lives outside the core packages and is found only through its entry point; it uses just the
public connector contracts (``mcmp.connectors.errors``, ``mcmp.connectors.types``). ``metadata.reject``
makes it refuse posts permanently, which tests use to produce a partial failure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from mcmp.connectors import IDEMPOTENCY_HEADER, signed_headers
from mcmp.connectors.errors import AmbiguousError, AuthError, PermanentError, RetryableError, ValidationError
from mcmp.connectors.types import (
    Credentials,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)


class EchoConnector:
    platform = "example-echo"

    def __init__(self, settings: Any) -> None:
        self.session = requests.Session()

    def validate(self, content: PostContent, credentials: Credentials) -> None:
        if credentials.metadata.get("reject"):
            raise ValidationError("account.metadata.reject", "this echo account refuses posts")
        if len(content.body) > 280:
            raise ValidationError("body", "longer than 280 characters")

    def _url(self, credentials: Credentials) -> str:
        return str(credentials.metadata["webhookUrl"])

    def publish(self, request: PublishRequest) -> PublishResult:
        body = json.dumps(
            {"title": request.content.title, "body": request.content.body, "postId": request.content.post_id}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: request.idempotency_key,
            **signed_headers(request.credentials.access_token, body),
        }
        try:
            response = self.session.post(
                self._url(request.credentials), data=body, headers=headers, timeout=5
            )
        except requests.RequestException:
            raise AmbiguousError("no answer from the echo endpoint") from None
        if response.status_code in (401, 403):
            raise AuthError("echo endpoint rejected the signature")
        if response.status_code >= 500:
            raise AmbiguousError(f"echo endpoint failed with {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(f"echo endpoint refused the post ({response.status_code})")
        return PublishResult(str(response.json()["id"]), None, datetime.now(UTC))

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        headers = signed_headers(request.credentials.access_token, b"")
        try:
            response = self.session.get(
                self._url(request.credentials),
                headers=headers,
                params={"idempotency_key": request.idempotency_key},
                timeout=5,
            )
        except requests.RequestException:
            raise RetryableError("echo lookup failed") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RetryableError(f"echo lookup failed with {response.status_code}")
        return PublishResult(str(response.json()["id"]), None, None)

    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        return TokenGrant(credentials.access_token)

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        return [MetricsSnapshot(r.platform_post_id, {}) for r in refs]
