"""A worker builds its connectors when it starts, not on each platform's first delivery."""

from __future__ import annotations

from mcmp.connectors import registry
from mcmp.worker import metrics
from mcmp.worker.runtime import warm_connectors


def test_every_registered_connector_is_built_at_start_and_deliveries_reuse_it(env):
    built: list[str] = []
    registry.clear_cache()
    registry.set_observer(lambda platform, connector: built.append(platform))
    try:
        warm_connectors()
        assert {"website", "facebook", "linkedin", "google-business"} <= set(built)
        assert sorted(built) == sorted(registry.available_platforms())
        for platform in registry.available_platforms():  # what a delivery asks for
            registry.get_connector(platform)
        warm_connectors()
        assert sorted(built) == sorted(registry.available_platforms())  # nothing built again
    finally:
        registry.set_observer(metrics.instrument_connector)
        registry.clear_cache()
