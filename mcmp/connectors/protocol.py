"""The small Protocol every platform connector implements (built-in or third-party).

A connector is constructed with the process :class:`config.Settings` and is reused across
calls; it must be thread-safe. It receives and returns the plain values of ``mcmp.connectors.types``
and raises only the errors of ``mcmp.connectors.errors`` (its ``classify`` step is the one place
where raw platform errors become meaning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from mcmp.connectors.types import (
    Credentials,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)


@runtime_checkable
class Connector(Protocol):
    platform: str

    def validate(self, content: PostContent, credentials: Credentials) -> None:
        """Raise ``ValidationError`` if the platform would refuse this post (no network call)."""

    def publish(self, request: PublishRequest) -> PublishResult:
        """Publish once. Must not retry a request that may have reached the platform."""

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """After an ambiguous outcome: the post this delivery created, or None if there is none."""

    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        """Obtain a fresh access token; ``AuthError`` only when the grant is definitely revoked."""

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        """Current metrics of published posts, mapped to the seed's metric names."""
