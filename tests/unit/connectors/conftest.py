"""Fixtures shared by the connector tests (the conformance suite's included)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mcmp.connectors import usage


@pytest.fixture
def reports() -> Iterator[list[usage.UsageReport]]:
    """Every usage report connectors send to the shared rate limiter during the test."""
    seen: list[usage.UsageReport] = []
    usage.set_sink(seen.append)
    yield seen
    usage.set_sink(None)
