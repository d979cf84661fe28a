"""The webhook signature binds method, path + query, Idempotency-Key, timestamp and body; verify
never raises; short secrets and redirects never carry a signature anywhere.

The receivers in docs/connectors.md are run for real in ``test_webhook_receivers.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mcmp.config import Settings
from mcmp.connectors import (
    FUTURE_SKEW_SECONDS,
    MIN_SECRET_BYTES,
    TOLERANCE_SECONDS,
    Credentials,
    PermanentError,
    PostContent,
    PublishRequest,
    ValidationError,
    sign,
    signed_headers,
    verify,
)
from mcmp.connectors.signing import WeakSecretError, signed_string
from mcmp.connectors.website import WebsiteConnector
from mcmp.simulators.website import DEFAULT_SECRET, WebhookSimulator
from tests.conftest import LOOPBACK
from tests.connectors.simulator_fixtures import simulator_fixtures

served, sim, base = simulator_fixtures(WebhookSimulator)

SECRET = "whsec-0123456789abcdef"
NOW = 1_700_000_000
GOOD: dict[str, Any] = {
    "method": "POST",
    "target": "/hooks/acme?lang=fr",
    "idempotency_key": "66f0c0ffee0000000000beef",
    "timestamp": str(NOW),
    "body": b'{"title":"Hello"}',
}


def _signed(**changes: Any) -> dict[str, Any]:
    return {**GOOD, "signature": sign(SECRET, **GOOD), **changes}


def test_the_signed_string_is_the_documented_one() -> None:
    assert signed_string("post", "/hooks/acme?lang=fr", "k1", "1700000000", b"{}") == (
        b"POST\n/hooks/acme?lang=fr\nk1\n1700000000\n{}"
    )


@pytest.mark.parametrize(
    "changed",
    [
        {"method": "PUT"},
        {"target": "/hooks/other?lang=fr"},
        {"target": "/hooks/acme?lang=de"},
        {"target": "/hooks/acme"},
        {"idempotency_key": "66f0c0ffee0000000000dead"},
        {"idempotency_key": ""},
        {"timestamp": str(NOW + 1)},
        {"body": b'{"title":"Hellp"}'},
    ],
)
def test_changing_any_signed_part_breaks_the_signature(changed: dict[str, Any]) -> None:
    assert verify(SECRET, **_signed(), now=NOW)
    assert not verify(SECRET, **_signed(**changed), now=NOW)


def test_timestamps_may_be_five_minutes_old_and_one_minute_ahead() -> None:
    assert verify(SECRET, **_signed(), now=NOW + TOLERANCE_SECONDS)
    assert not verify(SECRET, **_signed(), now=NOW + TOLERANCE_SECONDS + 1)
    assert FUTURE_SKEW_SECONDS <= 60
    assert verify(SECRET, **_signed(), now=NOW - FUTURE_SKEW_SECONDS)
    assert not verify(SECRET, **_signed(), now=NOW - FUTURE_SKEW_SECONDS - 1)
    assert not verify(SECRET, **_signed(), now=NOW - 299)  # five minutes ahead: refused


@pytest.mark.parametrize(
    "malformed",
    [
        {"signature": "sha256=" + "é" * 64},  # non-ASCII: hmac.compare_digest raised TypeError
        {"signature": "sha256=" + "0" * 63 + "ü"},
        {"signature": None},
        {"signature": b"sha256=00"},
        {"signature": ""},
        {"signature": "SHA256=" + "0" * 64},
        {"timestamp": "١٧٠٠٠٠٠٠٠٠"},  # Arabic-Indic digits: int() accepts them
        {"timestamp": " 1700000000"},
        {"timestamp": "+1700000000"},
        {"timestamp": "1_700_000_000"},
        {"timestamp": "9" * 400},
        {"timestamp": None},
        {"timestamp": 1700000000},
        {"method": None},
        {"method": "PÖST"},
        {"target": "/hooks/é"},
        {"target": "hooks/acme"},
        {"target": "/a\nb"},
        {"target": None},
        {"idempotency_key": "k\n1"},
        {"idempotency_key": "ключ"},
        {"idempotency_key": 7},
        {"body": "a str, not bytes"},
        {"body": None},
    ],
)
def test_verify_returns_false_on_malformed_input_and_never_raises(malformed: dict[str, Any]) -> None:
    assert verify(SECRET, **_signed(**malformed), now=NOW) is False


def test_verify_returns_false_for_a_malformed_secret() -> None:
    for secret in (None, b"whsec-0123456789abcdef", 12345, ""):
        assert verify(secret, **_signed(), now=NOW) is False


def test_secrets_shorter_than_16_bytes_never_sign_nor_verify() -> None:
    short = "s" * (MIN_SECRET_BYTES - 1)
    assert MIN_SECRET_BYTES == 16
    with pytest.raises(WeakSecretError) as refused:
        sign(short, **GOOD)
    assert short not in str(refused.value) and "16 bytes" in str(refused.value)
    with pytest.raises(WeakSecretError):
        signed_headers(short, "POST", "https://site.example/hook", "k", b"{}")
    forged = {**GOOD, "signature": "sha256=" + "0" * 64}
    assert not verify(short, **forged, now=NOW)
    sign("s" * MIN_SECRET_BYTES, **GOOD)  # 16 bytes is enough
    sign("é" * 8, **GOOD)  # bytes, not characters: 8 × 2


def test_signed_headers_carry_the_key_and_sign_the_request_target() -> None:
    headers = signed_headers(SECRET, "GET", "https://site.example/hook?a=1&b=x y", "k1", b"", now=NOW)
    assert headers["Idempotency-Key"] == "k1" and headers["X-MCMP-Timestamp"] == str(NOW)
    assert verify(
        SECRET,
        method="GET",
        target="/hook?a=1&b=x%20y",  # percent-encoded, as the request line carries it
        idempotency_key="k1",
        timestamp=str(NOW),
        body=b"",
        signature=headers["X-MCMP-Signature"],
        now=NOW,
    )


# --- the connector -------------------------------------------------------------------------------
@pytest.fixture
def connector(sim: WebhookSimulator) -> WebsiteConnector:
    return WebsiteConnector(Settings(website={"timeout_seconds": 2}, fetch_allowed_networks=[LOOPBACK]))


def _request(url: str, secret: str = DEFAULT_SECRET, key: str = "d1") -> PublishRequest:
    credentials = Credentials("acct", "website", secret, metadata={"webhookUrl": url})
    content = PostContent("p1", "c1", "Title", "Hello")
    return PublishRequest(key, key, "a1", datetime.now(UTC), content, credentials)


def test_a_short_secret_fails_validation_and_nothing_is_sent(
    connector: WebsiteConnector, sim: WebhookSimulator, base: str
) -> None:
    short = "fifteen-bytes!!"
    request = _request(f"{base}/hooks/acme", short)
    for call in (
        lambda: connector.validate(request.content, request.credentials),
        lambda: connector.publish(request),
        lambda: connector.find_published(request),
    ):
        with pytest.raises(ValidationError) as refused:
            call()
        assert refused.value.field == "account.accessToken"
        assert "15 bytes" in str(refused.value) and "16 bytes" in str(refused.value)
        assert short not in str(refused.value)
    assert sim.state()["count"] == 0 and sim.request_log == []


def test_publish_and_lookup_are_accepted_by_the_simulator_with_a_query_in_the_url(
    connector: WebsiteConnector, sim: WebhookSimulator, base: str
) -> None:
    request = _request(f"{base}/hooks/acme?lang=fr&x=a b")
    published = connector.publish(request)
    found = connector.find_published(request)
    assert found is not None and found.platform_post_id == published.platform_post_id


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with ``status`` (and a Location to ``location``); records it."""

    status = 200
    location = ""
    seen: list[dict[str, str]]

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        self.send_response(self.status)
        if self.location:
            self.send_header("Location", self.location)
        self.send_header("Content-Length", "2")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture
def servers() -> Iterator[tuple[str, list[dict[str, str]], list[dict[str, str]]]]:
    """A site redirecting everything to a second loopback host (both record what they get)."""
    target_seen: list[dict[str, str]] = []
    origin_seen: list[dict[str, str]] = []
    target = ThreadingHTTPServer(
        ("127.0.0.1", 0), type("Target", (_Recorder,), {"seen": target_seen, "status": 200})
    )
    to = f"http://127.0.0.1:{target.server_address[1]}/stolen"
    origin = ThreadingHTTPServer(
        ("127.0.0.1", 0),
        type("Origin", (_Recorder,), {"seen": origin_seen, "status": 302, "location": to}),
    )
    for server in (target, origin):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{origin.server_address[1]}/hooks/acme", origin_seen, target_seen
    finally:
        for server in (target, origin):
            server.shutdown()
            server.server_close()


def test_the_reconciliation_lookup_never_follows_a_redirect_with_its_signature(
    connector: WebsiteConnector, servers: tuple[str, list[dict[str, str]], list[dict[str, str]]]
) -> None:
    url, origin_seen, target_seen = servers
    with pytest.raises(PermanentError) as refused:
        connector.find_published(_request(url))
    assert "redirect" in str(refused.value) and "webhookUrl" in str(refused.value)
    [asked] = origin_seen
    assert asked["x-mcmp-signature"].startswith("sha256=") and asked["idempotency-key"] == "d1"
    assert target_seen == []  # the signature headers never left for the redirect's host
