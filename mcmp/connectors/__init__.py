"""Pluggable platform connectors: a Protocol, one error tree, plain value types, a registry."""

from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    PublisherError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.protocol import Connector
from mcmp.connectors.types import (
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
