"""The one place where a Facebook Graph answer becomes an error of ``mcmp.connectors.errors``.

The Graph error table is shared with Instagram and lives in :func:`mcmp.connectors.graph.classify`
(codes 1/2, 4/17/32/341/613/80001, 190 + subcodes, 102, 10, 200–299, 368, 506, 100, 1609005);
this module binds it to the ``facebook`` platform name used in messages and usage reports.
"""

from __future__ import annotations

import requests

from mcmp.connectors import graph
from mcmp.connectors.errors import ConnectorError

PLATFORM = "facebook"


def classify(response: requests.Response, *, write: bool, account_id: str | None) -> ConnectorError:
    return graph.classify(response, platform=PLATFORM, write=write, account_id=account_id)


__all__ = ["PLATFORM", "classify"]
