"""The shipped Prometheus files and the Debian tools that check them (``prometheus``, ``promtool``).

``scripts/test`` installs Debian's ``prometheus`` package; a missing binary fails the test, never
skips it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import ROOT

DEPLOY = ROOT / "deploy" / "prometheus"
ALERTS = DEPLOY / "alerts.yml"
ALERTS_TEST = DEPLOY / "alerts_test.yml"
SCRAPE_CONFIG = DEPLOY / "prometheus.yml"
OPERATIONS = ROOT / "docs" / "operations.md"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is required (Debian package prometheus: apt-get install -y prometheus; ./scripts/test does it)",
            pytrace=False,
        )
    return found


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    """Every alerting rule of the file, in order."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def with_durations(durations: dict[str, str], path: Path = ALERTS) -> str:
    """The shipped rules with some alerts' ``for:`` replaced (YAML text); nothing else changes.

    End-to-end tests cannot wait the 10 minutes an outage must last in production: they load
    this copy, whose expressions, thresholds, labels and annotations are the shipped ones.
    """
    data = yaml.safe_load(path.read_text())
    unknown = set(durations) - {r["alert"] for g in data["groups"] for r in g["rules"] if "alert" in r}
    assert not unknown, f"no such alerts: {unknown}"
    for group in data["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in durations:
                rule["for"] = durations[rule["alert"]]
    return yaml.safe_dump(data, sort_keys=False)
