"""The ``google-business`` platform (module ``google_business``): Business Profile local posts."""

from __future__ import annotations

from mcmp.connectors.google_business.classify import classify
from mcmp.connectors.google_business.connector import GoogleBusinessConnector

__all__ = ["GoogleBusinessConnector", "classify"]
