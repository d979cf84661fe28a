"""Finds connectors by platform name through the ``mcmp.connectors`` entry-point group.

Built-in connectors are declared in our own ``pyproject.toml`` exactly like a third party's, so
core code never lists platforms. Names may contain hyphens (``google-business``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points

from mcmp.config import Settings, get_settings
from mcmp.connectors.base import ConnectorBase
from mcmp.connectors.clients import HttpClients
from mcmp.connectors.protocol import Connector

log = logging.getLogger(__name__)

GROUP = "mcmp.connectors"
_lock = threading.Lock()
_instances: dict[str, Connector] = {}
_observer: Callable[[str, str, int, float], None] | None = None


class UnknownPlatformError(LookupError):
    """No connector is registered under that platform name."""


def available_platforms() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def get_connector(platform: str, settings: Settings | None = None) -> Connector:
    """The shared connector instance for ``platform``; raises UnknownPlatformError if none."""
    with _lock:
        connector = _instances.get(platform)
        if connector is not None:
            return connector
        matches = [ep for ep in entry_points(group=GROUP) if ep.name == platform]
        if not matches:
            raise UnknownPlatformError(
                f"platforms: unknown platform {platform!r} (known: {', '.join(available_platforms())})"
            )
        factory = matches[0].load()
        settings = settings or get_settings()
        if isinstance(factory, type) and issubclass(factory, ConnectorBase):
            built: object = factory(settings, clients=_clients_for(platform, settings))
        else:  # a bare Protocol implementation builds its own clients: its calls go untimed
            built = factory(settings)
        if not isinstance(built, Connector):
            raise TypeError(
                f"the {platform!r} entry point does not build a connector (see mcmp.connectors.Connector;"
                " mcmp.connectors.ConnectorBase supplies the hooks' defaults)"
            )
        connector = built
        _instances[platform] = connector
        return connector


def _clients_for(platform: str, settings: Settings) -> HttpClients:
    observer = _observer
    if observer is None:
        return HttpClients(settings)
    return HttpClients(settings, lambda method, status, seconds: observer(platform, method, status, seconds))


def set_observer(observer: Callable[[str, str, int, float], None] | None) -> None:
    """Told (platform, method, status, seconds) after each request of connectors built from now on.

    The worker installs its request metric here. Connectors stay free of any worker import:
    built-in and third-party ones get the same request metrics without knowing Prometheus exists.
    """
    global _observer
    _observer = observer


def clear_cache() -> None:
    """Drop constructed connectors (tests change settings between runs)."""
    with _lock:
        _instances.clear()
