"""Pluggable platform connectors: a Protocol, one error tree, plain value types, shared helpers.

This package's names (``__all__``, pinned by ``tests/connectors/test_public_surface.py``) are
everything a connector needs, built-in or third-party: a plugin imports ``mcmp.connectors`` (and,
in its tests, ``mcmp.connectors.testing``) and nothing else of ours. Submodules are the built-in connectors' own business and may change.
"""

from mcmp.config import Settings
from mcmp.connectors.base import ConnectorBase
from mcmp.connectors.clients import HttpClients, RequestObserver
from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    LookupIncompleteError,
    PermanentError,
    PublisherError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.http import BaseUrlSession, retry_after_seconds, send
from mcmp.connectors.markers import marker_for, strip_markers
from mcmp.connectors.media import MediaLimits
from mcmp.connectors.protocol import Connector
from mcmp.connectors.signing import (
    FUTURE_SKEW_SECONDS,
    IDEMPOTENCY_HEADER,
    MIN_SECRET_BYTES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE_SECONDS,
    sign,
    signed_headers,
    verify,
)
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
from mcmp.connectors.usage import UsageReport
from mcmp.connectors.usage import report as report_usage

__all__ = [
    "FUTURE_SKEW_SECONDS",
    "IDEMPOTENCY_HEADER",
    "MIN_SECRET_BYTES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "AmbiguousError",
    "AuthError",
    "BaseUrlSession",
    "Connector",
    "ConnectorBase",
    "ConnectorError",
    "Credentials",
    "HttpClients",
    "LookupIncompleteError",
    "MediaItem",
    "MediaLimits",
    "MetricsRef",
    "MetricsSnapshot",
    "PermanentError",
    "PostContent",
    "PublishRequest",
    "PublishResult",
    "PublisherError",
    "RateLimitedError",
    "RequestObserver",
    "RetryableError",
    "Settings",
    "TokenGrant",
    "UsageReport",
    "ValidationError",
    "marker_for",
    "report_usage",
    "retry_after_seconds",
    "send",
    "sign",
    "signed_headers",
    "strip_markers",
    "verify",
]
