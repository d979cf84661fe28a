"""A worker builds its connectors when it starts, not on each platform's first delivery."""

from __future__ import annotations

import pytest

from mcmp.connectors import registry
from mcmp.worker.runtime import warm_connectors


def test_every_registered_connector_is_built_at_start_and_deliveries_reuse_it(env, monkeypatch):
    registry.clear_cache()
    platforms = registry.available_platforms()
    assert {"website", "facebook", "linkedin", "google-business"} <= set(platforms)
    warm_connectors()

    def no_lookup(**_: object) -> None:
        pytest.fail("a delivery looked a connector up and built it again after the warm-up")

    monkeypatch.setattr(registry, "entry_points", no_lookup)
    built = {platform: registry.get_connector(platform) for platform in platforms}  # what deliveries ask
    assert all(registry.get_connector(p) is c for p, c in built.items())
    registry.clear_cache()
