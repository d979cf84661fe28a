"""Networks a tenant URL may reach although they are not public (``MCMP_FETCH_ALLOWED_NETWORKS``).

Pure parsing, here so the settings validate entries at startup and the guarded fetcher
(:mod:`mcmp.connectors.tenant_fetch`) reads them without parsing again. An entry is a network in
CIDR form, optionally limited to one port: ``127.0.0.0/8``, ``10.20.0.7/32:8443``,
``[fd00::/8]:443``. A bare address is its own /32 (or /128).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Allowing these in production lets a tenant read the worker's own host or the cloud's metadata.
_HAZARDS: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("127.0.0.0/8"), "loopback"),
    (ipaddress.ip_network("::1/128"), "loopback"),
    (ipaddress.ip_network("0.0.0.0/8"), "the unspecified address (the host itself)"),
    (ipaddress.ip_network("169.254.0.0/16"), "link-local (cloud metadata)"),
    (ipaddress.ip_network("fe80::/10"), "link-local"),
)


@dataclass(frozen=True)
class AllowedNetwork:
    network: IPNetwork
    port: int | None = None

    def admits(self, address: IPAddress, port: int) -> bool:
        return (
            address.version == self.network.version
            and address in self.network
            and (self.port is None or self.port == port)
        )

    def __str__(self) -> str:
        if self.port is None:
            return str(self.network)
        net = f"[{self.network}]" if self.network.version == 6 else str(self.network)
        return f"{net}:{self.port}"


def parse_allowed(entry: str) -> AllowedNetwork:
    """One entry → AllowedNetwork; ValueError naming the entry when it is not a network."""
    text = entry.strip()
    port: int | None = None
    if text.startswith("["):
        net, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r} is not a network like [fd00::/8]:443")
        text, port_text = net, rest[1:]
        port = _port(port_text, entry) if rest else None
    elif text.count(":") == 1:
        text, port_text = text.split(":")
        port = _port(port_text, entry)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not a network like 10.0.0.0/8 or 127.0.0.1/32:8080") from None
    return AllowedNetwork(network, port)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def hazards(allowed: Iterable[AllowedNetwork]) -> list[str]:
    """Readable warnings for allowed entries that overlap the host itself or link-local ranges."""
    out = []
    for entry in allowed:
        for network, what in _HAZARDS:
            if entry.network.version == network.version and entry.network.overlaps(network):
                out.append(f"{entry} overlaps {what}")
    return out


__all__ = ["AllowedNetwork", "IPAddress", "IPNetwork", "hazards", "parse_allowed"]
