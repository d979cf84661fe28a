"""Serves MCMP's own simulators as the platform fakes of the kit's conformance suite.

The suite itself is ``mcmp.connectors.testing`` (a plugin runs it from its own repository); this
module only serves a :class:`~mcmp.simulators.core.Simulator` as the suite's platform fake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from mcmp.connectors.testing import platform_fixtures
from mcmp.simulators.core import Simulator, start_in_thread

S = TypeVar("S", bound=Simulator)


def serve(simulator: S, hold_seconds: float = 1.5) -> Iterator[str]:
    """Serve ``simulator`` on a loopback port; yields its URL, stops when resumed.

    ``hold_seconds`` is how long a timeout fault keeps the connection silent: longer than the
    connector's own timeout, so the connector gives up first, as it would in production.
    """
    simulator.hold_seconds = hold_seconds
    server, url = start_in_thread(simulator)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def simulator_fixtures(
    make: Callable[[], S], *, hold_seconds: float = 1.5, prepare: Callable[[S], None] | None = None
) -> tuple[Any, Any, Any]:
    """``served, sim, base = simulator_fixtures(FacebookSimulator)`` at a module's top level."""
    return platform_fixtures(make, lambda simulator: serve(simulator, hold_seconds), prepare=prepare)
