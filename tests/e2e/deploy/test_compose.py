"""The production compose file is valid (``docker-compose config -q``; no engine needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import ROOT


def test_compose_file_is_valid() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is required to validate docker-compose.yml: apt-get install -y docker-compose",
            pytrace=False,
        )
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_every_role_with_a_health_check() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is required (apt-get install -y docker-compose)"
    out = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert set(out) == {
        "mongo",
        "redis",
        "worker",
        "long-worker",
        "analytics-worker",
        "dispatcher",
        "beat",
        "api",
        "flower",
        "prometheus",
        "grafana",
    }
    text = (ROOT / "docker-compose.yml").read_text()
    assert '"--queues", "analytics,readiness"' in text and '"--queues", "publish,maintenance"' in text
    assert '"--queues", "publish-long"' in text
    assert text.count("healthcheck:") >= 11 and "rs.initiate" in text and "--replSet" in text


def test_prometheus_and_grafana_get_the_shipped_rules_scrape_config_and_dashboard() -> None:
    """Every file compose mounts into them exists, and the scrape config names the rule file mounted."""
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is required (apt-get install -y docker-compose)"
    rendered = yaml.safe_load(
        subprocess.run(
            [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    services = rendered["services"]
    mounts = {  # docker-compose 1.x renders "source:target:mode"; bind mounts have absolute sources
        name: {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"] if v.startswith("/")}
        for name in ("prometheus", "grafana")
    }
    for name, binds in mounts.items():
        for target, source in binds.items():
            assert Path(source).exists(), f"{name} mounts {source} at {target}: missing"
    prometheus = mounts["prometheus"]
    scrape = yaml.safe_load(Path(prometheus["/etc/prometheus/prometheus.yml"]).read_text())
    assert scrape["rule_files"] == ["alerts.yml"] and "/etc/prometheus/alerts.yml" in prometheus
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    assert jobs == {"mcmp-api", "mcmp-worker", "mcmp-dispatcher"}
    assert all("--metrics-port" in services[name]["command"] for name in ("worker", "long-worker"))
    assert "--metrics-port" in services["worker"]["command"] and "9101" in services["dispatcher"]["command"]
    # Grafana never starts with its default admin password
    assert "GF_SECURITY_ADMIN_PASSWORD" in " ".join(services["grafana"]["entrypoint"])
