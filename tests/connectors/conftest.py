"""Fixtures shared by the connector tests (the conformance suite brings its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mcmp.connectors import usage
from mcmp.connectors.testing import usage_reports


@pytest.fixture
def reports() -> Iterator[list[usage.UsageReport]]:
    """Every usage report connectors send to the shared rate limiter during the test."""
    yield from usage_reports()
