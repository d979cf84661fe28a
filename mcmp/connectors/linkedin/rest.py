"""LinkedIn's REST plumbing shared by the connector's parts: headers, calls, classification.

Every call goes through ``send`` over the session the connector's ``HttpClients`` built; an error
status becomes an error of ``mcmp.connectors.errors`` in :func:`~mcmp.connectors.linkedin.classify.classify`,
with the throttle memory that tells an application budget from an account's.
"""

from __future__ import annotations

from typing import Any

import requests

from mcmp.config.settings import LinkedInSettings
from mcmp.connectors.http import BaseUrlSession, send
from mcmp.connectors.linkedin.classify import ThrottleMemory, classify
from mcmp.connectors.types import (
    Credentials,
)


class LinkedInRest:
    """Set up by :class:`~mcmp.connectors.linkedin.connector.LinkedInConnector`'s constructor."""

    cfg: LinkedInSettings
    base: str
    timeout: float
    session: BaseUrlSession
    throttle: ThrottleMemory

    def _headers(self, token: str, *, json_body: bool = False) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {token}",
            "LinkedIn-Version": self.cfg.api_version,
            "X-Restli-Protocol-Version": "2.0.0",
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _call(
        self, method: str, url: str, creds: Credentials, *, write: bool, **kwargs: Any
    ) -> requests.Response:
        response = send(self.session, method, url, timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise classify(response, write=write, account_id=creds.account_id, throttle=self.throttle)
        self.throttle.clear(f"account:{creds.account_id}")
        return response

    def _get(self, path: str, creds: Credentials, *, passthrough: tuple[int, ...] = ()) -> requests.Response:
        """``GET {base}{path}``; an error status in ``passthrough`` is returned, any other raised."""
        response = send(
            self.session,
            "GET",
            f"{self.base}{path}",
            timeout=self.timeout,
            headers=self._headers(creds.access_token),
        )
        if response.status_code >= 400:
            if response.status_code in passthrough:
                return response
            raise classify(response, write=False, account_id=creds.account_id, throttle=self.throttle)
        self.throttle.clear(f"account:{creds.account_id}")
        return response
