"""The HTTP sessions and tenant fetchers of one connector, handed to it when it is built.

The registry builds an :class:`HttpClients` per connector carrying the process' request observer
(the worker's platform request metric); every session and fetcher a connector takes from it is
timed, built-in or plugin, without the worker looking inside the connector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from mcmp.config import Settings
from mcmp.connectors.http import BaseUrlSession, pool_size_for
from mcmp.connectors.tenant_fetch import TenantFetcher

#: Told (HTTP method, status code, seconds to the answer's headers) after each platform request.
RequestObserver = Callable[[str, int, float], None]


class HttpClients:
    """Builds a connector's platform sessions (over the process' pool) and its tenant fetchers."""

    def __init__(self, settings: Settings, observer: RequestObserver | None = None) -> None:
        self.settings = settings
        self.observer = observer
        self.sessions: list[BaseUrlSession] = []
        self.fetchers: list[TenantFetcher] = []

    def session(self, public_base: str = "", base_url: str = "") -> BaseUrlSession:
        """A ``requests`` session for platform calls, sized for every thread that may call at once.

        ``public_base``/``base_url``: requests for the platform's public URL go to the configured
        one instead (an SDK that builds its own URLs then reaches a simulator or a proxy).
        """
        session = BaseUrlSession(public_base, base_url, pool_size_for(self.settings))
        observer = self.observer
        if observer is not None:

            def _timed(response: requests.Response, *args: Any, **kwargs: Any) -> None:
                method = response.request.method if response.request is not None else None
                observer(method or "?", response.status_code, response.elapsed.total_seconds())

            session.hooks["response"].append(_timed)
        self.sessions.append(session)
        return session

    def tenant_fetcher(self) -> TenantFetcher:
        """The guarded fetcher for tenant URLs (assets, webhooks, WordPress sites), from the settings."""
        fetcher = TenantFetcher.from_settings(self.settings)
        if self.observer is not None:
            fetcher.response_hooks.append(self.observer)
        self.fetchers.append(fetcher)
        return fetcher
