"""The production compose file is valid (``docker-compose config -q``; no engine needed)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

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
    }
    text = (ROOT / "docker-compose.yml").read_text()
    assert '"--queues", "analytics"' in text and '"--queues", "publish,maintenance"' in text
    assert '"--queues", "publish-long"' in text
    assert text.count("healthcheck:") >= 9 and "rs.initiate" in text and "--replSet" in text
