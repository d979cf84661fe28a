"""Pluggable platform connectors: a Protocol, one error tree, plain value types, a registry."""

from connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    PublisherError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from connectors.protocol import Connector
from connectors.types import (
    Credentials,
    MediaItem,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)

__all__ = [
    "AmbiguousError",
    "AuthError",
    "Connector",
    "ConnectorError",
    "Credentials",
    "MediaItem",
    "MetricsRef",
    "MetricsSnapshot",
    "PermanentError",
    "PostContent",
    "PublishRequest",
    "PublishResult",
    "PublisherError",
    "RateLimitedError",
    "RetryableError",
    "TokenGrant",
    "ValidationError",
]
