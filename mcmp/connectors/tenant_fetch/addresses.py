"""Which addresses a tenant URL may reach: every non-public range refused by name, embedded IPv4 too."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Sequence

from mcmp.config.networks import AllowedNetwork, IPAddress, IPNetwork
from mcmp.connectors.tenant_fetch.refusals import Rule

Resolver = Callable[[str, int], Sequence[IPAddress]]

_ADDRESS_TEXT = {
    Rule.UNSPECIFIED: "an unspecified address",
    Rule.LOOPBACK: "a loopback address",
    Rule.PRIVATE: "a private address",
    Rule.LINK_LOCAL: "a link-local address",
    Rule.SHARED: "a shared (carrier-grade NAT) address",
    Rule.MULTICAST: "a multicast address",
    Rule.RESERVED: "a reserved address",
    Rule.UNIQUE_LOCAL: "an IPv6 unique-local address",
}


def _nets(*pairs: tuple[str, Rule]) -> tuple[tuple[IPNetwork, Rule], ...]:
    return tuple((ipaddress.ip_network(net), rule) for net, rule in pairs)


# Explicit ranges (named in messages); anything else that is not globally routable is RESERVED.
_V4 = _nets(
    ("0.0.0.0/8", Rule.UNSPECIFIED),  # "this network": Linux routes 0.0.0.0 to the host itself
    ("10.0.0.0/8", Rule.PRIVATE),
    ("100.64.0.0/10", Rule.SHARED),
    ("127.0.0.0/8", Rule.LOOPBACK),
    ("169.254.0.0/16", Rule.LINK_LOCAL),  # cloud metadata lives here
    ("172.16.0.0/12", Rule.PRIVATE),
    ("192.168.0.0/16", Rule.PRIVATE),
    ("198.18.0.0/15", Rule.RESERVED),
    ("224.0.0.0/4", Rule.MULTICAST),
    ("240.0.0.0/4", Rule.RESERVED),  # and 255.255.255.255
)
_V6 = _nets(
    ("::/128", Rule.UNSPECIFIED),
    ("::1/128", Rule.LOOPBACK),
    ("::/96", Rule.RESERVED),  # IPv4-compatible (deprecated, RFC 4291): ::7f00:1, ::a9fe:a9fe
    ("fc00::/7", Rule.UNIQUE_LOCAL),
    ("fe80::/10", Rule.LINK_LOCAL),
    ("fec0::/10", Rule.PRIVATE),  # deprecated site-local
    ("ff00::/8", Rule.MULTICAST),
    ("64:ff9b:1::/48", Rule.PRIVATE),  # local-use NAT64
)


def _low32(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def _sixtofour(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    inner = address.sixtofour
    assert inner is not None  # only called inside 2002::/16
    return inner


# IPv6 forms that carry an IPv4 address: the IPv4 address decides.
_EMBEDDED: tuple[tuple[IPNetwork, str, Callable[[ipaddress.IPv6Address], ipaddress.IPv4Address]], ...] = (
    (ipaddress.ip_network("::ffff:0:0/96"), "IPv4-mapped", _low32),
    (ipaddress.ip_network("::ffff:0:0:0/96"), "IPv4-translated", _low32),
    (ipaddress.ip_network("64:ff9b::/96"), "NAT64", _low32),
    (ipaddress.ip_network("2002::/16"), "6to4", _sixtofour),
)
_TEREDO = ipaddress.ip_network("2001::/32")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


def address_problem(
    address: IPAddress, port: int, allowed: Iterable[AllowedNetwork] = ()
) -> tuple[Rule, str] | None:
    """``(rule, "a private address")`` when ``address`` must not be reached, None when it may."""
    allowed = tuple(allowed)
    if any(entry.admits(address, port) for entry in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        inner: list[tuple[str, ipaddress.IPv4Address]] = [
            (name, extract(address)) for net, name, extract in _EMBEDDED if address in net
        ]
        if address in _TEREDO and address.teredo is not None:
            inner = [("Teredo", part) for part in address.teredo]
        if inner:
            for name, v4 in inner:
                found = address_problem(v4, port, allowed)
                if found is not None:
                    return found[0], f"the {name} form of {v4}, {found[1]}"
            return None
    for network, rule in _V4 if address.version == 4 else _V6:
        if address in network:
            if network == _V4_COMPATIBLE and isinstance(address, ipaddress.IPv6Address):
                return rule, f"the IPv4-compatible form of {_low32(address)}, {_ADDRESS_TEXT[rule]}"
            return rule, _ADDRESS_TEXT[rule]
    if address.is_reserved or not address.is_global:
        return Rule.RESERVED, _ADDRESS_TEXT[Rule.RESERVED]
    return None


def rule_text(rule: Rule) -> str:
    """What a rule refuses, without any address (``a private address``): the tenant-visible words."""
    return _ADDRESS_TEXT.get(rule, rule.value)


def resolve_within(resolver: Resolver, host: str, port: int, timeout: float) -> list[IPAddress]:
    """``resolver(host, port)`` given at most ``timeout`` seconds; ``TimeoutError`` after that.

    ``getaddrinfo`` has no timeout of its own (the system's can be 5 s times each nameserver and
    attempt), so it runs in a daemon thread of its own: a slow name server costs the fetch that
    asked, inside its deadline, and never holds a shared pool that other tenants' fetches need.
    """
    answer: list[IPAddress] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            answer.extend(resolver(host, port))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=lookup, name=f"mcmp-dns {host}", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if thread.is_alive():
        raise TimeoutError(f"{host} did not resolve within {timeout:.3g} s")
    if failure:
        raise failure[0]
    return answer


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (IP literals resolve to themselves, without DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out
