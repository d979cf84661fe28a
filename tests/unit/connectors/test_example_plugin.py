"""The example third-party connector (examples/mcmp_example_connector, installed here from there)
passes the same conformance suite against the website simulator's signed webhook as against the
kit's webhook fake in its own tests, and is built by the registry like a built-in one."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from mcmp_example_connector import EchoConnector

from mcmp.config import Settings
from mcmp.connectors import Credentials, PostContent, ValidationError
from mcmp.connectors.registry import get_connector
from mcmp.connectors.testing import ConnectorConformance
from mcmp.simulators.website import DEFAULT_SECRET, WebhookSimulator
from tests.unit.connectors.simulator_fixtures import simulator_fixtures

served, sim, base = simulator_fixtures(WebhookSimulator)


@pytest.fixture
def connector(sim: WebhookSimulator) -> EchoConnector:
    return EchoConnector(Settings(), timeout=0.8)


class TestExamplePluginConformance(ConnectorConformance):
    write_path = "/hooks/"
    body_limit = 280

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        return Credentials(
            "acct", "example-echo", token or DEFAULT_SECRET, metadata={"webhookUrl": f"{base}/hooks/echo"}
        )

    def content(self, key: str, body: str | None = None) -> PostContent:
        return PostContent("p1", "c1", "Echo", f"Echo {key}" if body is None else body)

    def refused_content(self, base: str) -> PostContent:
        return PostContent("p1", "c1", "", "the webhook requires a title")


def test_found_by_its_hyphenated_entry_point_only() -> None:
    [entry] = [ep for ep in entry_points(group="mcmp.connectors") if ep.name == "example-echo"]
    assert entry.value == "mcmp_example_connector:EchoConnector"
    assert isinstance(get_connector("example-echo", Settings()), EchoConnector)


def test_an_account_marked_reject_fails_validation() -> None:
    credentials = Credentials("acct", "example-echo", "s", metadata={"reject": True})
    with pytest.raises(ValidationError, match="account.metadata.reject"):
        EchoConnector(Settings()).validate(PostContent("p", "c", "t", "b"), credentials)


def test_a_plugin_installed_while_running_is_found_by_name_at_once_and_listed_after_a_rescan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import EntryPoint

    from mcmp.connectors import registry

    registry.clear_cache()
    before = registry.available_platforms()  # scanned now; the dispatcher asks every tick
    late = EntryPoint("late-echo", "mcmp_example_connector:EchoConnector", registry.GROUP)
    installed = (*entry_points(group=registry.GROUP), late)
    monkeypatch.setattr(registry, "entry_points", lambda **_: installed)
    try:
        assert "late-echo" not in registry.available_platforms()  # within the scan interval
        assert isinstance(registry.get_connector("late-echo", Settings()), EchoConnector)
        assert registry.available_platforms() == sorted([*before, "late-echo"])
    finally:
        registry.clear_cache()
