"""The frontend's enums (docs/frontend-contract.md) and the worker's own delivery states."""

from __future__ import annotations

from enum import StrEnum


class UserRole(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    CREATOR = "creator"
    CLIENT_OWNER = "clientOwner"
    CLIENT_VIEWER = "clientViewer"


class IntegrationPlatform(StrEnum):
    """The seed's platforms. Third-party connectors may add more names (see mcmp.connectors.registry)."""

    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    LINKEDIN = "linkedin"
    GOOGLE_BUSINESS = "google-business"
    WEBSITE = "website"


class AccountStatus(StrEnum):
    CONNECTED = "connected"
    EXPIRED = "expired"
    ERROR = "error"


class PostStatus(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    PUBLISHED = "published"
    FAILED = "failed"


class AssetType(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    FILE = "file"


class DeliveryState(StrEnum):
    """Lifecycle of one (post, platform) delivery; transitions live in mcmp.worker.publishing.delivery_states."""

    PENDING = "pending"  # waiting for dueAt
    QUEUED = "queued"  # claimed by a dispatcher, a publish task is on the broker
    IN_FLIGHT = "in_flight"  # a worker holds the lease and may be calling the platform
    WAITING_AUTH = "waiting_auth"  # account must be reconnected; no attempts consumed
    PUBLISHED = "published"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({DeliveryState.PUBLISHED, DeliveryState.FAILED, DeliveryState.CANCELLED})
ACTIVE_STATES = frozenset(
    {DeliveryState.PENDING, DeliveryState.QUEUED, DeliveryState.IN_FLIGHT, DeliveryState.WAITING_AUTH}
)


class ErrorClass(StrEnum):
    """What the worker must do about a failure (mirrors the connector error tree)."""

    RETRYABLE = "retryable"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    PERMANENT = "permanent"
    AMBIGUOUS = "ambiguous"
