"""Finds connectors by platform name through the ``mcmp.connectors`` entry-point group.

Built-in connectors are declared in our own ``pyproject.toml`` exactly like a third party's, so
core code never lists platforms. Names may contain hyphens (``google-business``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from mcmp.config import Settings, get_settings
from mcmp.connectors.base import ConnectorBase
from mcmp.connectors.clients import HttpClients
from mcmp.connectors.protocol import Connector
from mcmp.errors import PublisherError

log = logging.getLogger(__name__)

GROUP = "mcmp.connectors"
# The group's entry points are scanned again after this long (a plugin installed meanwhile is then
# listed; looking an unlisted platform up scans at once).
SCAN_SECONDS = 60.0
_lock = threading.Lock()
_instances: dict[str, Connector] = {}
_observer: Callable[[str, str, int, float], None] | None = None
_scan_lock = threading.Lock()
_scanned: tuple[float, tuple[EntryPoint, ...]] | None = None


class UnknownPlatformError(PublisherError, LookupError):
    """No connector is registered under that platform name."""


def _registered(*, fresh: bool = False) -> tuple[EntryPoint, ...]:
    """The group's entry points, scanned at most every ``SCAN_SECONDS`` (``fresh``: now).

    A scan reads every installed distribution's metadata from disk, milliseconds of CPU; the
    dispatcher asks on every tick.
    """
    global _scanned
    with _scan_lock:
        now = time.monotonic()
        if fresh or _scanned is None or now - _scanned[0] >= SCAN_SECONDS:
            _scanned = (now, tuple(entry_points(group=GROUP)))
        return _scanned[1]


def available_platforms() -> list[str]:
    return sorted(ep.name for ep in _registered())


def get_connector(platform: str, settings: Settings | None = None) -> Connector:
    """The shared connector instance for ``platform``; raises UnknownPlatformError if none."""
    with _lock:
        connector = _instances.get(platform)
        if connector is not None:
            return connector
        matches = [ep for ep in _registered() if ep.name == platform]
        if not matches:  # installed since the last scan?
            matches = [ep for ep in _registered(fresh=True) if ep.name == platform]
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
    """Drop constructed connectors and the scanned entry points (tests change settings between runs)."""
    global _scanned
    with _lock:
        _instances.clear()
    with _scan_lock:
        _scanned = None
