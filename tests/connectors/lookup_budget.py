"""One check for every feed-scanning connector: a lookup that runs out of pages says so.

Reconciliation that stops reading before the start of its window and answers "not found" makes
the worker publish again — a duplicate whenever the earlier attempt's post sat on a page it did
not read (the chaos run's case: a worker killed after posting, reaped after 250 newer posts).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from mcmp.connectors.errors import LookupIncompleteError
from mcmp.connectors.types import PublishRequest


def check_lookup_budget(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    page_size_name: str,
    connector: Any,
    request: Callable[[str], PublishRequest],
    publish_other: Callable[[int], object],
) -> None:
    """Ten newer posts than ours and a two-page budget of five: neither found nor not found."""
    monkeypatch.setattr(module, page_size_name, 5)
    monkeypatch.setattr(module, "RECONCILE_MAX_PAGES", 2)
    connector.publish(request("ours"))
    for i in range(10):
        publish_other(i)
    with pytest.raises(LookupIncompleteError, match=f"{connector.platform} lookup read 10 recent posts"):
        connector.find_published(request("ours"))
    with pytest.raises(LookupIncompleteError):
        connector.find_published(request("never-sent"))
    monkeypatch.setattr(module, "RECONCILE_MAX_PAGES", 3)
    found = connector.find_published(request("ours"))
    assert found is not None
    assert connector.find_published(request("never-sent")) is None
