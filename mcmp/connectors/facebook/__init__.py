"""The ``facebook`` platform: Page posts (text, link, photos) through the Graph API via facebook-sdk."""

from __future__ import annotations

from mcmp.connectors.facebook.classify import classify
from mcmp.connectors.facebook.connector import FacebookConnector

__all__ = ["FacebookConnector", "classify"]
