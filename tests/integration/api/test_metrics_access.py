"""``/metrics`` and ``/v1/health/ready`` as an unauthenticated caller meets them: bounded cost, optional token.

Each scrape used to count every tenant's deliveries: anyone reaching the API could make it do so
as fast as they could send requests. Figures are now computed at most once per
``MCMP_HEALTH_CACHE_SECONDS`` (default 5 s, used here as is), and ``MCMP_METRICS_TOKEN`` asks
scrapers for a bearer token.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from bson import ObjectId
from prometheus_client import CollectorRegistry, Counter

from mcmp.config import get_settings, reset_settings
from mcmp.devstack import free_port
from mcmp.worker.publishing import delivery_states
from mcmp.worker.publishing.delivery_states import NewDelivery


def _due(client_id: str, count: int) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    delivery_states.ensure([NewDelivery(str(ObjectId()), client_id, "website", past) for _ in range(count)])


def _backlog(text: str) -> float:
    found = re.search(r'^mcmp_delivery_backlog\{position="due"\} (\S+)$', text, re.M)
    assert found, text
    return float(found.group(1))


def test_metrics_answer_without_a_token_when_none_is_configured(api) -> None:
    r = api.get("/metrics")
    assert r.status_code == 200 and "mcmp_delivery_backlog" in r.text


@pytest.fixture
def metrics_token(monkeypatch: pytest.MonkeyPatch) -> str:
    token = "scrape-" + ObjectId().binary.hex()
    monkeypatch.setenv("MCMP_METRICS_TOKEN", token)
    reset_settings()
    return token


def test_metrics_ask_for_the_bearer_token_when_one_is_configured(api, metrics_token: str) -> None:
    for sent in (None, "Bearer wrong", f"Basic {metrics_token}", f"Bearer {metrics_token}x", "Bearer "):
        r = api.get("/metrics", headers={"Authorization": sent} if sent else {})
        assert r.status_code == 401, sent
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "mcmp_" not in r.text and metrics_token not in r.text
    r = api.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert r.status_code == 200 and "mcmp_delivery_backlog" in r.text
    assert api.get("/v1/health/live").status_code == 200  # probes still need nothing


def test_backlog_figures_are_counted_at_most_once_per_cache_period(api, make_client) -> None:
    client_id = str(make_client()["_id"])
    _due(client_id, 3)
    first = time.monotonic()
    assert _backlog(api.get("/metrics").text) == 3
    _due(client_id, 4)
    for _ in range(20):  # a burst of scrapes: no new count
        assert _backlog(api.get("/metrics").text) == 3
    assert time.monotonic() - first < 5, "the machine is too loaded for this check"
    time.sleep(max(0.0, 5.2 - (time.monotonic() - first)))
    assert _backlog(api.get("/metrics").text) == 7
    assert get_settings().health_cache_seconds == 5.0  # the default users get, not shortened here


def _listening_addresses(port: int) -> set[str]:
    """The local addresses listening on ``port`` (from /proc: no packet sent anywhere)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_the_worker_metrics_port_listens_on_loopback_unless_told(monkeypatch, tmp_path: Path) -> None:
    from mcmp.cli.main import _serve_multiprocess_metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    port = free_port()
    server = _serve_multiprocess_metrics(port)  # what `mcmp worker --metrics-port PORT` runs
    try:
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, not 0.0.0.0
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def test_the_worker_metrics_port_asks_for_the_token_too(metrics_token: str) -> None:
    from mcmp.cli.metrics_server import serve

    registry = CollectorRegistry()
    Counter("mcmp_probe_total", "probe", registry=registry).inc()
    server = serve(registry, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
        ok: Any = requests.get(url, headers={"Authorization": f"Bearer {metrics_token}"}, timeout=5)
        assert ok.status_code == 200 and "mcmp_probe_total 1.0" in ok.text
    finally:
        server.shutdown()
        server.server_close()
