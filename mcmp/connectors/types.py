"""Plain frozen values passed to and from connectors — never mongoengine documents.

Connectors can therefore be tested and reused without a database. ``Credentials`` hides its
secrets from ``repr`` so a logged request never shows a token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Credentials:
    """Decrypted credentials of one IntegrationAccount, alive only for the duration of a call."""

    account_id: str
    platform: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    external_account_id: str | None = None
    account_name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Built for validation ahead of an attempt (readiness, the API's retry checks): no token was
    # decrypted, so ``validate`` must not judge the token itself (an empty one is not "too short").
    secrets_withheld: bool = False


@dataclass(frozen=True)
class MediaItem:
    """One media attachment. ``kind`` is image | video | file (Asset.type), ``None`` if unknown.

    ``duration_seconds``, ``width`` and ``height`` (as displayed, rotation applied) come from a
    video's MP4 header when it could be read; ``None`` means unknown, never "zero".
    """

    url: str
    kind: str | None = None
    alt_text: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None

    @property
    def aspect_ratio(self) -> float | None:
        """Width / height as displayed, when both are known."""
        if self.width and self.height:
            return self.width / self.height
        return None


@dataclass(frozen=True)
class PostContent:
    """What to publish, platform-neutral (from the seed's Post)."""

    post_id: str
    client_id: str
    title: str
    body: str
    media: tuple[MediaItem, ...] = ()
    link: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishRequest:
    """One attempt to publish ``content`` with ``credentials``.

    ``idempotency_key`` is stable for the delivery across attempts (use it as a marker, slug or
    header so reconciliation can find the post); ``attempt_started_at`` bounds the lookup window.
    """

    delivery_id: str
    idempotency_key: str
    attempt_id: str
    attempt_started_at: datetime
    content: PostContent
    credentials: Credentials
    first_attempt_at: datetime | None = None
    keep_alive: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def still_working(self) -> None:
        """Call between the steps of a long publish (a video's upload, its processing).

        The worker keeps this attempt's claim on the delivery alive, so it is not handed to
        another worker while a live one is busy; it raises when this attempt no longer owns the
        delivery, so the long work stops before it could create a second post.
        """
        if self.keep_alive is not None:
            self.keep_alive()


@dataclass(frozen=True)
class PublishResult:
    platform_post_id: str
    url: str | None = None
    published_at: datetime | None = None


@dataclass(frozen=True)
class TokenGrant:
    """The outcome of a refresh. ``refresh_token`` is None when the platform did not replace it."""

    access_token: str = field(repr=False)
    expires_at: datetime | None = None
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MetricsRef:
    """A published post whose metrics are wanted."""

    post_id: str
    platform_post_id: str


@dataclass(frozen=True)
class MetricsSnapshot:
    """Metrics in the seed's vocabulary; a metric the platform does not report is absent."""

    platform_post_id: str
    metrics: Mapping[str, int]
    deleted: bool = False
