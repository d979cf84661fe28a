"""The ``instagram`` platform: feed images, reels and carousels via the Graph API container flow."""

from __future__ import annotations

from mcmp.connectors.instagram.classify import classify, container_error
from mcmp.connectors.instagram.connector import InstagramConnector

__all__ = ["InstagramConnector", "classify", "container_error"]
