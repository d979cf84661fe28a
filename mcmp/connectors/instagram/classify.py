"""The one place where an Instagram Graph answer becomes an error of ``mcmp.connectors.errors``.

The Graph table is shared with Facebook (:func:`mcmp.connectors.graph.classify`), including the IG
subcodes: 2207042 publishing limit → RateLimited(``ig-publish-quota``), 2207051 spam →
Permanent, 2207001/2207003/2207020/2207032/2207053 → Retryable (a new container). Container
states ERROR/EXPIRED met while polling go through :func:`container_error`.
"""

from __future__ import annotations

import requests

from mcmp.connectors import graph
from mcmp.connectors.errors import ConnectorError

PLATFORM = "instagram"


def classify(response: requests.Response, *, write: bool, account_id: str | None) -> ConnectorError:
    return graph.classify(response, platform=PLATFORM, write=write, account_id=account_id)


def container_error(status_code: str, status: str) -> ConnectorError:
    return graph.container_error(status_code, status)


__all__ = ["PLATFORM", "classify", "container_error"]
