"""Local HTTP twins of each platform API, with fault injection (tests, ``mcmp dev``, bench).

Simulators are found by platform name through the ``mcmp.simulators`` entry-point group, like
connectors, so a third-party platform can ship its own twin.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from mcmp.simulators.core import SimRequest, SimResponse, Simulator, route, serve_forever, start_in_thread

GROUP = "mcmp.simulators"


def simulator_class(platform: str) -> type[Simulator]:
    for ep in entry_points(group=GROUP):
        if ep.name == platform:
            found: type[Simulator] = ep.load()
            return found
    raise LookupError(f"no simulator registered for platform {platform!r}")


def simulator_platforms() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


__all__ = [
    "SimRequest",
    "SimResponse",
    "Simulator",
    "route",
    "serve_forever",
    "simulator_class",
    "simulator_platforms",
    "start_in_thread",
]
