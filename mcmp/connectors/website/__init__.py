"""The ``website`` platform: a client's own site, reached by signed webhook (default) or WordPress.

The account's ``metadata.mode`` picks the variant: ``webhook`` (default) or ``wordpress``.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcmp.config import Settings
from mcmp.connectors.base import ConnectorBase
from mcmp.connectors.clients import HttpClients
from mcmp.connectors.errors import PermanentError
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
from mcmp.connectors.website.webhook import WebhookPublisher
from mcmp.connectors.website.wordpress import MEDIA_LIMITS as WORDPRESS_MEDIA_LIMITS
from mcmp.connectors.website.wordpress import WordPressPublisher


class WebsiteConnector(ConnectorBase):
    """Publishes to a client's website; secrets there do not expire (no refresh, no metrics)."""

    platform = "website"
    # The rules depend on the account's mode: a webhook receiver takes any media (its own rules).
    media_limits_by_mode: dict[str, MediaLimits | None] = {
        "webhook": None,
        "wordpress": WORDPRESS_MEDIA_LIMITS,
    }

    def __init__(self, settings: Settings, *, clients: HttpClients | None = None) -> None:
        super().__init__(settings, clients=clients)
        # Every URL of this platform is the tenant's: all of them go through the guarded fetcher.
        self.fetcher = self.clients.tenant_fetcher()
        self.webhook = WebhookPublisher(self.fetcher, settings.website.timeout_seconds)
        self.wordpress = WordPressPublisher(self.fetcher, settings.website.timeout_seconds)

    def _variant(self, credentials: Credentials) -> WebhookPublisher | WordPressPublisher:
        mode = str(credentials.metadata.get("mode", "webhook"))
        if mode == "webhook":
            return self.webhook
        if mode == "wordpress":
            return self.wordpress
        raise PermanentError(f"account.metadata.mode: unsupported website mode {mode!r}")

    def validate(self, content: PostContent, credentials: Credentials) -> None:
        self._variant(credentials).validate(content, credentials)

    def publish(self, request: PublishRequest) -> PublishResult:
        return self._variant(request.credentials).publish(request)

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        return self._variant(request.credentials).find_published(request)

    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        # Webhook secrets and application passwords do not expire: nothing to refresh.
        return TokenGrant(access_token=credentials.access_token, expires_at=None)

    def metrics_cost(self, credentials: Credentials, count: int) -> int:
        return 0  # no platform call

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        # A website has no platform metrics; the seed allows metrics to be absent.
        return [MetricsSnapshot(ref.platform_post_id, {}) for ref in refs]
