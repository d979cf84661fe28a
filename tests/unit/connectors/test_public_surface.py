"""What a third-party connector may import: ``mcmp.connectors`` and nothing else of ours.

The names are pinned: removing or renaming one breaks every plugin built on it, so a change here
is a deliberate change of the plugin contract.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mcmp.connectors
from tests import ROOT
from tests.python_source import parse

PUBLIC = {
    # the Protocol, the hooks' defaults, the HTTP clients a connector is handed, and its values
    "Connector",
    "ConnectorBase",
    "HttpClients",
    "RequestObserver",
    "Settings",
    "MediaLimits",
    "Credentials",
    "MediaItem",
    "MetricsRef",
    "MetricsSnapshot",
    "PostContent",
    "PublishRequest",
    "PublishResult",
    "TokenGrant",
    # the error tree
    "PublisherError",
    "ConnectorError",
    "RetryableError",
    "AmbiguousError",
    "LookupIncompleteError",
    "RateLimitedError",
    "AuthError",
    "PermanentError",
    "ValidationError",
    # HTTP seam, usage reports for the shared rate limiter, delivery markers
    "BaseUrlSession",
    "send",
    "retry_after_seconds",
    "UsageReport",
    "report_usage",
    "marker_for",
    "strip_markers",
    # the signed webhook
    "IDEMPOTENCY_HEADER",
    "MIN_SECRET_BYTES",
    "FUTURE_SKEW_SECONDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "sign",
    "signed_headers",
    "verify",
}
PLUGIN = ROOT / "examples" / "mcmp_example_connector"


def test_the_public_names_are_pinned_and_all_importable() -> None:
    assert set(mcmp.connectors.__all__) == PUBLIC
    assert len(mcmp.connectors.__all__) == len(PUBLIC), "a name is listed twice"
    for name in PUBLIC:
        assert getattr(mcmp.connectors, name) is not None


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def ours(paths: list[Path]) -> set[str]:
    return {m for path in paths for m in imported_modules(path) if m.split(".")[0] == "mcmp"}


def test_the_example_plugin_imports_only_mcmp_connectors_and_its_tests_only_the_kit() -> None:
    assert ours(list((PLUGIN / "mcmp_example_connector").glob("*.py"))) == {"mcmp.connectors"}
    assert ours(list((PLUGIN / "tests").glob("*.py"))) == {"mcmp.connectors", "mcmp.connectors.testing"}


def test_the_kit_imports_nothing_of_ours_but_mcmp_connectors() -> None:
    kit = list((ROOT / "mcmp" / "connectors" / "testing").glob("*.py"))
    assert {m for m in ours(kit) if not m.startswith("mcmp.connectors.testing")} == {
        "mcmp.connectors",
        "mcmp.connectors.signing",
    }
