"""The small Protocol every platform connector implements (built-in or third-party).

A connector is constructed with the process :class:`config.Settings` and is reused across
calls; it must be thread-safe. Besides its five methods it declares three hooks the worker reads;
:class:`~mcmp.connectors.base.ConnectorBase` gives each a default (docs/connectors.md). It receives and returns the plain values of ``mcmp.connectors.types``
and raises only the errors of ``mcmp.connectors.errors`` (its ``classify`` step is the one place
where raw platform errors become meaning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from mcmp.connectors.media import MediaLimits
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

    # --- hooks (defaults: ConnectorBase) -----------------------------------------------------------
    @property
    def media_limits(self) -> MediaLimits | None:
        """Media rules checked before any platform call; None: the reference table, else none."""

    @property
    def media_limits_by_mode(self) -> Mapping[str, MediaLimits | None]:
        """Media rules per account mode (shown by ``mcmp connectors``); empty: ``media_limits``."""

    def metrics_cost(self, credentials: Credentials, count: int) -> int:
        """Platform calls one ``fetch_metrics`` of ``count`` posts costs (sizes analytics batches)."""
