"""Point an official platform client at a simulator: a transport adapter for its platform host.

The official clients hard-code their hosts (LinkedIn's ``https://api.linkedin.com/rest``, Meta's
video host ``https://graph-video.facebook.com``). Mounted on the client's own
``requests.Session``, :class:`LoopbackAdapter` sends each request for that host to the
simulator's loopback URL instead, unchanged otherwise: real HTTP, the client's own bytes.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter


class LoopbackAdapter(HTTPAdapter):
    """Send requests for ``platform`` (``https://host``) to ``simulator`` (``http://127.0.0.1:port``)."""

    def __init__(self, platform: str, simulator: str) -> None:
        super().__init__()
        self.platform = platform.rstrip("/")
        self.simulator = simulator.rstrip("/")
        self.sent: list[requests.PreparedRequest] = []  # what the client put on the wire, in order

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        url = request.url or ""
        if url.startswith(self.platform):
            request.url = self.simulator + url[len(self.platform) :]
        self.sent.append(request)
        return super().send(request, *args, **kwargs)


class OffLoopback(HTTPAdapter):
    """Refuses any request that would leave the machine (tests send traffic to loopback only)."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        raise requests.ConnectionError(f"tests send traffic to loopback only, not {request.url}")


def route_to_simulator(session: requests.Session, platform: str, simulator: str) -> LoopbackAdapter:
    """Every request ``session`` sends to ``platform`` reaches ``simulator`` over loopback; a
    request for any other host than loopback fails instead of leaving the machine."""
    assert simulator.startswith("http://127.0.0.1:"), "tests send traffic to loopback only"
    adapter = LoopbackAdapter(platform, simulator)
    session.mount("https://", OffLoopback())
    session.mount("http://", OffLoopback())
    session.mount("http://127.0.0.1:", HTTPAdapter())
    session.mount(platform.rstrip("/") + "/", adapter)
    return adapter
