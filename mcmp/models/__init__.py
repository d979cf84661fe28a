"""mongoengine documents for the seed schemas (field names as the seed) plus the worker's own.

Collections use Mongoose's default names so the NestJS frontend and this worker share them.
"""

from mcmp.models.analytics_record import AnalyticsRecord, Metrics
from mcmp.models.api_key import ApiKey
from mcmp.models.asset import Asset
from mcmp.models.campaign import Campaign
from mcmp.models.client import BrandSettings, Client, CtaTemplate, PostingWindow
from mcmp.models.delivery import Delivery
from mcmp.models.enums import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    AccountStatus,
    AssetType,
    DeliveryState,
    ErrorClass,
    IntegrationPlatform,
    PostStatus,
    UserRole,
)
from mcmp.models.integration_account import IntegrationAccount
from mcmp.models.post import Post, StatusChange
from mcmp.models.posting_slot import PostingSlot
from mcmp.models.user import OAuthAccount, User

ALL_DOCUMENTS = (
    User,
    Client,
    IntegrationAccount,
    Campaign,
    Post,
    AnalyticsRecord,
    Asset,
    Delivery,
    PostingSlot,
    ApiKey,
)

__all__ = [
    "ACTIVE_STATES",
    "ALL_DOCUMENTS",
    "TERMINAL_STATES",
    "AccountStatus",
    "AnalyticsRecord",
    "ApiKey",
    "Asset",
    "AssetType",
    "BrandSettings",
    "Campaign",
    "Client",
    "CtaTemplate",
    "Delivery",
    "DeliveryState",
    "ErrorClass",
    "IntegrationAccount",
    "IntegrationPlatform",
    "Metrics",
    "OAuthAccount",
    "Post",
    "PostStatus",
    "PostingSlot",
    "PostingWindow",
    "StatusChange",
    "User",
    "UserRole",
]
