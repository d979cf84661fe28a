"""The example connector passes the kit's conformance suite, from its own repository.

Nothing of MCMP Publisher but ``mcmp.connectors`` and ``mcmp.connectors.testing`` is imported:
the platform fake is the kit's signed-webhook receiver, served on loopback.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from mcmp_example_connector import EchoConnector

from mcmp.connectors import AuthError, Credentials, HttpClients, PostContent, Settings, ValidationError
from mcmp.connectors.testing import ConnectorConformance, SignedWebhookFake, platform_fixtures

served, sim, base = platform_fixtures(SignedWebhookFake, SignedWebhookFake.serve)
SECRET = SignedWebhookFake().secret


@pytest.fixture
def connector(sim: SignedWebhookFake) -> EchoConnector:
    return EchoConnector(Settings(), timeout=0.8)  # gives up before a silent fake (1.5 s)


class TestEchoConformance(ConnectorConformance):
    write_path = "/hooks/"
    body_limit = 280

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        return Credentials(
            "acct", "example-echo", token or SECRET, metadata={"webhookUrl": f"{base}/hooks/echo"}
        )

    def content(self, key: str, body: str | None = None) -> PostContent:
        return PostContent("p1", "c1", "Echo", f"Echo {key}" if body is None else body)

    def refused_content(self, base: str) -> PostContent:
        return PostContent("p1", "c1", "", "the receiver requires a title")


def test_found_by_its_hyphenated_entry_point() -> None:
    [entry] = [ep for ep in entry_points(group="mcmp.connectors") if ep.name == "example-echo"]
    assert entry.load() is EchoConnector


def test_its_calls_reach_the_observer_of_the_clients_it_is_handed(sim: SignedWebhookFake, base: str) -> None:
    seen: list[tuple[str, int]] = []
    settings = Settings()
    echo = EchoConnector(settings, clients=HttpClients(settings, lambda m, s, _: seen.append((m, s))))
    credentials = Credentials("acct", "example-echo", SECRET, metadata={"webhookUrl": f"{base}/hooks/echo"})
    echo.publish(TestEchoConformance().request(base, credentials=credentials))
    assert seen == [("POST", 201)]


def test_a_post_signed_with_another_secret_is_refused_and_stores_nothing(
    sim: SignedWebhookFake, base: str
) -> None:
    wrong = Credentials(
        "acct",
        "example-echo",
        "another-secret-of-32-bytes-long!",
        metadata={"webhookUrl": f"{base}/hooks/echo"},
    )
    with pytest.raises(AuthError):
        EchoConnector(Settings()).publish(TestEchoConformance().request(base, credentials=wrong))
    assert sim.state()["posts"] == []


def test_an_account_marked_reject_fails_validation() -> None:
    credentials = Credentials("acct", "example-echo", SECRET, metadata={"reject": True})
    with pytest.raises(ValidationError, match="account.metadata.reject"):
        EchoConnector(Settings()).validate(PostContent("p", "c", "t", "b"), credentials)


def test_no_analytics_budget_is_spent_on_it() -> None:
    assert EchoConnector(Settings()).metrics_cost(Credentials("a", "example-echo", SECRET), 50) == 0
