"""How connectors feed platform usage headers into the shared (Redis) rate limiter.

Connectors do not know about Redis: they call :func:`report` with what a response said
(``X-App-Usage``, ``X-Business-Use-Case-Usage``, ``Retry-After``, a 429 …). The worker installs a
sink (``mcmp.worker.rate_limit``) that turns reports into global budgets checked before each publish.
Scopes: ``app`` (the whole platform app), ``account`` (one IntegrationAccount), or a named quota
such as ``ig-publish-quota``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class UsageReport:
    platform: str
    scope: str  # "app" | "account" | a named quota
    account_id: str | None = None
    used_pct: float | None = None  # 0..100+ of the platform's budget, when the platform says
    retry_after: float | None = None  # seconds until the budget is regained, when known


UsageSink = Callable[[UsageReport], None]
_sink: UsageSink | None = None


def set_sink(sink: UsageSink | None) -> None:
    global _sink
    _sink = sink


def report(usage: UsageReport) -> None:
    """Forward a usage observation to the installed sink (no-op when none is installed)."""
    if _sink is not None:
        _sink(usage)
