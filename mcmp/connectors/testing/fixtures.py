"""What the conformance suite needs of a platform fake, and the fixtures that serve one.

The suite talks to the platform only through the connector; it reads and steers the fake through
the few members of :class:`PlatformFake`. MCMP's own simulators have them; so does the kit's
:class:`~mcmp.connectors.testing.webhook_fake.SignedWebhookFake`. A plugin for another platform
brings a fake of its own with the same members.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import pytest

from mcmp.connectors import usage


class PlatformFake(Protocol):
    """A platform twin on loopback, steered by the suite between calls of the connector.

    ``set_faults({"rules": [...]})`` takes rules of the kinds ``http_500``, ``http_503``,
    ``rate_limit`` (with ``retry_after``), ``token_revoked``, ``timeout`` (no answer, nothing
    stored) and ``commit_then_timeout`` (stored, then no answer), filtered by ``path`` (a
    substring), ``methods`` (default: the writes) and ``count``. ``state()["posts"]`` lists the
    posts stored; ``request_log`` has one entry per request answered or stored, ``fault_log`` one
    per fault fired.
    """

    request_log: list[dict[str, Any]]
    fault_log: list[dict[str, Any]]

    def reset(self) -> None: ...

    def set_faults(self, config: dict[str, Any]) -> None: ...

    def state(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=PlatformFake)


def platform_fixtures(
    make: Callable[[], F],
    serve: Callable[[F], Iterator[str]],
    *,
    prepare: Callable[[F], None] | None = None,
) -> tuple[Any, Any, Any]:
    """The fixtures ``served`` (one server per module), ``sim`` (emptied per test) and ``base`` (URL).

    ``served, sim, base = platform_fixtures(SignedWebhookFake, SignedWebhookFake.serve)`` at a test
    module's top level. ``serve`` is a generator: it starts the fake, yields its base URL and stops
    it when resumed. ``prepare`` restores tunables a test may have changed (budgets, quotas).
    """

    @pytest.fixture(scope="module")
    def served() -> Iterator[tuple[F, str]]:
        fake = make()
        for url in serve(fake):
            yield fake, url

    @pytest.fixture
    def sim(served: tuple[F, str]) -> F:
        fake = served[0]
        fake.reset()
        fake.set_faults({"rules": []})
        if prepare is not None:
            prepare(fake)
        return fake

    @pytest.fixture
    def base(served: tuple[F, str]) -> str:
        return served[1]

    return served, sim, base


def usage_reports() -> Iterator[list[usage.UsageReport]]:
    """Collects every usage report connectors send to the shared rate limiter (a fixture body)."""
    seen: list[usage.UsageReport] = []
    usage.set_sink(seen.append)
    try:
        yield seen
    finally:
        usage.set_sink(None)
