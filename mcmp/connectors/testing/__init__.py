"""The connector kit's tests: the conformance suite every connector inherits, built-in or plugin.

A plugin's test module imports ``mcmp.connectors`` and this package only (``pip install
mcmp-publisher[testing]`` brings pytest)::

    from mcmp.connectors.testing import ConnectorConformance, SignedWebhookFake, platform_fixtures

    served, sim, base = platform_fixtures(SignedWebhookFake, SignedWebhookFake.serve)

    class TestMyConnector(ConnectorConformance):
        write_path = "/hooks/"
        ...

See docs/connectors.md ("Testing a plugin") and ``examples/mcmp_example_connector``.
"""

from mcmp.connectors.testing.conformance import (
    ALL_METHODS,
    SEED_METRICS,
    ConnectorConformance,
    check_lookup_budget,
)
from mcmp.connectors.testing.fixtures import PlatformFake, platform_fixtures, usage_reports
from mcmp.connectors.testing.webhook_fake import SignedWebhookFake

__all__ = [
    "ALL_METHODS",
    "SEED_METRICS",
    "ConnectorConformance",
    "PlatformFake",
    "SignedWebhookFake",
    "check_lookup_budget",
    "platform_fixtures",
    "usage_reports",
]
