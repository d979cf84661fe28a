"""The ``linkedin`` platform: organic posts via LinkedIn's versioned REST API."""

from __future__ import annotations

from mcmp.connectors.linkedin.classify import classify
from mcmp.connectors.linkedin.connector import LinkedInConnector

__all__ = ["LinkedInConnector", "classify"]
